package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/pkg/sink"
)

// Backfill re-snapshots tables on an operator's request: under the table's
// lease (so it never runs beside a sync of the same table), it resets the
// table's position (recorded in the position history with the operator's
// name) and runs the table from scratch. A backfill that crashed or was
// canceled resumes from its saved snapshot position when started again
// (ehrsync.backfills remembers the unfinished ones). BackfillRange
// re-reads only a key range of a table, without touching its position
// (backfill_range.go). It implements Backfiller and RangeBackfiller.
type Backfill struct {
	Engine *engine.Engine // the service's engine; each backfill runs a copy with its actor
	Leases *lease.Manager
	Store  *pgxpool.Pool
	Audit  *audit.Recorder // nil: not audited
	Log    *slog.Logger
	// Metrics may be nil.
	Metrics *Metrics
	// WaitForLease queues behind a running sync of the table instead of
	// failing with lease.ErrBusy.
	WaitForLease bool
	// Progress, when set, is called every ProgressEvery (default 2s) while
	// a table runs, and once at its end.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Progress is a running backfill's progress.
type Progress struct {
	Org, Table string
	Rows       int64   // rows applied so far
	Estimate   int64   // the table's estimated rows; 0: unknown
	RowsPerSec float64 // average since the start
	Elapsed    time.Duration
	ETA        time.Duration // 0: unknown
	Resumed    bool          // continuing an unfinished backfill
	Done       bool
}

// Backfill re-snapshots one table of org as actor.
func (b *Backfill) Backfill(ctx context.Context, org *config.Org, table, actor string) (engine.TableResult, error) {
	if _, ok := org.Table(table); !ok {
		return engine.TableResult{}, fmt.Errorf("%w: %s %s", ErrUnknownTable, org.Name, table)
	}
	t, ok := b.Engine.Catalog.Table(table)
	if !ok {
		return engine.TableResult{}, fmt.Errorf("table %s is not in the catalog", table)
	}
	q := t.QualifiedName()
	log := b.Log.With("org", org.Name, "table", q, "actor", actor)
	unlock, err := b.lock(ctx, log, org.Name, q)
	if err != nil {
		return engine.TableResult{}, err
	}
	defer unlock()

	resumed, err := b.begin(ctx, org.Name, q, actor)
	if err != nil {
		return engine.TableResult{}, err
	}
	if resumed {
		log.Info("resuming an unfinished backfill from its saved position")
	} else if err := b.Engine.Positions.Reset(ctx, org.Name, q, nil, actor, "backfill: re-snapshot"); err != nil {
		return engine.TableResult{}, err
	}

	e := b.Engine.Clone()
	e.Leases, e.Actor = nil, actor // this backfill holds the lease
	e.Audit = nil
	if b.Audit != nil {
		rec := *b.Audit
		rec.Action = audit.ActionBackfill
		e.Audit = &rec
	}
	var res engine.OrgResult
	err = b.progress(ctx, org.Name, q, q, b.estimate(ctx, org.Name, t.Name), resumed, func() (int64, bool) {
		res = e.SyncOrg(ctx, org, []string{table})
		if len(res.Tables) == 1 {
			return res.Tables[0].Totals.Rows, res.Tables[0].Err == nil
		}
		return 0, false
	})
	if err != nil {
		return engine.TableResult{}, err
	}
	if res.Err != nil {
		return engine.TableResult{}, res.Err
	}
	if len(res.Tables) != 1 {
		return engine.TableResult{}, fmt.Errorf("backfill %s %s: no run", org.Name, q)
	}
	tr := res.Tables[0]
	if tr.Err != nil {
		return tr, nil
	}
	if _, err := b.Store.Exec(context.WithoutCancel(ctx), "UPDATE ehrsync.backfills SET finished_at = now() WHERE org = $1 AND table_name = $2",
		org.Name, q); err != nil {
		return tr, fmt.Errorf("backfill %s %s: mark finished: %w", org.Name, q, err)
	}
	log.Info("backfill finished", "rows", tr.Totals.Rows, "duration", tr.Duration.Round(time.Millisecond))
	return tr, nil
}

// progress runs run (which returns the rows it applied and whether it
// succeeded) while reporting the rows committed so far under the position
// name posName every ProgressEvery, and once at its end.
func (b *Backfill) progress(ctx context.Context, org, q, posName string, estimate int64, resumed bool, run func() (int64, bool)) error {
	var since int64
	if err := b.Store.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM ehrsync.position_history").Scan(&since); err != nil {
		return fmt.Errorf("backfill %s %s: %w", org, q, err)
	}
	m := b.Metrics
	if m == nil {
		m = NewMetrics(nil)
	}
	m.BackfillTotal.WithLabelValues(org, q).Set(float64(estimate))
	defer m.BackfillTotal.DeleteLabelValues(org, q)
	defer m.BackfillDone.DeleteLabelValues(org, q)
	start := time.Now()
	report := func(rows int64, done bool) {
		p := Progress{Org: org, Table: q, Rows: rows, Estimate: estimate, Elapsed: time.Since(start), Resumed: resumed, Done: done}
		if s := p.Elapsed.Seconds(); s > 0 {
			p.RowsPerSec = float64(rows) / s
		}
		if estimate > rows && p.RowsPerSec > 0 && !done {
			p.ETA = time.Duration(float64(estimate-rows) / p.RowsPerSec * float64(time.Second))
		}
		m.BackfillDone.WithLabelValues(org, q).Set(float64(rows))
		if b.Progress != nil {
			b.Progress(p)
		}
	}
	runCtx, stopProgress := context.WithCancel(ctx)
	defer stopProgress()
	var g errgroup.Group
	var (
		rows int64
		ok   bool
	)
	g.Go(func() error {
		defer stopProgress()
		rows, ok = run()
		return nil
	})
	g.Go(func() error {
		every := b.ProgressEvery
		if every <= 0 {
			every = 2 * time.Second
		}
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-runCtx.Done():
				return nil
			case <-tick.C:
				if rows, err := b.rowsSince(runCtx, org, posName, since); err == nil {
					report(rows, false)
				}
			}
		}
	})
	_ = g.Wait()
	m.BackfillRows.WithLabelValues(org, q).Add(float64(rows))
	report(rows, ok)
	return nil
}

