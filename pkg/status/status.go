package status

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/robfig/cron/v3"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// State is a table's state, from what happened to it.
type State string

// The states, in the order they are decided (the package comment).
const (
	StateFailing      State = "failing"
	StateExpired      State = "expired"
	StateCorrupt      State = "corrupt"
	StateSnapshotting State = "snapshotting"
	StateReset        State = "reset"
	StateNeverRun     State = "never_run"
	StateSynced       State = "synced"
)

// ErrNoSchema means the store has no ehrsync schema: nothing ever synced
// into it.
var ErrNoSchema = errors.New("the store has no ehrsync schema (nothing was synced into it): " +
	"run `ehrsync migrate --config FILE`, or a first `ehrsync sync`")

// DefaultStaleIntervals is how many of an organization's schedule
// intervals a table may go without being synced before it is stale, when
// Options.StaleAfter is not set.
const DefaultStaleIntervals = 3

// Report is the status of organizations' tables at one instant.
type Report struct {
	// At is the store's clock when the report was gathered: ages are
	// measured from it.
	At time.Time `json:"at"`
	// From says where the report comes from: "store" (read by the
	// command) or "daemon" (the admin API, with the daemon's own facts).
	From string `json:"from"`
	Orgs []Org  `json:"orgs"`
	// Notes are what limits the report (a store schema without run
	// records).
	Notes []string `json:"notes,omitempty"`
}

// Org is one organization's status.
type Org struct {
	Name string `json:"name"`
	// Daemon is what the daemon knows of the organization: nil when the
	// report was read from the store.
	Daemon *DaemonOrg `json:"daemon,omitempty"`
	Tables []Table    `json:"tables"`
}

// DaemonOrg is what only a running daemon knows of an organization.
type DaemonOrg struct {
	State   string            `json:"state"` // idle, running, backfilling, paused
	Paused  bool              `json:"paused"`
	Queued  bool              `json:"queued"`
	NextRun time.Time         `json:"next_run,omitzero"`
	LastRun *daemon.RunStatus `json:"last_run,omitempty"`
}

