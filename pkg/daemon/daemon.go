// Package daemon is ehrsync's scheduler, the heart of `ehrsync run`: per
// organization a schedule (robfig/cron/v3: a cron expression, or an interval
// from a start time in a time zone), no overlapping runs of one org, bounded
// concurrency across orgs, jitter, manual triggers, pause and resume,
// configuration reload, and a graceful shutdown that stops taking work and
// lets the chunk transactions in flight finish (or roll back when the grace
// period ends): a chunk is never half-committed.
//
// It only schedules. A sync of an organization is one engine run
// (Syncer.RunOrg): the daemon gives it the retry policy (exponential
// backoff, transient errors only: engine.IsTransient), its stop channel, and hooks
// that keep the status and metrics current as each table ends and probe
// the CDC capture agent on the run's source connection. A backfill is the
// Backfiller's (pkg/backfill), one table after the other.
//
// Goroutines live here, under an errgroup, each with a stop path.
package daemon

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
	"golang.org/x/sync/errgroup"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/internal/halt"
	"github.com/ehrsync/ehrsync/pkg/source"
)

// Syncer runs organizations: one run per call, its tables at once up to
// the org's parallel_tables, each retried by run.Retry, no new table after
// run.Stop closes. *engine.Engine implements it; it must be safe for
// concurrent use on different orgs.
type Syncer interface {
	RunOrg(ctx context.Context, org *config.Org, run engine.OrgRun) engine.OrgResult
}

// Backfiller re-snapshots one table of an organization under the table's
// lease, as actor: the whole table, or the rows whose key is in r when r is
// not zero. CheckRange checks a range before it is queued (an error
// matching engine.ErrBadRange when it does not parse). *backfill.Runner
// implements it.
type Backfiller interface {
	CheckRange(org *config.Org, table string, r engine.Range) error
	Backfill(ctx context.Context, org *config.Org, table string, r engine.Range, actor string) (engine.TableResult, error)
}

// Options tune the scheduler. Zero values take the defaults.
type Options struct {
	// Concurrency is how many organizations run at once (default 4).
	Concurrency int
	// Jitter delays each scheduled run by a random duration in [0, Jitter),
	// so replicas and orgs on one schedule do not start in lockstep.
	Jitter time.Duration
	// Grace is how long a shutdown waits for runs in flight before it
	// cancels them (their open chunk transaction rolls back). Default 30s.
	Grace time.Duration
	// Retries is how many times a table (or an org whose source failed) is
	// retried after a transient error (default 3; negative: none).
	Retries int
	// Backoff is the first retry's delay (default 5s); each next one
	// doubles, up to MaxBackoff (default 5m), with jitter.
	Backoff, MaxBackoff time.Duration
	// Actor names the daemon in position history and audit ("daemon").
	Actor string
	// Now is the clock (tests); default time.Now.
	Now func() time.Time
	// Agent, when set, checks the CDC capture agent of each organization
	// with a SQL Server source that may use CDC, at the start of each of
	// its sync runs, on the run's source connection
	// (ehrsync_source_capture_agent_up).
	Agent AgentProbe
	// LakeMaintenance, when set, maintains each organization's lake tables
	// (compaction, snapshot expiry, orphan files) every LakeEvery, the
	// first time LakeEvery after the start; one organization at a time, a
	// paused one skipped. A table a flush holds is left to the next time.
	LakeMaintenance func(ctx context.Context, org *config.Org)
	LakeEvery       time.Duration
}

