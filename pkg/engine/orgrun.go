package engine

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/internal/halt"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/source"
)

// OrgRun says how one run of an organization goes: which tables, as whom,
// with which retries, and who hears of it as it goes. The zero OrgRun runs
// every configured table once, as the engine's actor.
type OrgRun struct {
	// ID is the run's id in the logs, the position history and the
	// audit; "": a new one (NewRunID).
	ID string
	// Tables are the tables to run (configured names); nil: every one.
	Tables []string
	// Actor is who runs it in the position history and audit; "": the
	// engine's (WithActor).
	Actor string
	// Retry retries a table whose run failed with a transient error, and
	// the source when it cannot be reached, within this run.
	Retry Retry
	// Stop, when closed, ends the run gracefully: no table (nor retry)
	// starts after it; the tables running finish, their chunk
	// transactions with them, unless ctx ends too.
	Stop <-chan struct{}
	// Leased says the caller holds the tables' leases (a backfill): the
	// engine takes none.
	Leased bool
	// Audit, when set, records this run's tables instead of the engine's
	// auditor (a backfill's runs are recorded as backfills).
	Audit Auditor

	// Opened, when set, is called once the source is reached, with the
	// run's connection pool, before any table starts (the daemon probes
	// the CDC capture agent on it). It must not close db.
	Opened func(ctx context.Context, db *sql.DB)
	// Finished, when set, is called as each table's attempt ends, retried
	// or not, with its result (audited, counted and logged already).
	// Tables run at once call it at once.
	Finished func(TableResult)
	// Retrying, when set, is called before each retry: of a table, or of
	// the source (table ""), the attempt about to start (1 for the first
	// retry), the wait before it, and the error that caused it.
	Retrying func(table string, attempt int, wait time.Duration, err error)
	// Progress, when set, hears of each table attempt's progress as it
	// goes (see Progress); a read of the whole table first asks the source
	// for its estimate (WithRowEstimator). Tables run at once call it at
	// once; it must return quickly.
	Progress func(Progress)
}

// Retry is a run's retry policy: a failure that Transient accepts is tried
// again after Backoff(n) (n = 0 before the first retry), up to Attempts
// times. A run whose ctx ended is never retried. The zero Retry retries
// nothing.
type Retry struct {
	Attempts  int
	Backoff   func(n int) time.Duration
	Transient func(error) bool
}

// again reports whether a failure with err after attempt n (0: the first
// try) is retried.
func (r Retry) again(ctx context.Context, n int, err error) bool {
	return err != nil && ctx.Err() == nil && n < r.Attempts && r.Transient != nil && r.Transient(err)
}

func (r Retry) wait(n int) time.Duration {
	if r.Backoff == nil {
		return 0
	}
	return r.Backoff(n)
}

// RunOrg runs one pass over the organization's tables: one source
// connection pool for the whole run (one SSH tunnel under via: ssh), one
// run id, up to org.ParallelTables tables at once, each retried on its own
// by run.Retry. One table's failure does not stop the others; each failure
// is logged here, once, and returned in its TableResult; results keep the
// configuration's order. Each table's attempt ends at Defaults.RunTimeout
// (so a slow table cannot starve the ones after it); the run ends at ctx's
// end or, between tables, when run.Stop is closed. Tables a stop kept from
// starting are left out (Stopped); tables ctx's end kept from starting fail
// with its error.
func (e *Engine) RunOrg(ctx context.Context, org *config.Org, run OrgRun) OrgResult {
	began := time.Now()
	res := OrgResult{Org: org.Name, RunID: run.ID}
	if res.RunID == "" {
		res.RunID = NewRunID()
	}
	selected, err := selectTables(org, run.Tables)
	if err != nil {
		res.Err = err
		return res
	}
	r := &orgRun{e: e, run: run, org: org, id: res.RunID, log: e.log.With("org", org.Name, "run", res.RunID), actor: run.Actor}
	if r.actor == "" {
		r.actor = e.actor
	}
	r.audit = e.audit
	if run.Audit != nil {
		r.audit = run.Audit
	}
	db, err := r.openSource(ctx)
	if err != nil {
		res.Err, res.Stopped = err, halt.Stopped(run.Stop)
		for _, tc := range selected {
			r.attempted(ctx, began, TableResult{Org: org.Name, Table: e.qualified(tc.Name), RunID: res.RunID, Err: err})
		}
		return res
	}
	defer db.Close()
	r.db = db
	if run.Opened != nil {
		run.Opened(ctx, db)
	}
	// Up to org.ParallelTables tables at once, each on its own source
	// connection of the pool.
	results := make([]*TableResult, len(selected)) // nil: skipped, busy
	sem := make(chan struct{}, max(org.ParallelTables, 1))
	var wg sync.WaitGroup
	begun := 0
	for i, tc := range selected {
		if !halt.Acquire(ctx, run.Stop, sem) {
			res.Stopped = halt.Stopped(run.Stop)
			break
		}
		begun++
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = r.table(ctx, tc, sem)
		}()
	}
	wg.Wait()
	for i, tr := range results[:begun] {
		if tr == nil {
			res.Skipped = append(res.Skipped, e.qualified(selected[i].Name))
			continue
		}
		res.Tables = append(res.Tables, *tr)
	}
	if rest := selected[begun:]; len(rest) > 0 && !res.Stopped {
		res.Tables = append(res.Tables, r.notStarted(ctx, began, rest)...)
	}
	if e.views != nil && len(res.Tables) > 0 {
		// Derived views are a convenience: a failure is logged, and the
		// synced tables stand.
		if _, err := e.views.Ensure(ctx, sink.SchemaFor(org.Name)); err != nil {
			r.log.Warn("store views not updated", "err", err)
		}
	}
	return res
}

