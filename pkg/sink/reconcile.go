package sink

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// KeyBatches yields the source's keys as change batches that carry at least
// the key columns, and io.EOF after the last. The caller of Reconcile
// releases nothing: Reconcile releases each batch it is given.
type KeyBatches func(ctx context.Context) (arrow.RecordBatch, error)

// ReconcileResult is what one key reconciliation found.
type ReconcileResult struct {
	SourceKeys int64 // keys the source has
	Deleted    int64 // store rows whose key the source no longer has, deleted (or soft-deleted)
}

// Reconcile finds the rows that were deleted at the source although the
// table's strategy could not see it (high-water marks and snapshots,
// PITFALLS P11): it stages every source key in one store transaction and
// deletes, by the table's delete policy, the target rows whose key is not
// among them. Rows applied after the transaction began are never touched, so
// a row synced while the keys were read cannot be lost. The position does not
// move. The reconciliation is recorded in ehrsync.reconciliations.
func (tg *Target) Reconcile(ctx context.Context, keys KeyBatches, actor string) (ReconcileResult, error) {
	return tg.reconcile(ctx, keys, actor, nil, nil)
}

// ReconcileRange is Reconcile restricted to the store rows whose key is in
// [from, to] (both inclusive; nil: open on that side), for an operator's
// ranged backfill: keys must be the source's keys in that range. The store
// compares keys in its own order, so the caller must only use it for keys
// whose order is the same at the source (integers, decimals, dates and
// times; uuids from a PostgreSQL source). Each bound value is bound as its
// canonical text (watermarks.Value.Text) cast to the key column's store
// type. Unlike Reconcile it is not recorded in ehrsync.reconciliations (it
// is no full reconciliation).
func (tg *Target) ReconcileRange(ctx context.Context, keys KeyBatches, actor string, from, to watermarks.Key) (ReconcileResult, error) {
	if from == nil && to == nil {
		return tg.Reconcile(ctx, keys, actor)
	}
	return tg.reconcile(ctx, keys, actor, from, to)
}

// rangeSQL is the condition "t's key is in [from, to]" and its arguments.
func (tg *Target) rangeSQL(from, to watermarks.Key) (string, []any, error) {
	var (
		conds []string
		args  []any
	)
	keys := tg.keyList("t")
	for _, b := range []struct {
		op  string
		key watermarks.Key
	}{{">=", from}, {"<=", to}} {
		if b.key == nil {
			continue
		}
		if len(b.key) != len(tg.key) {
			return "", nil, fmt.Errorf("range bound has %d values for %d key columns", len(b.key), len(tg.key))
		}
		ps := make([]string, len(b.key))
		for i, v := range b.key {
			args = append(args, v.Text())
			ps[i] = fmt.Sprintf("$%d::%s", len(args), tg.colType(tg.key[i]))
		}
		conds = append(conds, "("+keys+") "+b.op+" ("+strings.Join(ps, ", ")+")")
	}
	return strings.Join(conds, " AND "), args, nil
}

