package engine

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Planner picks a table's strategy and builds its extractor. The
// extractors/planner package implements it.
type Planner interface {
	Plan(ctx context.Context, req extractors.PlanRequest) (extractors.Plan, error)
}

// Engine syncs organizations: plans each table, prepares its target in the
// store, and runs it. New builds one; it is not changed after, and is safe
// for concurrent use on different orgs.
type Engine struct {
	store     Store
	positions *watermarks.Store
	planner   Planner
	catalog   *schemas.Catalog
	log       *slog.Logger
	actor     string
	allocator memory.Allocator
	defaults  config.Defaults
	views     Views
	metrics   *Metrics
	leases    Leaser
	audit     Auditor
	runs      RunRecorder
	open      func(context.Context, config.Source) (*sql.DB, error)
	estimate  RowEstimator
	lake      Lake
}

// Option sets one of an Engine's optional parts (New).
type Option func(*Engine)

// WithLog logs to log (default: discarded).
func WithLog(log *slog.Logger) Option { return func(e *Engine) { e.log = log } }

// WithActor names who runs the syncs in the position history and audit
// when a run does not say: "sync", "daemon", or an operator's name
// (default "sync").
func WithActor(actor string) Option { return func(e *Engine) { e.actor = actor } }

// WithAllocator is the allocator the extractors build their batches with
// (default memory.DefaultAllocator).
func WithAllocator(mem memory.Allocator) Option { return func(e *Engine) { e.allocator = mem } }

// WithDefaults bounds runs and batches (config.Defaults after
// ApplyDefaults).
func WithDefaults(d config.Defaults) Option { return func(e *Engine) { e.defaults = d } }

// WithViews keeps derived views (denied_claim_lines) in the organization's
// store schema after each run.
func WithViews(v Views) Option { return func(e *Engine) { e.views = v } }

// WithMetrics counts in m (default: NewMetrics(nil), unregistered).
func WithMetrics(m *Metrics) Option { return func(e *Engine) { e.metrics = m } }

// WithLeases guards each table's run (DESIGN.md §1 invariant 7): a table
// whose lease another runner holds is skipped, listed in OrgResult.Skipped,
// and is not a failure. Without it, no leases are taken (tests).
func WithLeases(l Leaser) Option { return func(e *Engine) { e.leases = l } }

// WithAudit tells a of every table run that was not skipped.
func WithAudit(a Auditor) Option { return func(e *Engine) { e.audit = a } }

// WithRuns tells r of every table attempt, for `ehrsync status`.
func WithRuns(r RunRecorder) Option { return func(e *Engine) { e.runs = r } }

// WithSourceOpener opens organizations' sources with open instead of
// source.Open (tests count the connections an org run makes).
func WithSourceOpener(open func(context.Context, config.Source) (*sql.DB, error)) Option {
	return func(e *Engine) { e.open = open }
}

// New returns an engine that commits to store (Sink(sink.New(…)) for the PostgreSQL store), keeps positions in
// positions, plans tables with planner and finds them in catalog.
func New(store Store, positions *watermarks.Store, planner Planner, catalog *schemas.Catalog, opts ...Option) *Engine {
	e := &Engine{store: store, positions: positions, planner: planner, catalog: catalog,
		log: slog.New(slog.DiscardHandler), actor: "sync", allocator: memory.DefaultAllocator, open: source.Open,
		estimate: source.EstimateRows}
	for _, o := range opts {
		o(e)
	}
	if e.metrics == nil {
		e.metrics = NewMetrics(nil)
	}
	return e
}

// Catalog is the table catalog the engine finds tables in.
func (e *Engine) Catalog() *schemas.Catalog { return e.catalog }

// Positions is the store of the tables' positions.
func (e *Engine) Positions() *watermarks.Store { return e.positions }

// Metrics are the engine's metrics.
func (e *Engine) Metrics() *Metrics { return e.metrics }