// auditTimeout bounds the write of a table run's audit record.
const auditTimeout = 30 * time.Second

// notStarted fails the tables ctx's end kept from starting, with its
// error, so that no table of the run goes unreported.
func (r *orgRun) notStarted(ctx context.Context, began time.Time, tables []config.Table) []TableResult {
	err := fmt.Errorf("not started: the run ended first: %w", ctx.Err())
	if why, ok := canceled(ctx, err); ok {
		r.log.Info("tables not started: the run was canceled", append([]any{"tables", len(tables)}, why...)...)
	} else {
		r.log.Error("tables not started: the run ended first", "tables", len(tables), "err", ctx.Err())
	}
	out := make([]TableResult, len(tables))
	for i, tc := range tables {
		out[i] = TableResult{Org: r.org.Name, Table: r.e.qualified(tc.Name), RunID: r.id, Err: err}
		r.attempted(ctx, began, out[i])
		if r.run.Finished != nil {
			r.run.Finished(out[i])
		}
	}
	return out
}

// orgRun is one organization run in progress.
type orgRun struct {
	e     *Engine
	run   OrgRun
	org   *config.Org
	id    string
	log   *slog.Logger
	actor string
	audit Auditor
	db    *sql.DB
}

// openSource opens the organization's source, retried by the run's policy.
func (r *orgRun) openSource(ctx context.Context) (*sql.DB, error) {
	for n := 0; ; n++ {
		db, err := r.e.open(ctx, r.org.Source)
		if err == nil {
			return db, nil
		}
		logOpenFailure(ctx, r.log, err)
		if !r.retry(ctx, n, err) {
			return nil, err
		}
	}
}

// logOpenFailure logs why a run could not open its source: it was
// canceled, the configuration is wrong (a secret that cannot be resolved:
// the source was not tried), or the source is unreachable.
func logOpenFailure(ctx context.Context, log *slog.Logger, err error) {
	if why, ok := canceled(ctx, err); ok {
		log.Info("run canceled before the source was reached", why...)
		return
	}
	if source.IsConfig(err) {
		log.Error("source configuration error: the source was not tried", "err", err, "fix", source.Classify(err).Fix)
		return
	}
	log.Error("source unreachable", "err", err)
}

// table runs one table with its retries, in the slot of sem it was given,
// which it gives back when it ends and while it waits for a retry; nil
// when another runner holds its lease (the table is skipped).
func (r *orgRun) table(ctx context.Context, tc config.Table, sem chan struct{}) *TableResult {
	held := true
	defer func() {
		if held {
			<-sem
		}
	}()
	var last *TableResult
	for n := 0; ; n++ {
		tr := r.attempt(ctx, tc)
		if tr == nil {
			// Busy: another runner took the lease, perhaps after this
			// run's failed attempt released it; that failure stands.
			return last
		}
		last = tr
		if r.run.Finished != nil {
			r.run.Finished(*tr)
		}
		wait, ok := r.backoff(ctx, n, tr.Table, tr.Err)
		if !ok {
			return tr
		}
		<-sem // the other tables may run while this one waits
		held = false
		if !halt.Sleep(ctx, r.run.Stop, wait) || !halt.Acquire(ctx, r.run.Stop, sem) {
			return tr
		}
		held = true
	}
}