// Table is one table's status. It holds no row value: the position is its
// summary (watermarks.Summary), never its key or cursor values.
type Table struct {
	Name string `json:"name"`
	// Strategy is the one the last run used (the planner's choice), else
	// the configured one ("auto" before any run).
	Strategy string `json:"strategy"`
	State    State  `json:"state"`
	// Position is the saved position's summary; nil: none.
	Position          *watermarks.Summary `json:"position"`
	PositionUpdatedAt time.Time           `json:"position_updated_at,omitzero"`
	// LastRun is the table's last attempt; nil: none recorded.
	LastRun *Run `json:"last_run,omitempty"`
	// LastSuccessAt is when the last successful attempt finished.
	LastSuccessAt time.Time `json:"last_success_at,omitzero"`
	// Failures are the failed attempts since the last successful one, the
	// first of them begun at FailingSince.
	Failures     int       `json:"failures"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	// LastChangeAt is when the last commit that wrote rows to the table
	// was made (the newest committed change).
	LastChangeAt time.Time `json:"last_change_at,omitzero"`
	// SyncedAt is when the store was last known current with the source:
	// the later of LastSuccessAt and the last commit of a chunk (so a long
	// snapshot that commits is not stale; an operator's reset or rewind
	// is no commit).
	SyncedAt time.Time `json:"synced_at,omitzero"`
	// FreshnessSeconds is At minus SyncedAt; nil when never synced.
	FreshnessSeconds  *float64 `json:"freshness_seconds"`
	StaleAfterSeconds float64  `json:"stale_after_seconds"`
	Stale             bool     `json:"stale"`
	// NextRun is the organization's scheduled run after the table's last
	// attempt (the daemon's own next run when it answers); Overdue says
	// a whole scheduled run was missed since (no daemon running, or it
	// is paused or behind).
	NextRun time.Time `json:"next_run,omitzero"`
	Overdue bool      `json:"overdue"`
	// Lease is who holds the table's lease now (a run of it in
	// progress); nil: nobody.
	Lease *Lease `json:"lease,omitempty"`
	// Lake is the table's change lake; nil: lake is off for the table.
	Lake *Lake `json:"lake,omitempty"`
}

// Lake is a table's change lake as the store records it: its last lake
// commit (ehrsync.lake_tables) and what waits in its lake outbox. Its
// position is a summary, never a key or cursor value.
type Lake struct {
	// Table is the lake table's name in ehrsync.lake_tables
	// (<store schema>.<store table>); its Iceberg table is
	// <store schema>.<store table>__changes.
	Table string `json:"table"`
	// CommittedAt is when the last lake commit was made; zero: none yet.
	CommittedAt time.Time `json:"committed_at,omitzero"`
	// Claim is the number of the last outbox claim the lake holds.
	Claim      int64 `json:"claim"`
	SnapshotID int64 `json:"snapshot_id,omitempty"`
	// Rows counts the change rows appended to the lake, in all.
	Rows int64 `json:"rows"`
	// Position is the summary of the position the lake holds changes to;
	// nil: none. PositionUnreadable: the recorded one does not decode.
	Position           *watermarks.Summary `json:"position"`
	PositionUnreadable bool                `json:"position_unreadable,omitempty"`
	// Waiting is what the store committed and the lake does not hold yet.
	Waiting LakeWaiting `json:"waiting"`
	// Behind says a chunk has waited in the outbox longer than the
	// table's staleness threshold (StaleAfterSeconds): the lake is behind
	// the store.
	Behind bool `json:"behind"`
}

// LakeWaiting is what waits in a table's lake outbox.
type LakeWaiting struct {
	Chunks int64 `json:"chunks"` // store commits
	Rows   int64 `json:"rows"`   // change rows
	Bytes  int64 `json:"bytes"`  // their bytes in the outbox (Arrow IPC)
	// Since is when the oldest chunk waiting was committed to the store.
	Since time.Time `json:"since,omitzero"`
}

// Run is a table's attempt.
type Run struct {
	RunID           string    `json:"run_id"`
	Actor           string    `json:"actor"`
	StartedAt       time.Time `json:"started_at"`
	FinishedAt      time.Time `json:"finished_at"`
	DurationSeconds float64   `json:"duration_seconds"`
	Outcome         string    `json:"outcome"` // ok, expired, failed, canceled
	ErrorClass      string    `json:"error_class,omitempty"`
	Rows            int64     `json:"rows"`
	Inserted        int64     `json:"inserted"`
	Updated         int64     `json:"updated"`
	Deleted         int64     `json:"deleted"`
}

// Lease is who holds a table's lease.
type Lease struct {
	// Holder is "PID@HOST" of the ehrsync process; "" when the store does
	// not show it to this role.
	Holder     string    `json:"holder,omitempty"`
	PID        int32     `json:"store_pid"`
	ClientAddr string    `json:"client_addr,omitempty"`
	Since      time.Time `json:"since,omitzero"`
}

// Options say what Gather reports.
type Options struct {
	// Orgs are the organizations to report, in this order.
	Orgs []config.Org
	// Tables, when set, are the only tables reported (names as
	// configured or qualified); they must be tables of every org in Orgs.
	Tables []string
	// Catalog names the tables as positions, leases and runs know them.
	Catalog *schemas.Catalog
	// StaleAfter is how long a table may go without being synced before
	// it is stale; 0: DefaultStaleIntervals of its organization's
	// schedule.
	StaleAfter time.Duration
	// Daemon is what a running daemon knows of the organizations (the
	// admin API's report); nil: none.
	Daemon []daemon.OrgStatus
}

// Gather reads the status of opts.Orgs' tables from the store. A name in
// opts.Tables that is not a configured table matches
// daemon.ErrUnknownTable.
func (s *Store) Gather(ctx context.Context, opts Options) (*Report, error) {
	rep := &Report{From: "store", Orgs: []Org{}}
	if opts.Daemon != nil {
		rep.From = "daemon"
	}
	var haveSchema, haveRuns, haveLake bool
	if err := s.pool.QueryRow(ctx, `SELECT now(), to_regclass('ehrsync.position_history') IS NOT NULL, to_regclass('ehrsync.table_runs') IS NOT NULL,
			to_regclass('ehrsync.lake_tables') IS NOT NULL`).
		Scan(&rep.At, &haveSchema, &haveRuns, &haveLake); err != nil {
		return nil, fmt.Errorf("read the store's clock: %w", err)
	}
	if !haveSchema {
		return nil, ErrNoSchema
	}
	rep.At = rep.At.UTC()
	if !haveRuns {
		rep.Notes = append(rep.Notes, "the store's ehrsync schema has no run records (ehrsync.table_runs): "+
			"run `ehrsync migrate --config FILE` (or start ehrsync sync or run once) to bring it to this version")
	}
	if !haveLake && config.LakeUsed(opts.Orgs) {
		rep.Notes = append(rep.Notes, "the store's ehrsync schema has no lake records (ehrsync.lake_tables): "+
			"run `ehrsync migrate --config FILE` to bring it to this version; the lake's state is not shown")
	}
	holders, err := lease.Holders(ctx, s.pool)
	if err != nil {
		return nil, err
	}
	daemons := map[string]*daemon.OrgStatus{}
	for i := range opts.Daemon {
		daemons[opts.Daemon[i].Name] = &opts.Daemon[i]
	}
	for i := range opts.Orgs {
		o, err := s.org(ctx, rep, &opts.Orgs[i], opts, haveRuns, haveLake, holders, daemons[opts.Orgs[i].Name])
		if err != nil {
			return nil, err
		}
		rep.Orgs = append(rep.Orgs, o)
	}
	return rep, nil
}

// org gathers one organization's tables.
func (s *Store) org(ctx context.Context, rep *Report, org *config.Org, opts Options, haveRuns, haveLake bool,
	holders map[int64]lease.Holder, d *daemon.OrgStatus) (Org, error) {
	out := Org{Name: org.Name, Tables: []Table{}}
	names, configured, err := tableNames(org, opts)
	if err != nil {
		return out, err
	}
	sched, err := daemon.NewSchedule(org.Schedule)
	if err != nil {
		return out, fmt.Errorf("org %s: %w", org.Name, err)
	}
	staleAfter := opts.StaleAfter
	if staleAfter <= 0 {
		first := sched.Next(rep.At)
		staleAfter = DefaultStaleIntervals * sched.Next(first).Sub(first)
	}
	positions, corrupt, err := s.positionsOf(ctx, org.Name)
	if err != nil {
		return out, err
	}
	runs := map[string]runRow{}
	if haveRuns {
		if runs, err = s.runs(ctx, org.Name, names); err != nil {
			return out, err
		}
	}
	moves, err := s.moves(ctx, org.Name, names)
	if err != nil {
		return out, err
	}
	var lakes map[string]lakeRow
	if haveLake {
		if lakes, err = s.lakeRows(ctx, org.Name); err != nil {
			return out, err
		}
	}
	if d != nil {
		out.Daemon = &DaemonOrg{State: d.State, Paused: d.Paused, Queued: d.Queued, NextRun: d.NextRun, LastRun: d.LastRun}
	}
	for i, name := range names {
		t := Table{Name: name, Strategy: string(configured[i].Strategy), StaleAfterSeconds: staleAfter.Seconds()}
		if e, ok := positions[name]; ok {
			t.Position, t.PositionUpdatedAt = watermarks.Summarize(e.Position), e.UpdatedAt.UTC()
		}
		r, ran := runs[name]
		if ran {
			t.LastRun, t.LastSuccessAt, t.Failures, t.FailingSince = r.run, r.lastOK, r.failures, r.failingSince
			if r.strategy != "" {
				t.Strategy = r.strategy
			}
		}
		m := moves[name]
		t.LastChangeAt = m.lastChange
		t.State = state(positions[name].Position, corrupt[name], t.LastRun, t.Failures, m)
		t.SyncedAt = later(t.LastSuccessAt, m.lastCommit)
		if !t.SyncedAt.IsZero() {
			age := rep.At.Sub(t.SyncedAt)
			fresh := age.Seconds()
			t.FreshnessSeconds, t.Stale = &fresh, age > staleAfter
		}
		t.NextRun, t.Overdue = nextRun(sched, rep.At, t.LastRun, out.Daemon)
		if h, ok := holders[lease.Key(org.Name, name)]; ok {
			t.Lease = &Lease{Holder: h.Holder, PID: h.PID, ClientAddr: h.ClientAddr, Since: h.Since.UTC()}
		}
		if haveLake && config.LakeOn(*org, configured[i]) {
			if t.Lake, err = s.lake(ctx, rep.At, org, configured[i], opts.Catalog, lakes, staleAfter); err != nil {
				return out, err
			}
		}
		out.Tables = append(out.Tables, t)
	}
	return out, nil
}

// tableNames are the org's tables to report, by the names positions,
// leases and runs know them, with their configuration.
func tableNames(org *config.Org, opts Options) ([]string, []config.Table, error) {
	tables := org.Tables
	if len(opts.Tables) > 0 {
		tables = nil
		for _, n := range opts.Tables {
			tc, ok := org.Table(n)
			if !ok {
				return nil, nil, fmt.Errorf("%w: %s %q", daemon.ErrUnknownTable, org.Name, n)
			}
			tables = append(tables, *tc)
		}
	}
	names := make([]string, len(tables))
	for i, tc := range tables {
		q, err := daemon.CanonicalTable(opts.Catalog, org, tc.Name)
		if err != nil {
			return nil, nil, err
		}
		names[i] = q
	}
	return names, tables, nil
}

// positionsOf reads the org's saved positions by table, and the tables
// whose position does not decode.
func (s *Store) positionsOf(ctx context.Context, org string) (map[string]watermarks.Entry, map[string]bool, error) {
	entries, err := s.positions.List(ctx, org)
	corrupt := map[string]bool{}
	if err != nil {
		if entries == nil && !errors.Is(err, watermarks.ErrCorruptPosition) {
			return nil, nil, err
		}
		for _, e := range joined(err) {
			var ce *watermarks.CorruptError
			if errors.As(e, &ce) {
				corrupt[ce.Table] = true
			}
		}
	}
	out := make(map[string]watermarks.Entry, len(entries))
	for _, e := range entries {
		out[e.Table] = e
	}
	return out, corrupt, nil
}

// joined lists the errors errors.Join made err of (err itself otherwise).
func joined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// runRow is a table's row of ehrsync.table_runs.
type runRow struct {
	run          *Run
	strategy     string
	lastOK       time.Time
	failures     int
	failingSince time.Time
}

func (s *Store) runs(ctx context.Context, org string, tables []string) (map[string]runRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT table_name, run_id, actor, strategy, started_at, finished_at, outcome,
			coalesce(error_class, ''), rows, rows_inserted, rows_updated, rows_deleted, last_ok_at, failures, failing_since
		FROM ehrsync.table_runs WHERE org = $1 AND table_name = ANY($2)`, org, tables)
	if err != nil {
		return nil, fmt.Errorf("read ehrsync.table_runs: %w", err)
	}
	out := map[string]runRow{}
	var (
		table          string
		r              Run
		row            runRow
		lastOK, failAt *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&table, &r.RunID, &r.Actor, &row.strategy, &r.StartedAt, &r.FinishedAt, &r.Outcome,
		&r.ErrorClass, &r.Rows, &r.Inserted, &r.Updated, &r.Deleted, &lastOK, &row.failures, &failAt}, func() error {
		run := r
		run.StartedAt, run.FinishedAt = run.StartedAt.UTC(), run.FinishedAt.UTC()
		run.DurationSeconds = run.FinishedAt.Sub(run.StartedAt).Seconds()
		row.run, row.lastOK, row.failingSince = &run, utc(lastOK), utc(failAt)
		out[table] = row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read ehrsync.table_runs: %w", err)
	}
	return out, nil
}

