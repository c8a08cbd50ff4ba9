package backfill

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// CheckRange checks r against the table's key: an error matching
// engine.ErrBadRange when a bound does not parse by the key columns' types
// (snapshot.ParseKey). It never quotes the bounds.
func (b *Runner) CheckRange(org *config.Org, table string, r engine.Range) error {
	_, err := b.ParseRange(org, table, r)
	return err
}

// ParseRange checks r against the table's key and returns it typed.
func (b *Runner) ParseRange(org *config.Org, table string, r engine.Range) (extractors.KeyRange, error) {
	t, err := b.table(org, table)
	if err != nil {
		return extractors.KeyRange{}, err
	}
	return parseRange(schemas.Dialect(org.Source.Dialect), t, r)
}

func parseRange(src schemas.Dialect, t *schemas.Table, r engine.Range) (extractors.KeyRange, error) {
	var kr extractors.KeyRange
	var err error
	if r.From != "" {
		if kr.From, err = snapshot.ParseKey(src, t, r.From); err != nil {
			return kr, fmt.Errorf("%w: from: %w", engine.ErrBadRange, err)
		}
	}
	if r.To != "" {
		if kr.To, err = snapshot.ParseKey(src, t, r.To); err != nil {
			return kr, fmt.Errorf("%w: to: %w", engine.ErrBadRange, err)
		}
	}
	return kr, nil
}

// backfillRange re-reads the rows of table t of org whose primary key is in
// r and upserts them, as actor, under the table's lease. It never resets
// nor moves the table's incremental position: it keeps its own position,
// engine.BackfillPosition(table), committed with each chunk's rows, so that
// a backfill stopped at any instant resumes after its last committed chunk
// when started again with the same range (ehrsync.backfills remembers the
// unfinished one and its bounds; a different range starts over). When the
// range is done, rows in it that the source no longer has are removed where
// the store compares the key in the source's order
// (engine.RangeReconcilable); elsewhere that is skipped and logged. The
// backfill's start (with the key columns, never the values), its chunks and
// its end are in the position history under the backfill position's name,
// with actor; the run is audited.
func (b *Runner) backfillRange(ctx context.Context, org *config.Org, t *schemas.Table, table string, r engine.Range, actor string) (engine.TableResult, error) {
	kr, err := parseRange(schemas.Dialect(org.Source.Dialect), t, r)
	if err != nil {
		return engine.TableResult{}, err
	}
	q := t.QualifiedName()
	pos := engine.BackfillPosition(q)
	positions := b.eng.Positions()
	log := b.opts.Log.With("org", org.Name, "table", q, "actor", actor, "range_on", strings.Join(t.Key, ","))
	unlock, err := b.lock(ctx, log, org.Name, q)
	if err != nil {
		return engine.TableResult{}, err
	}
	defer unlock()

	resumed, err := b.beginRange(ctx, org.Name, pos, actor, kr)
	if err != nil {
		return engine.TableResult{}, err
	}
	if resumed {
		log.Info("resuming an unfinished ranged backfill from its saved position")
	} else if err := positions.Reset(ctx, org.Name, pos, nil, actor, "backfill of a key range on ("+strings.Join(t.Key, ", ")+"): "+bounds(r)+
		"; the bounds are in ehrsync.backfills; the table's position is not moved"); err != nil {
		return engine.TableResult{}, err
	}

	reconcile := engine.RangeReconcilable(org.Source.Dialect, kr)
	var tr engine.TableResult
	err = b.progress(ctx, org.Name, q, pos, func() int64 { return 0 }, resumed, func() (int64, bool) {
		tr = b.eng.BackfillRange(ctx, org, table, kr, reconcile, actor)
		return tr.Totals.Rows, tr.Err == nil
	})
	if err != nil {
		return engine.TableResult{}, err
	}
	if err := b.audit(ctx, actor, q, r, tr); err != nil {
		// The run is not done until it is audited.
		if tr.Err == nil {
			tr.Err = err
		} else {
			tr.Err = fmt.Errorf("%w; and %w", tr.Err, err)
		}
	}
	if tr.Err != nil {
		return tr, nil
	}
	if err := b.finished(ctx, org.Name, pos); err != nil {
		return tr, err
	}
	if err := positions.Reset(context.WithoutCancel(ctx), org.Name, pos, nil, actor, "backfill of a key range finished"); err != nil {
		return tr, err
	}
	switch {
	case !reconcile:
		log.Warn("rows deleted at the source within the range were not removed from the store: " +
			"the store does not compare this key in the source's order (text or SQL Server uniqueidentifier); " +
			"a full backfill or reconcile_every removes them")
	case tr.Reconciled != nil:
		log.Info("rows deleted at the source within the range removed", "deleted", tr.Reconciled.Deleted)
	}
	log.Info("ranged backfill finished", "rows", tr.Totals.Rows, "duration", tr.Duration.Round(time.Millisecond))
	return tr, nil
}