// retry reports whether the attempt after attempt n, which failed with
// err, is to start, having waited for its backoff (the source's).
func (r *orgRun) retry(ctx context.Context, n int, err error) bool {
	wait, ok := r.backoff(ctx, n, "", err)
	return ok && halt.Sleep(ctx, r.run.Stop, wait)
}

// backoff reports whether the attempt after attempt n, which failed with
// err, is to be made, and after how long; table is "" for the source.
func (r *orgRun) backoff(ctx context.Context, n int, table string, err error) (time.Duration, bool) {
	if !r.run.Retry.again(ctx, n, err) || halt.Requested(ctx, r.run.Stop) {
		return 0, false
	}
	d := r.run.Retry.wait(n)
	if r.run.Retrying != nil {
		r.run.Retrying(table, n+1, d, err)
	}
	return d, true
}

// attempt runs one attempt of a table, within Defaults.RunTimeout.
func (r *orgRun) attempt(ctx context.Context, tc config.Table) *TableResult {
	if t := r.e.defaults.RunTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	return r.leasedTable(ctx, tc)
}

// leasedTable runs one table under its lease and records it in the audit;
// nil when another runner holds the lease (the table is skipped).
func (r *orgRun) leasedTable(ctx context.Context, tc config.Table) *TableResult {
	began := time.Now()
	unlock, ok, err := r.lease(ctx, tc.Name)
	if !ok && err == nil {
		r.log.Info("table busy, skipped: another runner holds its lease", "table", r.e.qualified(tc.Name))
		return nil
	}
	tlog := r.log.With("table", tc.Name)
	if err != nil {
		tr := TableResult{Org: r.org.Name, Table: r.e.qualified(tc.Name), RunID: r.id, Err: err}
		tr.Err = r.record(ctx, tc, began, tr)
		if why, ok := canceled(ctx, tr.Err); ok {
			tlog.Info("table sync canceled", why...)
		} else {
			tlog.Error("table sync failed", "err", tr.Err)
		}
		return &tr
	}
	tr := r.e.syncTable(ctx, tlog, r.db, r.org, tc, r.id, r.actor, r.run.Progress)
	unlock()
	tr.Err = r.record(ctx, tc, began, tr)
	r.e.finish(ctx, tlog, tr)
	return &tr
}

// record audits a finished table run, begun at began, when the run has an
// auditor, and returns the run's error: res.Err, joined by the audit's
// when its record was not written (a run whose record is lost fails). The
// attempt, with that error, is then told to the engine's RunRecorder.
func (r *orgRun) record(ctx context.Context, tc config.Table, began time.Time, res TableResult) error {
	res.Err = r.audited(ctx, tc, res)
	r.attempted(ctx, began, res)
	return res.Err
}

// audited writes a finished table run's audit record, and returns the
// run's error with the audit's, if any.
func (r *orgRun) audited(ctx context.Context, tc config.Table, res TableResult) error {
	if r.audit == nil {
		return res.Err
	}
	// The record is written even when the run was canceled or timed out.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	aerr := r.audit.TableRun(actx, r.actor, r.id, r.e.columns(tc), res)
	switch {
	case aerr == nil:
		return res.Err
	case res.Err == nil:
		return storeErr(aerr)
	}
	return fmt.Errorf("%w; and %w", res.Err, storeErr(aerr))
}

// attempted tells the engine's RunRecorder, if any, of a table's attempt
// begun at began that ended with res. A record not written is logged.
func (r *orgRun) attempted(ctx context.Context, began time.Time, res TableResult) {
	if r.e.runs == nil {
		return
	}
	// Written even when the run was canceled or timed out, as the audit.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditTimeout)
	defer cancel()
	if err := r.e.runs.TableAttempt(ctx, r.actor, time.Since(began), res); err != nil {
		r.log.Warn("the table's run record was not written: ehrsync status does not show this attempt", "table", res.Table, "err", err)
	}
}

// lease takes the table's lease, unless the caller holds it or the engine
// takes none.
func (r *orgRun) lease(ctx context.Context, table string) (unlock func(), ok bool, err error) {
	if r.e.leases == nil || r.run.Leased {
		return func() {}, true, nil
	}
	unlock, ok, err = r.e.leases.TryLock(ctx, r.org.Name, r.e.qualified(table))
	return unlock, ok, storeErr(err)
}
