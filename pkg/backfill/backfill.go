// Package backfill re-snapshots tables on an operator's request: `ehrsync
// backfill` and the daemon's admin API both run a Runner, so a backfill
// goes the same way whoever asks.
//
// A full backfill takes the table's lease (so it never runs beside a sync
// of it), records itself in ehrsync.backfills, resets the table's position
// (the reset in the position history carries the operator's name), and
// runs the table from scratch through the engine as an organization run of
// that one table. A ranged backfill re-reads only the rows whose key is in
// a range (engine.BackfillRange), under a position of its own, and never
// moves the table's. Either resumes where it stopped when started again:
// ehrsync.backfills remembers the unfinished ones. Progress (rows so far
// from the position history; for a full backfill, the source's estimate of
// the table's rows) is reported while it runs.
package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/schemas"
)

// Options tune a Runner. Zero values take the defaults.
type Options struct {
	// Audit records each backfill (nil: not audited).
	Audit *audit.Recorder
	// Log is where backfills log (default: discarded).
	Log *slog.Logger
	// Metrics counts rows and progress (nil: NewMetrics(nil)).
	Metrics *Metrics
	// WaitForLease queues behind a running sync of the table instead of
	// failing with lease.ErrBusy.
	WaitForLease bool
	// Progress, when set, is called every ProgressEvery (default 2s) while
	// a table runs, and once at its end.
	Progress      func(Progress)
	ProgressEvery time.Duration
}

// Runner runs backfills. It implements the daemon's Backfiller and is safe
// for concurrent use on different tables.
type Runner struct {
	eng    *engine.Engine
	store  *pgxpool.Pool
	leases *lease.Manager
	opts   Options
}

// New returns a Runner that backfills through e, keeps its records in
// store's ehrsync.backfills, and takes tables' leases from leases.
func New(e *engine.Engine, store *pgxpool.Pool, leases *lease.Manager, opts Options) *Runner {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	if opts.ProgressEvery <= 0 {
		opts.ProgressEvery = 2 * time.Second
	}
	return &Runner{eng: e, store: store, leases: leases, opts: opts}
}

// Progress is a running backfill's progress.
type Progress struct {
	Org, Table string
	Rows       int64 // rows applied so far
	// Estimate is the source's estimate of the table's rows, from its
	// statistics, for a full backfill; 0: unknown, or a ranged backfill.
	Estimate int64
	Elapsed  time.Duration
	Resumed  bool // continuing an unfinished backfill
	Done     bool
}