func (o *Options) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Grace <= 0 {
		o.Grace = 30 * time.Second
	}
	if o.Retries == 0 {
		o.Retries = 3
	}
	if o.Backoff <= 0 {
		o.Backoff = 5 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 5 * time.Minute
	}
	if o.Actor == "" {
		o.Actor = "daemon"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Errors of the control operations (the admin API maps them to statuses).
var (
	ErrUnknownOrg   = errors.New("no such organization")
	ErrUnknownTable = errors.New("no such table in the organization's configuration")
	ErrNotRunning   = errors.New("nothing was running: the organization has no run in progress")
	ErrNoBackfill   = errors.New("backfills are not available")
	// ErrConflict: the request would repeat, or silently replace, one
	// queued or running (a *ConflictError names it).
	ErrConflict = errors.New("another request is in the way")
)

// ConflictError refuses a request that another, queued or running, is in
// the way of: a backfill of a table whose backfill is queued or running, or
// any request that would replace a queued one it cannot join. It matches
// ErrConflict.
type ConflictError struct {
	Existing Request
}

func (e *ConflictError) Error() string {
	what := "a sync"
	if e.Existing.Kind == "backfill" {
		what = "a backfill"
	}
	if len(e.Existing.Tables) > 0 {
		what += " of " + strings.Join(e.Existing.Tables, ", ")
	} else {
		what += " of every table"
	}
	fix := "try again once it has started"
	if e.Existing.State == "running" {
		fix = "wait for it to end, or cancel it"
	}
	return fmt.Sprintf("%s is %s (request %s, asked by %s): %s", what, e.Existing.State, e.Existing.ID, e.Existing.Actor, fix)
}

func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// Request is a queued or running request of an organization: what the
// admin API answers a trigger or a cancel with. Its ID is the run id of a
// sync's logs, position history and audit.
type Request struct {
	ID   string `json:"id"`
	Kind string `json:"kind"` // sync or backfill
	// Tables are the tables asked for; empty: every table.
	Tables []string `json:"tables,omitempty"`
	// Ranged: a backfill of a key range of Tables[0] (the bounds are key
	// values: never shown).
	Ranged bool      `json:"ranged,omitempty"`
	Actor  string    `json:"actor"`
	State  string    `json:"state"` // queued or running
	Asked  time.Time `json:"asked_at"`
	// Joined: the request answered was already queued, and the one asked
	// for joined it.
	Joined bool `json:"joined,omitempty"`
	// After is the id of the run in progress a queued request waits for.
	After string `json:"after,omitempty"`
}

// Daemon schedules and runs organizations. Its control methods (Trigger,
// Pause, Resume, Cancel, Reload, Status) are safe for concurrent use while
// Run runs.
type Daemon struct {
	sync     Syncer
	backfill Backfiller
	log      *slog.Logger
	metrics  *Metrics
	opts     Options

	wake chan struct{}

	// started is the configuration the process started with: what a
	// reload cannot change (restartOnly) stays as it says.
	started *config.Config

	mu     sync.Mutex
	orgs   map[string]*orgState
	loaded bool
}

type orgState struct {
	cfg     config.Org
	sched   cron.Schedule
	next    time.Time
	paused  bool
	removed bool // gone from the configuration; dropped when its run ends
	pending *request
	running *request
	cancel  context.CancelCauseFunc
	last    *RunStatus
	tables  map[string]TableStatus
}

type request struct {
	id        string
	tables    []string // none: all
	backfill  bool
	rng       engine.Range // a ranged backfill of tables[0]
	actor     string
	scheduled bool
	at        time.Time
}

// view is r as a Request in state.
func (r *request) view(state string) Request {
	kind := "sync"
	if r.backfill {
		kind = "backfill"
	}
	return Request{ID: r.id, Kind: kind, Tables: slices.Clone(r.tables), Ranged: !r.rng.IsZero(), Actor: r.actor, State: state, Asked: r.at}
}

// overlaps reports whether two requests' tables (none: all) share one.
func overlaps(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, t := range a {
		if slices.Contains(b, t) {
			return true
		}
	}
	return false
}

// enqueue makes req the org's pending request, or answers why not: a
// backfill of a table whose backfill is queued or running is refused, as
// is any request while another of a different kind is queued; a sync while
// a sync is queued joins it (its tables added), and the queued one is
// returned. Call with d.mu held.
func (d *Daemon) enqueue(st *orgState, req *request) (Request, error) {
	if req.backfill && st.running != nil && st.running.backfill && overlaps(st.running.tables, req.tables) {
		return Request{}, &ConflictError{Existing: st.running.view("running")}
	}
	if p := st.pending; p != nil {
		if p.backfill || req.backfill {
			return Request{}, &ConflictError{Existing: st.queued()}
		}
		if len(p.tables) > 0 && len(req.tables) > 0 {
			for _, t := range req.tables {
				if !slices.Contains(p.tables, t) {
					p.tables = append(p.tables, t)
				}
			}
		} else {
			p.tables = nil
		}
		v := st.queued()
		v.Joined = true
		return v, nil
	}
	req.id = engine.NewRunID()
	st.pending = req
	d.poke()
	return st.queued(), nil
}

// queued is the org's pending request, with the run it waits for.
func (st *orgState) queued() Request {
	v := st.pending.view("queued")
	if st.running != nil {
		v.After = st.running.id
	}
	return v
}

// New returns a daemon for cfg's organizations. backfill may be nil
// (backfills unavailable); metrics may be nil.
func New(cfg *config.Config, sync Syncer, backfill Backfiller, log *slog.Logger, metrics *Metrics, opts Options) (*Daemon, error) {
	opts.defaults()
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	d := &Daemon{sync: sync, backfill: backfill, log: log, metrics: metrics, opts: opts,
		wake: make(chan struct{}, 1), orgs: map[string]*orgState{}, started: cfg}
	if err := d.Reload(cfg); err != nil {
		return nil, err
	}
	return d, nil
}

// Reload replaces the organizations and their schedules with cfg's. Runs in
// flight keep the configuration they started with; a removed org's run
// finishes. On an error nothing changes. Store, server and defaults changes
// need a restart.
func (d *Daemon) Reload(cfg *config.Config) error {
	scheds := make(map[string]cron.Schedule, len(cfg.Orgs))
	var errs []error
	for _, o := range cfg.Orgs {
		s, err := NewSchedule(o.Schedule)
		if err != nil {
			errs = append(errs, fmt.Errorf("org %s: %w", o.Name, err))
			continue
		}
		scheds[o.Name] = s
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	now := d.opts.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	for name, st := range d.orgs {
		if _, ok := scheds[name]; !ok {
			if st.running != nil {
				st.removed = true
			} else {
				delete(d.orgs, name)
			}
			d.metrics.NextRun.DeleteLabelValues(name)
			d.metrics.Interval.DeleteLabelValues(name)
			d.metrics.Paused.DeleteLabelValues(name)
			d.metrics.CaptureAgentUp.DeleteLabelValues(name)
		}
	}
	for _, o := range cfg.Orgs {
		st, ok := d.orgs[o.Name]
		if !ok {
			st = &orgState{tables: map[string]TableStatus{}}
			d.orgs[o.Name] = st
		}
		st.cfg, st.sched, st.removed = o, scheds[o.Name], false
		d.initMetrics(&o)
		st.next = st.sched.Next(now)
		d.metrics.NextRun.WithLabelValues(o.Name).Set(float64(st.next.Unix()))
		d.metrics.Interval.WithLabelValues(o.Name).Set(st.sched.Next(st.next).Sub(st.next).Seconds())
		d.metrics.Paused.WithLabelValues(o.Name).Set(b2f(st.paused))
	}
	d.metrics.Schedules.Set(float64(len(cfg.Orgs)))
	d.loaded = true
	d.poke()
	return nil
}

// metricsInitializer makes an organization's counters exist at 0 before
// any run: the engine and the backfill runner are.
type metricsInitializer interface {
	InitMetrics(org *config.Org)
}

// initMetrics makes org's counters exist at 0, every label value they can
// take that the configuration tells (not error classes), so that rates and
// alerts see them before the first run: the daemon's, and those of its
// syncer and backfiller when they can.
func (d *Daemon) initMetrics(org *config.Org) {
	m := d.metrics
	for _, o := range []string{"ok", "failed", "canceled"} {
		m.Runs.WithLabelValues(org.Name, o)
	}
	for _, r := range []string{"overlap", "paused"} {
		m.Skipped.WithLabelValues(org.Name, r)
	}
	m.Retries.WithLabelValues(org.Name)
	for _, x := range []any{d.sync, d.backfill} {
		if i, ok := x.(metricsInitializer); ok {
			i.InitMetrics(org)
		}
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func (d *Daemon) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// Loaded reports whether schedules are loaded (for /readyz).
func (d *Daemon) Loaded() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.loaded
}

// Trigger asks for a run of org now (only the named tables, when given),
// as actor, and returns the request queued: it starts when the org's run
// in progress, if any, ends. A backfill re-snapshots the tables. A request
// another is in the way of is refused with a *ConflictError naming that
// one, and a sync asked for while one is queued joins it (see enqueue).
func (d *Daemon) Trigger(org string, tables []string, backfill bool, actor string) (Request, error) {
	if backfill && d.backfill == nil {
		return Request{}, ErrNoBackfill
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st, ok := d.orgs[org]
	if !ok || st.removed {
		return Request{}, fmt.Errorf("%w: %s", ErrUnknownOrg, org)
	}
	for _, t := range tables {
		if _, ok := st.cfg.Table(t); !ok {
			return Request{}, fmt.Errorf("%w: %s %s", ErrUnknownTable, org, t)
		}
	}
	return d.enqueue(st, &request{tables: tables, backfill: backfill, actor: actor, at: d.opts.Now()})
}

// TriggerRange asks for a backfill of the rows of one table of org whose
// key is in r, as actor, as Trigger does. The range is checked now: a range
// that does not parse is an error matching engine.ErrBadRange.
func (d *Daemon) TriggerRange(org, table string, r engine.Range, actor string) (Request, error) {
	if d.backfill == nil {
		return Request{}, ErrNoBackfill
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	st, ok := d.orgs[org]
	if !ok || st.removed {
		return Request{}, fmt.Errorf("%w: %s", ErrUnknownOrg, org)
	}
	if _, ok := st.cfg.Table(table); !ok {
		return Request{}, fmt.Errorf("%w: %s %s", ErrUnknownTable, org, table)
	}
	if err := d.backfill.CheckRange(&st.cfg, table, r); err != nil {
		return Request{}, err
	}
	return d.enqueue(st, &request{tables: []string{table}, backfill: true, rng: r, actor: actor, at: d.opts.Now()})
}

// Pause stops org's scheduled runs (a run in progress finishes; manual
// triggers still run). Resume starts them again.
func (d *Daemon) Pause(org string) error  { return d.setPaused(org, true) }
func (d *Daemon) Resume(org string) error { return d.setPaused(org, false) }

func (d *Daemon) setPaused(org string, p bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, ok := d.orgs[org]
	if !ok || st.removed {
		return fmt.Errorf("%w: %s", ErrUnknownOrg, org)
	}
	st.paused = p
	d.metrics.Paused.WithLabelValues(org).Set(b2f(p))
	return nil
}

// Cancel cancels org's run in progress (a sync or a backfill) as actor,
// and returns it; queued is the request that will start next, if any (a
// cancel leaves it). The run's open chunk transaction rolls back; committed
// chunks stay, and a backfill resumes where it stopped when started again.
// With no run in progress it returns ErrNotRunning.
func (d *Daemon) Cancel(org, actor string) (canceled Request, queued *Request, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	st, ok := d.orgs[org]
	if !ok {
		return Request{}, nil, fmt.Errorf("%w: %s", ErrUnknownOrg, org)
	}
	if st.pending != nil {
		q := st.queued()
		queued = &q
	}
	if st.running == nil || st.cancel == nil {
		return Request{}, queued, fmt.Errorf("%w: %s", ErrNotRunning, org)
	}
	st.cancel(&engine.Cancel{By: actor, Why: "an operator canceled the run"})
	return st.running.view("running"), queued, nil
}

// RunStatus is an organization's last finished run.
type RunStatus struct {
	Kind       string    `json:"kind"` // sync or backfill
	Actor      string    `json:"actor"`
	Start      time.Time `json:"start"`
	End        time.Time `json:"end"`
	Outcome    string    `json:"outcome"` // ok, failed, canceled
	ErrorClass string    `json:"error_class,omitempty"`
}

// TableStatus is what the daemon saw of a table's last run.
type TableStatus struct {
	Strategy    string    `json:"strategy,omitempty"`
	LastRun     time.Time `json:"last_run"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	Outcome     string    `json:"outcome"` // ok, failed, canceled, expired, busy
	ErrorClass  string    `json:"error_class,omitempty"`
	Rows        int64     `json:"rows"`
}

// OrgStatus is an organization's state for the admin API.
type OrgStatus struct {
	Name    string                 `json:"name"`
	Config  config.Org             `json:"-"`
	State   string                 `json:"state"` // idle, running, backfilling, paused
	Paused  bool                   `json:"paused"`
	Queued  bool                   `json:"queued"`
	NextRun time.Time              `json:"next_run"`
	LastRun *RunStatus             `json:"last_run,omitempty"`
	Tables  map[string]TableStatus `json:"tables"`
}

// Status returns every organization's state, by name.
func (d *Daemon) Status() []OrgStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]OrgStatus, 0, len(d.orgs))
	for name, st := range d.orgs {
		s := OrgStatus{Name: name, Config: st.cfg, Paused: st.paused, Queued: st.pending != nil, NextRun: st.next,
			Tables: make(map[string]TableStatus, len(st.tables)), State: "idle"}
		switch {
		case st.running != nil && st.running.backfill:
			s.State = "backfilling"
		case st.running != nil:
			s.State = "running"
		case st.paused:
			s.State = "paused"
		}
		if st.last != nil {
			l := *st.last
			s.LastRun = &l
		}
		for k, v := range st.tables {
			s.Tables[k] = v
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Serve is what Run serves besides the schedules.
type Serve struct {
	// Listener and Handler: the HTTP server of metrics and health; nil
	// Listener: none.
	Listener net.Listener
	Handler  http.Handler
	// AdminListener and AdminHandler: the admin API's own HTTP server; nil
	// AdminListener: none (the admin API is off).
	AdminListener net.Listener
	AdminHandler  http.Handler
	// Reload: each value received reloads the configuration from Load
	// (SIGHUP). nil: no reloads.
	Reload <-chan os.Signal
	Load   func() (*config.Config, error)
}

// Run runs the schedules and serves srv until ctx is done, then shuts down
// gracefully: it starts no new run or table, waits up to Options.Grace for
// the runs in flight, then cancels them (their open chunk transactions roll
// back), and returns nil. It returns an error only when the HTTP server
// fails.
func (d *Daemon) Run(ctx context.Context, srv Serve) error {
	// Runs outlive ctx by up to the grace period.
	runCtx, cancelRuns := context.WithCancelCause(context.WithoutCancel(ctx))
	defer cancelRuns(nil)
	var runs errgroup.Group
	sem := make(chan struct{}, d.opts.Concurrency)

	var (
		servers  []*http.Server
		serving  errgroup.Group
		serveErr = make(chan error, 2)
	)
	for _, l := range []struct {
		ln net.Listener
		h  http.Handler
	}{{srv.Listener, srv.Handler}, {srv.AdminListener, srv.AdminHandler}} {
		if l.ln == nil {
			continue
		}
		// The server's own errors (a TLS handshake refused) are logged
		// as the daemon logs.
		server := &http.Server{Handler: l.h, ReadHeaderTimeout: 10 * time.Second,
			ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelWarn)}
		servers = append(servers, server)
		serving.Go(func() error {
			err := server.Serve(l.ln)
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			serveErr <- err
			return err
		})
	}

	if d.opts.LakeMaintenance != nil && d.opts.LakeEvery > 0 {
		runs.Go(func() error {
			d.maintainLake(ctx)
			return nil
		})
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var failed error
loop:
	for {
		now := d.opts.Now()
		for _, s := range d.due(now) {
			d.start(&runs, runCtx, ctx.Done(), sem, s.name, s.org, s.req)
		}
		timer.Reset(d.untilNext(d.opts.Now()))
		select {
		case <-ctx.Done():
			break loop
		case failed = <-serveErr:
			break loop
		case <-timer.C:
		case <-d.wake:
		case <-srv.Reload:
			d.reload(srv.Load)
		}
	}

	d.log.Info("stopping: no new runs; waiting for runs in flight", "grace", d.opts.Grace)
	grace := time.AfterFunc(d.opts.Grace, func() {
		d.log.Warn("grace period over: canceling runs in flight (open chunk transactions roll back)")
		cancelRuns(&engine.Cancel{By: d.opts.Actor, Why: "shutdown: the grace period ended"})
	})
	_ = runs.Wait()
	grace.Stop()
	if len(servers) > 0 {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		for _, server := range servers {
			_ = server.Shutdown(sctx)
		}
		_ = serving.Wait()
	}
	d.log.Info("stopped")
	if failed != nil {
		return fmt.Errorf("http server: %w", failed)
	}
	return nil
}

// maintainLake runs the lake's maintenance every LakeEvery until ctx ends.
func (d *Daemon) maintainLake(ctx context.Context) {
	tick := time.NewTicker(d.opts.LakeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		d.mu.Lock()
		var orgs []config.Org
		for _, st := range d.orgs {
			if !st.removed && !st.paused {
				orgs = append(orgs, st.cfg)
			}
		}
		d.mu.Unlock()
		slices.SortFunc(orgs, func(a, b config.Org) int { return strings.Compare(a.Name, b.Name) })
		for i := range orgs {
			if ctx.Err() != nil {
				return
			}
			d.opts.LakeMaintenance(ctx, &orgs[i])
		}
	}
}

func (d *Daemon) reload(load func() (*config.Config, error)) {
	if load == nil {
		return
	}
	cfg, err := load()
	if err == nil {
		err = d.Reload(cfg)
	}
	if err != nil {
		d.metrics.Reloads.WithLabelValues("failed").Inc()
		d.log.Error("configuration not reloaded; the old one stays", "err", err)
		return
	}
	d.metrics.Reloads.WithLabelValues("ok").Inc()
	d.log.Info("configuration reloaded", "orgs", len(cfg.Orgs))
	if keys := restartOnly(d.started, cfg); len(keys) > 0 {
		d.log.Warn("configuration reloaded; restart the daemon for these changed settings to take effect everywhere (a reload leaves them as they were, but for the defaults organizations copy)",
			"settings", keys)
	}
}

type dueRun struct {
	name string
	org  config.Org
	req  request
}

// due returns the runs to start now and marks them running; scheduled runs
// of a running or paused org are skipped and counted.
func (d *Daemon) due(now time.Time) []dueRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []dueRun
	names := make([]string, 0, len(d.orgs))
	for n := range d.orgs {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		st := d.orgs[name]
		if st.removed {
			continue
		}
		var req *request
		if !st.next.After(now) {
			switch {
			case st.running != nil:
				d.metrics.Skipped.WithLabelValues(name, "overlap").Inc()
				d.log.Warn("scheduled run skipped: the previous run is still going", "org", name)
			case st.paused:
				d.metrics.Skipped.WithLabelValues(name, "paused").Inc()
			default:
				req = &request{id: engine.NewRunID(), scheduled: true, actor: d.opts.Actor, at: st.next}
			}
			st.next = st.sched.Next(now)
			d.metrics.NextRun.WithLabelValues(name).Set(float64(st.next.Unix()))
		}
		if st.running == nil && st.pending != nil {
			req, st.pending = st.pending, nil
		}
		if req == nil || st.running != nil {
			continue
		}
		st.running = req
		out = append(out, dueRun{name: name, org: st.cfg, req: *req})
	}
	return out
}

func (d *Daemon) untilNext(now time.Time) time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	wait := time.Hour
	for _, st := range d.orgs {
		if w := st.next.Sub(now); !st.next.IsZero() && w < wait {
			wait = w
		}
	}
	return max(wait, time.Millisecond)
}

// start runs one org's request in the group. stop closes when the daemon
// stops taking work; ctx is canceled when the grace period ends.
func (d *Daemon) start(g *errgroup.Group, ctx context.Context, stop <-chan struct{}, sem chan struct{}, name string, org config.Org, req request) {
	ctx, cancel := context.WithCancelCause(ctx)
	d.mu.Lock()
	d.orgs[name].cancel = cancel
	d.mu.Unlock()
	g.Go(func() error {
		defer d.finish(name, cancel)
		if req.scheduled && d.opts.Jitter > 0 {
			if !halt.Sleep(ctx, stop, rand.N(d.opts.Jitter)) {
				return nil
			}
		}
		if !halt.Acquire(ctx, stop, sem) {
			return nil
		}
		defer func() { <-sem }()
		d.runOrg(ctx, stop, &org, req)
		return nil
	})
}

func (d *Daemon) finish(name string, cancel context.CancelCauseFunc) {
	cancel(nil)
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.orgs[name]
	st.running, st.cancel = nil, nil
	if st.removed {
		delete(d.orgs, name)
	}
	d.poke() // a trigger may be waiting for this run
}

// runOrg runs one request of the org: a sync, as one engine run of its
// tables, or a backfill, one table after the other (a shutdown stops
// between them).
func (d *Daemon) runOrg(ctx context.Context, stop <-chan struct{}, org *config.Org, req request) {
	start := d.opts.Now()
	d.metrics.InFlight.Inc()
	defer d.metrics.InFlight.Dec()
	kind := "sync"
	if req.backfill {
		kind = "backfill"
	}
	log := d.log.With("org", org.Name, "kind", kind, "actor", req.actor, "request", req.id)
	log.Debug("run started")
	var outcome, class string
	if req.backfill {
		outcome, class = d.backfillOrg(ctx, stop, org, req)
	} else {
		outcome, class = d.syncOrg(ctx, stop, log, org, req)
	}
	d.metrics.Runs.WithLabelValues(org.Name, outcome).Inc()
	d.metrics.RunDuration.WithLabelValues(org.Name).Observe(d.opts.Now().Sub(start).Seconds())
	d.mu.Lock()
	if st, ok := d.orgs[org.Name]; ok {
		st.last = &RunStatus{Kind: kind, Actor: req.actor, Start: start, End: d.opts.Now(), Outcome: outcome, ErrorClass: class}
	}
	d.mu.Unlock()
	log.Debug("run finished", "outcome", outcome)
}

// syncOrg runs the org's tables (req.tables; nil: all) as one engine run:
// one source connection, parallel_tables at once, transient failures
// retried inside the run. Each table's attempt is in the status and
// metrics as it ends.
func (d *Daemon) syncOrg(ctx context.Context, stop <-chan struct{}, log *slog.Logger, org *config.Org, req request) (outcome, class string) {
	r := d.sync.RunOrg(ctx, org, engine.OrgRun{
		ID: req.id, Tables: req.tables, Actor: d.opts.Actor, Stop: stop,
		Retry: engine.Retry{Attempts: d.opts.Retries, Backoff: d.backoff, Transient: engine.IsTransient},
		Opened: func(ctx context.Context, db *sql.DB) {
			d.metrics.SourceUp.WithLabelValues(org.Name).Set(1)
			d.checkAgent(ctx, org, db)
		},
		Finished: func(t engine.TableResult) { d.observeTable(org.Name, t) },
		Retrying: func(table string, attempt int, wait time.Duration, err error) {
			if table == "" {
				d.observeSource(org.Name, err)
			}
			d.metrics.Retries.WithLabelValues(org.Name).Inc()
			log.Warn("transient error: retrying", "table", table, "attempt", attempt, "in", wait.Round(time.Millisecond), "class", engine.Class(err))
		},
	})
	d.observeSkipped(org.Name, r.Skipped)
	outcome = "ok"
	if r.Err != nil {
		d.observeSource(org.Name, r.Err)
		outcome, class = "failed", engine.Class(r.Err)
	}
	for _, t := range r.Tables {
		if t.Err != nil && class == "" {
			outcome, class = "failed", engine.Class(t.Err)
		}
	}
	switch {
	case r.Stopped:
		outcome = "canceled"
	case ctx.Err() != nil:
		outcome, class = "canceled", "canceled"
	}
	return outcome, class
}

// backfillOrg runs a backfill request, one table after the other, and
// stops at the first organization-level failure.
func (d *Daemon) backfillOrg(ctx context.Context, stop <-chan struct{}, org *config.Org, req request) (outcome, class string) {
	tables := req.tables
	if len(tables) == 0 {
		for _, t := range org.Tables {
			tables = append(tables, t.Name)
		}
	}
	outcome = "ok"
	for _, t := range tables {
		if halt.Requested(ctx, stop) {
			return "canceled", class
		}
		res, err := d.backfill.Backfill(ctx, org, t, req.rng, req.actor)
		if res.Table == "" && err != nil {
			// No table ran: the backfill could not begin.
			d.observeSource(org.Name, err)
			outcome, class = "failed", engine.Class(err)
			if ctx.Err() != nil {
				return "canceled", "canceled"
			}
			return outcome, class
		}
		if err == nil {
			err = res.Err
		}
		res.Err = err
		d.observeTable(org.Name, res)
		if err != nil {
			outcome, class = "failed", engine.Class(err)
		}
	}
	if ctx.Err() != nil {
		return "canceled", "canceled"
	}
	return outcome, class
}

func (d *Daemon) backoff(n int) time.Duration {
	b := d.opts.Backoff << min(n, 20)
	if b > d.opts.MaxBackoff || b <= 0 {
		b = d.opts.MaxBackoff
	}
	return b/2 + rand.N(b/2+1)
}

// observeSource records an organization-level failure (its source, or a
// backfill that could not begin) in the metrics. A cancel is no failure,
// and a configuration error (a secret that cannot be resolved) says nothing
// of the source, which was not tried.
func (d *Daemon) observeSource(org string, err error) {
	if errors.Is(err, context.Canceled) {
		return
	}
	d.metrics.Errors.WithLabelValues(org, "*", engine.Class(err)).Inc()
	if !source.IsConfig(err) {
		d.metrics.SourceUp.WithLabelValues(org).Set(0)
	}
}

// observeTable records a table's finished attempt in the status and
// metrics.
func (d *Daemon) observeTable(org string, t engine.TableResult) {
	now := d.opts.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.orgs[org]
	ts := st.tables[t.Table]
	ts.Strategy, ts.LastRun, ts.Rows, ts.Outcome, ts.ErrorClass = t.Strategy, now, t.Totals.Rows, "ok", ""
	if t.Expired {
		ts.Outcome = "expired"
	}
	switch {
	case errors.Is(t.Err, context.Canceled):
		// The daemon's runs end canceled only when an operator or the
		// shutdown's grace period cancels them: no failure.
		ts.Outcome = "canceled"
	case t.Err != nil:
		ts.Outcome, ts.ErrorClass = "failed", engine.Class(t.Err)
		d.metrics.Errors.WithLabelValues(org, t.Table, ts.ErrorClass).Inc()
	default:
		ts.LastSuccess = now
	}
	st.tables[t.Table] = ts
}

// observeSkipped records the tables a run skipped because another runner
// held their lease.
func (d *Daemon) observeSkipped(org string, tables []string) {
	now := d.opts.Now()
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.orgs[org]
	for _, t := range tables {
		ts := st.tables[t]
		ts.LastRun, ts.Outcome, ts.ErrorClass = now, "busy", ""
		st.tables[t] = ts
	}
}