// InitMetrics makes the counters of org's configured tables exist at 0
// before any run (the daemon calls it as it loads the configuration): the
// engine's, and its leaser's when that has metrics of its own.
func (e *Engine) InitMetrics(org *config.Org) {
	l, ok := e.leases.(interface{ InitMetrics(org, table string) })
	for _, t := range org.Tables {
		q := e.qualified(t.Name)
		e.metrics.initLabels(org.Name, q)
		if config.LakeOn(*org, t) {
			e.metrics.initLake(org.Name, q)
		}
		if ok {
			l.InitMetrics(org.Name, q)
		}
	}
}

// Leaser takes a table's lease without waiting (pkg/lease implements it).
// ok is false, with no error, when another runner holds it; when ok, unlock
// releases it.
type Leaser interface {
	TryLock(ctx context.Context, org, table string) (unlock func(), ok bool, err error)
}

// Auditor records a finished table run: who ran it, which columns it read,
// and res (rows by operation, positions, outcome, duration); never row
// values. A record it cannot write is an error the run fails with: no run
// goes unaudited silently. It must be safe for concurrent use.
type Auditor interface {
	TableRun(ctx context.Context, actor, runID string, columns []string, res TableResult) error
}

// RunRecorder keeps each table's last attempt for `ehrsync status`
// (pkg/status implements it): who made it, how long it took (from taking
// its lease, or from the run's start when it never began, to its audit
// record), and res (strategy, rows, outcome and error class; never row
// values). An attempt ends when the table ran, or failed to begin because
// the source could not be reached or the run ended first. Its error is logged and does not fail the run: the audit
// is the record no run goes without. It must be safe for concurrent use.
type RunRecorder interface {
	TableAttempt(ctx context.Context, actor string, took time.Duration, res TableResult) error
}

// Views keeps derived views in an organization's store schema.
type Views interface {
	Ensure(ctx context.Context, schema string) (bool, error)
}

// OrgResult is one organization's run: one result per table.
type OrgResult struct {
	Org    string
	RunID  string
	Tables []TableResult
	Err    error // the organization-level failure (source unreachable), if any
	// Skipped are the tables (qualified names) not run because another
	// runner held their lease: a normal outcome, not a failure.
	Skipped []string
	// Stopped says the run ended before it began every table: OrgRun.Stop
	// was closed or ctx ended.
	Stopped bool
}

// Failed counts the tables that failed.
func (r OrgResult) Failed() int {
	n := 0
	for _, t := range r.Tables {
		if t.Err != nil {
			n++
		}
	}
	return n
}

// SyncOrg runs one pass over the organization's tables (only those named in
// tables, when given), as RunOrg with no retries.
func (e *Engine) SyncOrg(ctx context.Context, org *config.Org, tables []string) OrgResult {
	return e.RunOrg(ctx, org, OrgRun{Tables: tables})
}

// qualified is the catalog's qualified name of a configured table: leases,
// positions and audit records use it.
func (e *Engine) qualified(name string) string {
	if t, ok := e.catalog.Table(name); ok {
		return t.QualifiedName()
	}
	return name
}

// columns are the columns a table's run reads (for the audit).
func (e *Engine) columns(tc config.Table) []string {
	if len(tc.Columns) > 0 {
		return tc.Columns
	}
	t, ok := e.catalog.Table(tc.Name)
	if !ok {
		return nil
	}
	out := make([]string, len(t.Columns))
	for i, c := range t.Columns {
		out[i] = c.Name
	}
	return out
}

func selectTables(org *config.Org, names []string) ([]config.Table, error) {
	if len(names) == 0 {
		return org.Tables, nil
	}
	var out []config.Table
	for _, n := range names {
		t, ok := org.Table(n)
		if !ok {
			return nil, fmt.Errorf("org %s has no table %q in its configuration", org.Name, n)
		}
		out = append(out, *t)
	}
	return out, nil
}