// Backfill re-snapshots one table of org as actor: the whole table when r
// is zero, else the rows whose key is in r (see backfillRange). Its error
// is one that stopped the backfill before or after the table ran (the
// lease, its record); the table run's own is in the result.
func (b *Runner) Backfill(ctx context.Context, org *config.Org, table string, r engine.Range, actor string) (engine.TableResult, error) {
	t, err := b.table(org, table)
	if err != nil {
		return engine.TableResult{}, err
	}
	if !r.IsZero() {
		return b.backfillRange(ctx, org, t, table, r, actor)
	}
	q := t.QualifiedName()
	log := b.opts.Log.With("org", org.Name, "table", q, "actor", actor)
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
	} else if err := b.eng.Positions().Reset(ctx, org.Name, q, nil, actor, "backfill: re-snapshot"); err != nil {
		return engine.TableResult{}, err
	}

	var estimate atomic.Int64
	run := engine.OrgRun{Tables: []string{table}, Actor: actor, Leased: true, Audit: noAudit{},
		Progress: func(p engine.Progress) {
			if p.Estimate > 0 {
				estimate.Store(p.Estimate)
			}
		}}
	if b.opts.Audit != nil {
		rec := *b.opts.Audit
		rec.Action = audit.ActionBackfill
		run.Audit = &rec
	}
	var res engine.OrgResult
	err = b.progress(ctx, org.Name, q, q, estimate.Load, resumed, func() (int64, bool) {
		res = b.eng.RunOrg(ctx, org, run)
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
	if err := b.finished(ctx, org.Name, q); err != nil {
		return tr, err
	}
	log.Info("backfill finished", "rows", tr.Totals.Rows, "duration", tr.Duration.Round(time.Millisecond))
	return tr, nil
}

// table is a configured table of org, from the catalog.
func (b *Runner) table(org *config.Org, table string) (*schemas.Table, error) {
	if _, ok := org.Table(table); !ok {
		return nil, fmt.Errorf("org %s has no table %q in its configuration", org.Name, table)
	}
	t, ok := b.eng.Catalog().Table(table)
	if !ok {
		return nil, fmt.Errorf("table %s is not in the catalog", table)
	}
	return t, nil
}

// noAudit records nothing: a Runner without Options.Audit.
type noAudit struct{}

func (noAudit) TableRun(context.Context, string, string, []string, engine.TableResult) error {
	return nil
}

// progress runs run (which returns the rows it applied and whether it
// succeeded) while reporting the rows committed so far under the position
// name posName, with the estimate of the rows in all as it is then: at the
// start, every ProgressEvery, and once at its end.
func (b *Runner) progress(ctx context.Context, org, q, posName string, estimate func() int64, resumed bool, run func() (int64, bool)) error {
	since, err := b.lastHistoryID(ctx)
	if err != nil {
		return fmt.Errorf("backfill %s %s: %w", org, q, err)
	}
	m := b.opts.Metrics
	defer m.BackfillTotal.DeleteLabelValues(org, q)
	defer m.BackfillDone.DeleteLabelValues(org, q)
	start := time.Now()
	report := func(rows int64, done bool) {
		p := Progress{Org: org, Table: q, Rows: rows, Estimate: estimate(), Elapsed: time.Since(start), Resumed: resumed, Done: done}
		m.BackfillTotal.WithLabelValues(org, q).Set(float64(p.Estimate))
		m.BackfillDone.WithLabelValues(org, q).Set(float64(rows))
		if b.opts.Progress != nil {
			b.opts.Progress(p)
		}
	}
	report(0, false)
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
		tick := time.NewTicker(b.opts.ProgressEvery)
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
func (b *Runner) lock(ctx context.Context, log *slog.Logger, org, table string) (func(), error) {
	if b.opts.WaitForLease {
		return b.leases.Wait(ctx, org, table, time.Second, 0, func() {
			log.Info("waiting for the table's lease: another runner is syncing it")
		})
	}
	unlock, ok, err := b.leases.TryLock(ctx, org, table)
	if err == nil && !ok {
		err = fmt.Errorf("backfill %s %s: %w", org, table, lease.ErrBusy)
	}
	return unlock, err
}

// begin records the backfill; resumed is true when an unfinished one was
// there (its position is kept).
func (b *Runner) begin(ctx context.Context, org, table, actor string) (resumed bool, err error) {
	var fresh bool
	err = b.store.QueryRow(ctx, `INSERT INTO ehrsync.backfills (org, table_name, actor) VALUES ($1, $2, $3)
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

// finished marks the backfill recorded under name done, even when ctx is.
func (b *Runner) finished(ctx context.Context, org, name string) error {
	if _, err := b.store.Exec(context.WithoutCancel(ctx), "UPDATE ehrsync.backfills SET finished_at = now() WHERE org = $1 AND table_name = $2",
		org, name); err != nil {
		return fmt.Errorf("backfill %s %s: mark finished: %w", org, name, err)
	}
	return nil
}

func (b *Runner) lastHistoryID(ctx context.Context) (int64, error) {
	var id int64
	err := b.store.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM ehrsync.position_history").Scan(&id)
	return id, err
}

func (b *Runner) rowsSince(ctx context.Context, org, table string, since int64) (int64, error) {
	var n int64
	err := b.store.QueryRow(ctx, `SELECT coalesce(sum(rows), 0) FROM ehrsync.position_history
		WHERE id > $1 AND org = $2 AND table_name = $3`, since, org, table).Scan(&n)
	return n, err
}
