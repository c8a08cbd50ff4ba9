package status

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Store is status's side of the store: it records table attempts
// (TableAttempt) and gathers reports (Gather). It is safe for concurrent
// use.
type Store struct {
	pool      *pgxpool.Pool
	positions *watermarks.Store
}

// New returns a Store on the store's pool.
func New(pool *pgxpool.Pool) *Store {
	return &Store{pool: pool, positions: watermarks.NewStore(pool)}
}

// The outcomes of an attempt.
const (
	OutcomeOK       = "ok"
	OutcomeExpired  = "expired" // the position had expired; the table was re-snapshotted
	OutcomeFailed   = "failed"
	OutcomeCanceled = "canceled"
)

// outcome is an attempt's outcome: canceled when it ended because its run
// was canceled (an operator's cancel, a shutdown past its grace period).
func outcome(res engine.TableResult) string {
	switch {
	case errors.Is(res.Err, context.Canceled):
		return OutcomeCanceled
	case res.Err != nil:
		return OutcomeFailed
	case res.Expired:
		return OutcomeExpired
	}
	return OutcomeOK
}

// TableAttempt records a table's attempt as its last run
// (engine.RunRecorder): the store's clock dates it (finished now, started
// took before), so that ages compare with the positions' times. Its error
// is the store's.
func (s *Store) TableAttempt(ctx context.Context, actor string, took time.Duration, res engine.TableResult) error {
	if actor == "" {
		actor = "unknown"
	}
	out := outcome(res)
	_, err := s.pool.Exec(ctx, `INSERT INTO ehrsync.table_runs AS r (org, table_name, run_id, actor, strategy, started_at, finished_at,
			outcome, error_class, rows, rows_inserted, rows_updated, rows_deleted, last_ok_at, failures, failing_since)
		SELECT $1, $2, $3, $4, $5, now() - $6::interval, now(), $7, nullif($8, ''), $9, $10, $11, $12,
			CASE WHEN $7 IN ('ok', 'expired') THEN now() END,
			CASE WHEN $7 = 'failed' THEN 1 ELSE 0 END,
			CASE WHEN $7 = 'failed' THEN now() - $6::interval END
		ON CONFLICT (org, table_name) DO UPDATE SET
			run_id = excluded.run_id, actor = excluded.actor,
			strategy = coalesce(nullif(excluded.strategy, ''), r.strategy),
			started_at = excluded.started_at, finished_at = excluded.finished_at,
			outcome = excluded.outcome, error_class = excluded.error_class, rows = excluded.rows,
			rows_inserted = excluded.rows_inserted, rows_updated = excluded.rows_updated, rows_deleted = excluded.rows_deleted,
			last_ok_at = coalesce(excluded.last_ok_at, r.last_ok_at),
			failures = CASE excluded.outcome WHEN 'failed' THEN r.failures + 1 WHEN 'canceled' THEN r.failures ELSE 0 END,
			failing_since = CASE excluded.outcome WHEN 'failed' THEN coalesce(r.failing_since, excluded.started_at)
				WHEN 'canceled' THEN r.failing_since END`,
		res.Org, res.Table, res.RunID, actor, res.Strategy, took, out, engine.Class(res.Err),
		res.Totals.Rows, res.Totals.Inserted, res.Totals.Updated, deleted(res))
	if err != nil {
		return fmt.Errorf("record the run of %s %s in ehrsync.table_runs: %w", res.Org, res.Table, err)
	}
	return nil
}

// deleted counts the rows an attempt deleted, its reconciliation's too.
func deleted(res engine.TableResult) int64 {
	n := res.Totals.Deleted
	if res.Reconciled != nil {
		n += res.Reconciled.Deleted
	}
	return n
}