func (e *Engine) syncTable(ctx context.Context, log *slog.Logger, db *sql.DB, org *config.Org, tc config.Table, runID, actor string,
	progress func(Progress)) TableResult {
	m := e.metrics
	track := e.tracker(log, db, org, tc, progress)
	defer track.end()
	res, plan, target, err := e.prepare(ctx, db, org, tc)
	var feed *lakeFeed // nil without the lake
	if err == nil {
		feed = e.startLake(ctx, log, org, tc)
		job := TableJob{
			Org: org.Name, Table: res.Table, Strategy: string(plan.Strategy),
			Extractor: plan.Extractor, Target: target, Positions: e.positions, Actor: actor, RunID: runID,
			Metrics: m, progress: track, lake: feed,
		}
		res = RunTable(ctx, log, job)
		if errors.Is(res.Err, extractors.ErrExpired) {
			res = e.expired(ctx, log, job, tc.OnExpired, res)
		}
		switch {
		case res.Err != nil:
		case plan.Strategy == config.StrategySnapshot && midPass(res.From):
			// This run finished a pass an earlier, interrupted run began:
			// rows the source gained behind that pass's cursor since then
			// are in neither. A full pass now makes the run what a sync
			// promises: every row the source held when it began.
			log.Info("finished an interrupted snapshot pass; reading the table once more from the start")
			res = then(res, RunTable(ctx, log, job))
		case handedOff(res.From, res.To):
			// The snapshot ended at its incremental start, recorded when
			// it began (perhaps in an earlier run): the changes since are
			// read now, not left for the next run.
			log.Debug("snapshot handed off to incremental reads; catching up")
			res = then(res, RunTable(ctx, log, job))
		}
		err = res.Err
	}
	switch {
	case err == nil && res.Expired && plan.Keys != nil:
		// Rows deleted at the source while the position was unreadable
		// are not in the re-snapshot, and a snapshot only upserts: find
		// them now, whatever the strategy.
		res.Reconciled, err = e.reconcileIfDue(ctx, plan.Keys, target, actor, 0)
	case err == nil && plan.Keys != nil && !plan.SeesDeletes() && tc.ReconcileEvery > 0:
		res.Reconciled, err = e.reconcileIfDue(ctx, plan.Keys, target, actor, tc.ReconcileEvery)
	}
	res.Err = err
	// The lake's last flush comes after the reconciliation, whose deletes
	// it takes too; its failure fails the run only after the store's work
	// is done.
	if feed != nil {
		var lerr error
		if res.Lake, lerr = feed.finish(ctx); res.Err == nil {
			res.Err = lerr
		}
	}
	return res
}

// finish counts and logs a table's run, once it is audited: a run that
// ended because ctx was canceled as canceled, with who and why.
func (e *Engine) finish(ctx context.Context, log *slog.Logger, res TableResult) {
	m := e.metrics
	if why, ok := canceled(ctx, res.Err); ok {
		m.observe(res, "canceled")
		log.Info("table sync canceled", append([]any{"strategy", res.Strategy, "chunks", res.Chunks}, why...)...)
		return
	}
	if res.Err != nil {
		m.observe(res, "failed")
		log.Error("table sync failed", "strategy", res.Strategy, "chunks", res.Chunks, "err", res.Err)
		return
	}
	m.observe(res, "ok")
	log.Info("table synced", "strategy", res.Strategy, "chunks", res.Chunks, "rows", res.Totals.Rows,
		"inserted", res.Totals.Inserted, "updated", res.Totals.Updated, "deleted", res.Totals.Deleted,
		"position", res.To, "duration", res.Duration.Round(time.Millisecond))
}

// then is run a followed by run b of the same table, as one result.
func then(a, b TableResult) TableResult {
	b.From, b.Chunks, b.Started, b.Expired = a.From, a.Chunks+b.Chunks, a.Started, a.Expired || b.Expired
	b.Duration += a.Duration
	add(&b.Totals, a.Totals)
	return b
}

