package audit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Pruned is what Prune removed.
type Pruned struct {
	AuditRows   int64 // audit rows removed
	HistoryRows int64 // position history rows removed
	AnchorID    int64 // the last audit row removed, now the chain's anchor; 0: none removed
}

// Prune removes the audit rows and the position history written before
// before, and audits that it did, as actor, all in one transaction. It
// runs as the ehrsync schema's owner: it lifts the append-only triggers for
// its own transaction only (ALTER TABLE ... DISABLE TRIGGER needs the
// table's owner; the writer role cannot), and holds writes to both tables
// until it commits.
//
// The audit is pruned as a prefix of its chain: the rows before the first
// one written at or after before (a few rows written just before before
// may stay). The hash of the last row removed becomes the chain's anchor,
// which the first row kept names as its previous hash, so the rest still
// verifies. A chain that does not verify is not pruned: that would remove
// the evidence (the *BrokenError is returned).
//
// Position history rows are not chained; a store row whose _ehrsync_batch
// names a pruned history row no longer finds its position by the join.
func Prune(ctx context.Context, db Beginner, before time.Time, actor string) (Pruned, error) {
	var p Pruned
	tx, err := db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return p, fmt.Errorf("prune the audit: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit, a no-op
	// The tables first, then the chain's head: an insert holds the table
	// before it waits for the head, so taking them the other way round
	// could deadlock with it.
	if _, err := tx.Exec(ctx, "LOCK TABLE ehrsync.audit, ehrsync.position_history IN SHARE ROW EXCLUSIVE MODE"); err != nil {
		var pg *pgconn.PgError
		if errors.As(err, &pg) && pg.Code == "42501" {
			return p, fmt.Errorf("prune the audit: only the ehrsync schema's owner may (store.owner_url): %w", err)
		}
		return p, fmt.Errorf("prune the audit: lock: %w", err)
	}
	if _, err := tx.Exec(ctx, "SELECT FROM ehrsync.audit_chain FOR UPDATE"); err != nil {
		return p, fmt.Errorf("prune the audit: lock the chain: %w", err)
	}
	if _, err := verify(ctx, tx); err != nil {
		var broken *BrokenError
		if errors.As(err, &broken) {
			return p, fmt.Errorf("prune refused, it would remove the evidence: %w", err)
		}
		return p, fmt.Errorf("prune the audit: %w", err)
	}
	var anchorID *int64
	var anchorHash []byte
	err = tx.QueryRow(ctx, `SELECT id, hash FROM ehrsync.audit
		WHERE id < coalesce((SELECT min(id) FROM ehrsync.audit WHERE at >= $1), 9223372036854775807)
		ORDER BY id DESC LIMIT 1`, before).Scan(&anchorID, &anchorHash)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return p, fmt.Errorf("prune the audit: find the new anchor: %w", err)
	}
	if _, err := tx.Exec(ctx, `ALTER TABLE ehrsync.audit DISABLE TRIGGER audit_append_only;
		ALTER TABLE ehrsync.position_history DISABLE TRIGGER position_history_append_only`); err != nil {
		return p, fmt.Errorf("prune the audit: %w", err)
	}
	if anchorID != nil {
		tag, err := tx.Exec(ctx, "DELETE FROM ehrsync.audit WHERE id <= $1", *anchorID)
		if err != nil {
			return p, fmt.Errorf("prune the audit: delete: %w", err)
		}
		p.AuditRows, p.AnchorID = tag.RowsAffected(), *anchorID
		if _, err := tx.Exec(ctx, "UPDATE ehrsync.audit_chain SET anchor_id = $1, anchor_hash = $2, pruned_at = now()", *anchorID, anchorHash); err != nil {
			return p, fmt.Errorf("prune the audit: move the anchor: %w", err)
		}
	}
	tag, err := tx.Exec(ctx, "DELETE FROM ehrsync.position_history WHERE at < $1", before)
	if err != nil {
		return p, fmt.Errorf("prune the position history: delete: %w", err)
	}
	p.HistoryRows = tag.RowsAffected()
	if _, err := tx.Exec(ctx, `ALTER TABLE ehrsync.audit ENABLE TRIGGER audit_append_only;
		ALTER TABLE ehrsync.position_history ENABLE TRIGGER position_history_append_only`); err != nil {
		return p, fmt.Errorf("prune the audit: %w", err)
	}
	rec := Record{Actor: actor, Action: ActionAdmin, Outcome: "ok",
		What: fmt.Sprintf("prune: %d audit rows and %d position history rows written before %s", p.AuditRows, p.HistoryRows,
			before.UTC().Format(time.RFC3339))}
	if err := insert(ctx, tx, rec); err != nil {
		return p, &WriteError{Err: err}
	}
	if err := tx.Commit(ctx); err != nil {
		return p, fmt.Errorf("prune the audit: commit: %w", err)
	}
	return p, nil
}