// lock takes the table's lease: waiting for it with WaitForLease, failing
// with lease.ErrBusy otherwise.
func (b *Backfill) lock(ctx context.Context, log *slog.Logger, org, table string) (func(), error) {
	if b.WaitForLease {
		return b.Leases.Wait(ctx, org, table, time.Second, 0, func() {
			log.Info("waiting for the table's lease: another runner is syncing it")
		})
	}
	unlock, ok, err := b.Leases.TryLock(ctx, org, table)
	if err == nil && !ok {
		err = fmt.Errorf("backfill %s %s: %w", org, table, lease.ErrBusy)
	}
	return unlock, err
}

// begin records the backfill; resumed is true when an unfinished one was
// there (its position is kept).
func (b *Backfill) begin(ctx context.Context, org, table, actor string) (resumed bool, err error) {
	var fresh bool
	err = b.Store.QueryRow(ctx, `INSERT INTO ehrsync.backfills (org, table_name, actor) VALUES ($1, $2, $3)
		ON CONFLICT (org, table_name) DO UPDATE SET actor = EXCLUDED.actor, started_at = now(), finished_at = NULL
		WHERE ehrsync.backfills.finished_at IS NOT NULL
		RETURNING true`, org, table, actor).Scan(&fresh)
	if errors.Is(err, pgx.ErrNoRows) {
		return true, nil
	}
	if err != nil {
		return false, fmt.Errorf("backfill %s %s: record: %w", org, table, err)
	}
	return false, nil
}

func (b *Backfill) rowsSince(ctx context.Context, org, table string, since int64) (int64, error) {
	var n int64
	err := b.Store.QueryRow(ctx, `SELECT coalesce(sum(rows), 0) FROM ehrsync.position_history
		WHERE id > $1 AND org = $2 AND table_name = $3`, since, org, table).Scan(&n)
	return n, err
}

// estimate is the store table's planner estimate of its rows (the previous
// copy of the source table): 0 when unknown.
func (b *Backfill) estimate(ctx context.Context, org, name string) int64 {
	var n float64
	err := b.Store.QueryRow(ctx, "SELECT coalesce((SELECT reltuples FROM pg_class WHERE oid = to_regclass($1)), 0)",
		pgx.Identifier{sink.SchemaFor(org), name}.Sanitize()).Scan(&n)
	if err != nil || n < 0 {
		return 0
	}
	return int64(n)
}