// handedOff reports whether a run that started from from (none, or a
// snapshot) ended at to, an incremental position.
func handedOff(from, to watermarks.Position) bool {
	if _, ok := from.(watermarks.Snapshot); from != nil && !ok {
		return false
	}
	_, snap := to.(watermarks.Snapshot)
	return to != nil && !snap
}

// midPass reports whether pos is a snapshot stopped between two chunks.
func midPass(pos watermarks.Position) bool {
	s, ok := pos.(watermarks.Snapshot)
	return ok && len(s.LastKey) > 0
}

// expired handles a position the source can no longer serve (PITFALLS P1,
// P2): loudly, and by the table's policy. With resnapshot the position is
// reset (recorded in history) and the table snapshotted again in this run;
// with fail the table fails until an operator acts.
func (e *Engine) expired(ctx context.Context, log *slog.Logger, job TableJob, policy config.ExpiryPolicy, res TableResult) TableResult {
	e.metrics.ExpiredPositions.WithLabelValues(job.Org, job.Table).Inc()
	if policy == config.ExpiredFail {
		res.Err = fmt.Errorf("%w (on_expired: fail; reset the position to re-snapshot: ehrsync positions reset)", res.Err)
		return res
	}
	log.Error("position expired at the source: changes were lost there; re-snapshotting the table",
		"policy", policy, "position", res.From, "err", res.Err)
	if err := e.positions.Reset(ctx, job.Org, job.Table, nil, job.Actor, "position expired at the source: re-snapshot by policy"); err != nil {
		res.Err = fmt.Errorf("reset expired position: %w", storeErr(err))
		return res
	}
	again := RunTable(ctx, log, job)
	again.Expired = true
	return again
}

// prepare resolves the table in the catalog, plans it, and prepares its
// target in the store.
func (e *Engine) prepare(ctx context.Context, db *sql.DB, org *config.Org, tc config.Table) (TableResult, extractors.Plan, Target, error) {
	return e.prepareWith(ctx, db, org, tc, e.planner.Plan)
}

// prepareWith is prepare with the planning step given (a ranged backfill
// plans its bounded extractors).
func (e *Engine) prepareWith(ctx context.Context, db *sql.DB, org *config.Org, tc config.Table,
	planFn func(context.Context, extractors.PlanRequest) (extractors.Plan, error)) (TableResult, extractors.Plan, Target, error) {
	res := TableResult{Org: org.Name, Table: tc.Name}
	t, ok := e.catalog.Table(tc.Name)
	if !ok {
		return res, extractors.Plan{}, nil, fmt.Errorf("table %s is not in the catalog", tc.Name)
	}
	res.Table = t.QualifiedName()
	d, _ := e.planner.(Describer)
	t, drift, err := Resolve(ctx, d, db, org, tc, t)
	if err != nil {
		return res, extractors.Plan{}, nil, err
	}
	log := e.log.With("org", org.Name, "table", res.Table)
	if len(drift.Changed) > 0 || len(drift.Added) > 0 {
		log.Info("the source table changed: reading it as it is now", "changed", drift.Changed, "added", drift.Added)
	}
	if len(drift.Ignored) > 0 {
		log.Debug("source columns not in the catalog or the allow-list are not read", "columns", drift.Ignored)
	}
	rows := tc.BatchRows
	if rows == 0 {
		rows = e.defaults.BatchRows
	}
	plan, err := planFn(ctx, extractors.PlanRequest{
		DB: db, Dialect: schemas.Dialect(org.Source.Dialect), Table: t, Config: tc, Bounds: extractors.Bounds{Practices: org.Source.PracticeIDs,
			ChunkRows: rows, ChunkBytes: int(e.defaults.BatchBytes), QueryTimeout: org.Source.QueryTimeout, Allocator: e.allocator},
	})
	if err != nil {
		return res, plan, nil, fmt.Errorf("plan %s: %w", tc.Name, err)
	}
	res.Strategy = string(plan.Strategy)
	if plan.Table != nil {
		t = plan.Table
	}
	target, err := e.store.Prepare(ctx, org.Name, t, sink.TableOptions{
		DeletePolicy: sink.DeletePolicy(tc.DeletePolicy), ChangeLog: tc.ChangeLog, Lake: config.LakeOn(*org, tc),
	})
	return res, plan, target, storeErr(err)
}