// move is what the position history says of a table: the last commit of
// a chunk (a sync, snapshot or backfill chunk, not an operator's move),
// the last one that wrote rows, and whether the last move removed the
// position (a reset).
type move struct {
	lastCommit, lastChange time.Time
	reset                  bool
}

func (s *Store) moves(ctx context.Context, org string, tables []string) (map[string]move, error) {
	rows, err := s.pool.Query(ctx, `SELECT t.name,
			(SELECT h.at FROM ehrsync.position_history h WHERE h.org = $1 AND h.table_name = t.name
				AND h.reason IN ('sync', 'snapshot', 'backfill') ORDER BY h.id DESC LIMIT 1),
			(SELECT h.at FROM ehrsync.position_history h WHERE h.org = $1 AND h.table_name = t.name
				AND h.rows > 0 ORDER BY h.id DESC LIMIT 1),
			coalesce((SELECT h.to_position IS NULL FROM ehrsync.position_history h
				WHERE h.org = $1 AND h.table_name = t.name ORDER BY h.id DESC LIMIT 1), false)
		FROM unnest($2::text[]) AS t(name)`, org, tables)
	if err != nil {
		return nil, fmt.Errorf("read ehrsync.position_history: %w", err)
	}
	out := map[string]move{}
	var (
		table              string
		commitAt, changeAt *time.Time
		m                  move
	)
	_, err = pgx.ForEachRow(rows, []any{&table, &commitAt, &changeAt, &m.reset}, func() error {
		m.lastCommit, m.lastChange = utc(commitAt), utc(changeAt)
		out[table] = m
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read ehrsync.position_history: %w", err)
	}
	return out, nil
}

// state decides a table's state from its position (nil: none; corrupt:
// one that does not decode), its last attempt (nil: none recorded), its
// failed attempts in a row, and its position history.
func state(pos watermarks.Position, corrupt bool, last *Run, failures int, m move) State {
	switch {
	case failures > 0 && last != nil && last.ErrorClass == "position_expired":
		return StateExpired
	case failures > 0:
		return StateFailing
	case corrupt:
		return StateCorrupt
	}
	if pos != nil {
		// What a saved position says (a pass under way, or one between
		// passes) is the positions' own rule, as /admin/orgs reads it.
		if watermarks.StateOf(pos, nil) == watermarks.StateSnapshotting {
			return StateSnapshotting
		}
		return StateSynced
	}
	switch {
	case m.reset:
		return StateReset
	case last == nil || last.Outcome == OutcomeCanceled:
		return StateNeverRun
	}
	return StateSynced
}

// nextRun is the scheduled run after the table's last attempt (the
// daemon's next run when it answers), and whether a whole scheduled run
// was missed since (at is past the run after it).
func nextRun(sched cron.Schedule, at time.Time, last *Run, d *DaemonOrg) (time.Time, bool) {
	if d != nil {
		if d.Paused {
			return time.Time{}, false
		}
		return d.NextRun.UTC(), false
	}
	from := at
	if last != nil {
		from = last.StartedAt
	}
	next := sched.Next(from)
	return next.UTC(), !next.IsZero() && sched.Next(next).Before(at)
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func utc(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC()
}