func (tg *Target) reconcile(ctx context.Context, keys KeyBatches, actor string, from, to watermarks.Key) (ReconcileResult, error) {
	inRange, rangeArgs := "true", []any(nil)
	ranged := from != nil || to != nil
	if ranged {
		var err error
		if inRange, rangeArgs, err = tg.rangeSQL(from, to); err != nil {
			return ReconcileResult{}, fmt.Errorf("reconcile %s: %w", tg.ident.Sanitize(), err)
		}
	}
	var res ReconcileResult
	err := pgx.BeginFunc(ctx, tg.sink.pool, func(tx pgx.Tx) error {
		var started time.Time
		if err := tx.QueryRow(ctx, "SELECT now()").Scan(&started); err != nil {
			return err
		}
		defs := make([]string, len(tg.key))
		for i, k := range tg.key {
			defs[i] = pgx.Identifier{k}.Sanitize() + " " + tg.colType(k)
		}
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE ehrsync_source_keys ("+strings.Join(defs, ", ")+") ON COMMIT DROP"); err != nil {
			return fmt.Errorf("stage source keys: %w", err)
		}
		for {
			rec, err := keys(ctx)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("read source keys: %w", err)
			}
			n, err := tg.copyKeys(ctx, tx, rec)
			rec.Release()
			if err != nil {
				return err
			}
			res.SourceKeys += n
		}
		if res.SourceKeys == 0 {
			// A source that answers with no keys at all is more likely a
			// wrong practice filter or a login that sees nothing than a
			// table emptied on purpose: refuse to empty the store's copy.
			var held int64
			if err := tx.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s t WHERE NOT %s AND %s", tg.ident.Sanitize(), MetaDeleted, inRange), rangeArgs...).Scan(&held); err != nil {
				return err
			}
			if held > 0 {
				return fmt.Errorf("the source returned no keys but the store holds %d rows: refusing to delete them all "+
					"(check the organization's practice_ids and that the source login can read the table; "+
					"if the table really was emptied, reset its position to re-sync it)", held)
			}
		}
		if _, err := tx.Exec(ctx, "ANALYZE pg_temp.ehrsync_source_keys"); err != nil {
			return err
		}
		// The reconciliation's batch id: the rows it soft-deletes and its
		// change-log entries carry it, and when it deletes any it is
		// recorded under it in the position history, under the target's
		// position name (a ranged backfill's own, WithPositionTable).
		var batch int64
		var at time.Time
		b := &pgx.Batch{}
		tg.sink.positions.QueueReserve(b, &batch, &at)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return err
		}
		args := rangeArgs
		if tg.opts.DeletePolicy == DeleteSoft || tg.opts.ChangeLog {
			args = append(args, batch)
		}
		batchParam := fmt.Sprintf("$%d::bigint", len(rangeArgs)+1)
		gone := fmt.Sprintf("NOT EXISTS (SELECT 1 FROM pg_temp.ehrsync_source_keys k WHERE %s) AND t.%s < now() AND %s",
			tg.keyMatch("k", "t"), MetaSyncedAt, inRange)
		var q string
		if tg.opts.DeletePolicy == DeleteSoft {
			q = fmt.Sprintf("UPDATE %s t SET %s = 'delete', %s = true, %s = now(), %s = %s WHERE NOT t.%s AND %s",
				tg.ident.Sanitize(), MetaOp, MetaDeleted, MetaSyncedAt, MetaBatch, batchParam, MetaDeleted, gone)
		} else {
			q = fmt.Sprintf("DELETE FROM %s t WHERE %s", tg.ident.Sanitize(), gone)
		}
		// The statement's answer: the count of rows gone, or, for the
		// lake, their keys.
		answer := "SELECT count(*) FROM gone"
		if tg.opts.Lake {
			answer = "SELECT " + tg.keyNames() + " FROM gone"
		}
		if tg.opts.ChangeLog {
			// The deletions are changes too: log each, keyed by this
			// reconciliation's time so a later deletion of the same
			// image is logged again.
			cols := tg.colNames()
			list := strings.Join(cols, ", ")
			q = fmt.Sprintf(`WITH gone AS (%s RETURNING %s), logged AS (
				INSERT INTO %s (%s, %s, %s, %s, %s)
				SELECT %s, 'delete', 0, decode(md5(now()::text || ROW(%s)::text), 'hex'), %s FROM gone)
				%s`,
				q, prefixAll("t.", cols), tg.changes.Sanitize(), list, MetaOp, schemas.SeqColumn, MetaChangeKey, MetaBatch, list, list, batchParam, answer)
		} else if tg.opts.Lake {
			q = "WITH gone AS (" + q + " RETURNING " + prefixAll("t.", tg.quotedKey()) + ") " + answer
		} else {
			q = "WITH gone AS (" + q + " RETURNING 1) " + answer
		}
		if tg.opts.Lake {
			n, err := tg.outboxDeletes(ctx, tx, q, args, batch, at)
			if err != nil {
				return fmt.Errorf("delete rows gone at the source: %w", err)
			}
			res.Deleted = n
		} else if err := tx.QueryRow(ctx, q, args...).Scan(&res.Deleted); err != nil {
			return fmt.Errorf("delete rows gone at the source: %w", err)
		}
		if res.Deleted > 0 {
			if err := tg.sink.positions.Reconciled(ctx, tx, batch, tg.org, tg.positionName(), actor, res.Deleted); err != nil {
				return err
			}
		}
		if ranged {
			return nil
		}
		_, err := tx.Exec(ctx, `INSERT INTO ehrsync.reconciliations (org, table_name, started_at, source_keys, deleted, actor)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (org, table_name) DO UPDATE SET started_at = EXCLUDED.started_at, finished_at = now(),
				source_keys = EXCLUDED.source_keys, deleted = EXCLUDED.deleted, actor = EXCLUDED.actor`,
			tg.org, tg.table.QualifiedName(), started, res.SourceKeys, res.Deleted, actor)
		return err
	})
	if err != nil {
		return ReconcileResult{}, fmt.Errorf("reconcile %s: %w", tg.ident.Sanitize(), err)
	}
	return res, nil
}

// copyKeys copies the key columns of rec into the staged source keys.
func (tg *Target) copyKeys(ctx context.Context, tx pgx.Tx, rec arrow.RecordBatch) (int64, error) {
	fields := make([]arrow.Field, len(tg.key))
	cols := make([]arrow.Array, len(tg.key))
	for i, k := range tg.key {
		idx := rec.Schema().FieldIndices(k)
		if len(idx) != 1 {
			return 0, fmt.Errorf("source keys: batch has no key column %s", k)
		}
		fields[i], cols[i] = rec.Schema().Field(idx[0]), rec.Column(idx[0])
	}
	keys := array.NewRecordBatch(arrow.NewSchema(fields, nil), cols, rec.NumRows())
	defer keys.Release()
	src, err := newRecordSource(keys)
	if err != nil {
		return 0, err
	}
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"pg_temp", "ehrsync_source_keys"}, tg.key, src)
	if err != nil {
		return 0, fmt.Errorf("stage source keys: %w", err)
	}
	return n, nil
}

// LastReconciled returns when the table's keys were last reconciled: the
// zero time when never.
func (tg *Target) LastReconciled(ctx context.Context) (time.Time, error) {
	var started time.Time
	err := tg.sink.pool.QueryRow(ctx, "SELECT started_at FROM ehrsync.reconciliations WHERE org = $1 AND table_name = $2",
		tg.org, tg.table.QualifiedName()).Scan(&started)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, nil
	}
	return started, err
}