// bounds says which bounds r has, without their values.
func bounds(r engine.Range) string {
	switch {
	case r.From != "" && r.To != "":
		return "from and to given"
	case r.From != "":
		return "from given, no upper bound"
	}
	return "to given, no lower bound"
}

// beginRange records the ranged backfill under its position name; resumed
// is true when an unfinished one of the same range was there (its position
// is kept).
func (b *Runner) beginRange(ctx context.Context, org, pos, actor string, kr extractors.KeyRange) (resumed bool, err error) {
	enc := func(k watermarks.Key) (any, error) {
		if k == nil {
			return nil, nil
		}
		raw, err := watermarks.Encode(watermarks.Snapshot{LastKey: k})
		if err != nil {
			return nil, err
		}
		return string(raw), nil
	}
	from, err := enc(kr.From)
	if err != nil {
		return false, fmt.Errorf("backfill %s %s: record range: %w", org, pos, err)
	}
	to, err := enc(kr.To)
	if err != nil {
		return false, fmt.Errorf("backfill %s %s: record range: %w", org, pos, err)
	}
	var fresh bool
	err = b.store.QueryRow(ctx, `INSERT INTO ehrsync.backfills (org, table_name, actor, range_from, range_to)
		VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)
		ON CONFLICT (org, table_name) DO UPDATE SET actor = EXCLUDED.actor, started_at = now(), finished_at = NULL,
			range_from = EXCLUDED.range_from, range_to = EXCLUDED.range_to
		WHERE ehrsync.backfills.finished_at IS NOT NULL
			OR ehrsync.backfills.range_from IS DISTINCT FROM EXCLUDED.range_from
			OR ehrsync.backfills.range_to IS DISTINCT FROM EXCLUDED.range_to
		RETURNING true`, org, pos, actor, from, to).Scan(&fresh)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("backfill %s %s: record: %w", org, pos, err)
	}
	return false, nil
}

// audit records a ranged backfill's run: who, the table, which bounds were
// given (never their values), rows, positions and outcome. Its error is the
// record's, not written.
func (b *Runner) audit(ctx context.Context, actor, table string, r engine.Range, tr engine.TableResult) error {
	if b.opts.Audit == nil {
		return nil
	}
	rec := audit.Record{Actor: actor, Action: audit.ActionBackfill, What: "key range: " + bounds(r), Org: tr.Org, Table: table, RunID: tr.RunID,
		Chunks: tr.Chunks, From: tr.From, To: tr.To, Duration: tr.Duration, Outcome: "ok"}
	rec.Rows.Inserted, rec.Rows.Updated, rec.Rows.Unchanged = tr.Totals.Inserted, tr.Totals.Updated, tr.Totals.Unchanged
	if tr.Reconciled != nil {
		rec.Rows.Deleted = tr.Reconciled.Deleted
	}
	if tr.Err != nil {
		rec.Outcome, rec.ErrorClass = "failed", engine.Class(tr.Err)
	}
	return b.opts.Audit.Write(context.WithoutCancel(ctx), rec)
}