// Resolve is the table a sync of tc reads from org's source, t being tc's
// catalog table: refused when the organization filters by practice and
// the table does not declare its practice column; checked against the
// source table as it is now when d is not nil (schema drift between runs,
// schemas.AdaptToSource: a column gone, or of a type ehrsync cannot carry,
// is an error naming the column and the fix that stops this table only;
// drift says what changed); and projected to tc's columns. The describe
// query is bounded by the source's query timeout, like every source query.
// `ehrsync check` resolves each table with it, as a sync does.
func Resolve(ctx context.Context, d Describer, db *sql.DB, org *config.Org, tc config.Table, t *schemas.Table) (_ *schemas.Table, drift schemas.Adapted, err error) {
	if len(org.Source.PracticeIDs) > 0 {
		if err := t.CheckPracticeFilter(); err != nil {
			return nil, drift, err
		}
	}
	if d != nil {
		if t, drift, err = adapt(ctx, d, db, org, tc, t); err != nil {
			return nil, drift, err
		}
	}
	if len(tc.Columns) > 0 {
		if t, err = t.Project(tc.Columns); err != nil {
			return nil, drift, fmt.Errorf("columns of %s: %w", tc.Name, err)
		}
	}
	return t, drift, nil
}

// adapt checks the catalog table t against the source table as it is now:
// it returns the table to read and what changed, or an error naming the
// column and the fix. A dialect the describer cannot tell leaves t as it is.
func adapt(ctx context.Context, d Describer, db *sql.DB, org *config.Org, tc config.Table, t *schemas.Table) (*schemas.Table, schemas.Adapted, error) {
	dialect := schemas.Dialect(org.Source.Dialect)
	// Bounded like every source query: a connection the network dropped
	// silently must not hold the table's run forever.
	if timeout := org.Source.QueryTimeout; timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cols, err := d.Columns(ctx, db, dialect, t)
	if err != nil {
		return nil, schemas.Adapted{}, fmt.Errorf("describe %s at the source: %w", t.QualifiedName(), err)
	}
	if cols == nil {
		return t, schemas.Adapted{Table: t}, nil
	}
	a, err := schemas.AdaptToSource(t, dialect, cols, tc.Columns)
	if err != nil {
		return nil, schemas.Adapted{}, err
	}
	return a.Table, a, nil
}

// reconcileIfDue compares the source's keys with the store's when the last
// reconciliation is older than every (always, with every 0).
func (e *Engine) reconcileIfDue(ctx context.Context, keys extractors.Extractor, target Target, actor string, every time.Duration) (*sink.ReconcileResult, error) {
	last, err := target.LastReconciled(ctx)
	if err != nil {
		return nil, storeErr(err)
	}
	if every > 0 && !last.IsZero() && time.Since(last) < every {
		return nil, nil
	}
	run, next, err := keyBatches(ctx, keys)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	r, err := target.Reconcile(ctx, next, actor)
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// keyBatches opens a key reader from scratch and returns its run (the
// caller closes it) and a function yielding its key batches, skipping
// chunks that only move the position.
func keyBatches(ctx context.Context, keys extractors.Extractor) (extractors.Run, func(context.Context) (arrow.RecordBatch, error), error) {
	run, err := keys.Open(ctx, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("read source keys: %w", err)
	}
	next := func(ctx context.Context) (arrow.RecordBatch, error) {
		for {
			ch, err := run.Next(ctx)
			if err != nil {
				return nil, err
			}
			if ch.Batch != nil {
				return ch.Batch, nil
			}
		}
	}
	return run, next, nil
}

// NewRunID returns a new run id: 12 random hex digits.
func NewRunID() string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
