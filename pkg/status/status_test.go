package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/status"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const org = "st-mary"

// keySentinel is in the key of a row of app.visits: the table's hwm
// position holds it (the cursor's tie-break key), and no report may.
const keySentinel = "K3ySentinel-0042"

// fixture is a PostgreSQL source with two tables, app.visits (text key,
// a modified-at column: hwm) and app.codes (strategy snapshot), a store,
// and the service over a configuration that syncs them.
type fixture struct {
	cfg      *config.Config
	src      *pgxpool.Pool
	svc      *service.Service
	status   *status.Store
	sourceDB string // the source's database URL
}

// newFixture writes the configuration with the source at host:port
// (those of the source database when port is "").
func newFixture(t *testing.T, port string) *fixture {
	t.Helper()
	return newFixtureLake(t, port, "")
}

// newFixtureLake is newFixture with the organization's tables going to
// the change lake at warehouse, when it is not "".
func newFixtureLake(t *testing.T, port, warehouse string) *fixture {
	t.Helper()
	ctx := context.Background()
	f := &fixture{sourceDB: pgtest.URL(t)}
	var err error
	f.src, err = pgxpool.New(ctx, f.sourceDB)
	require.NoError(t, err)
	t.Cleanup(f.src.Close)
	_, err = f.src.Exec(ctx, `CREATE SCHEMA app;
		CREATE TABLE app.visits (id text PRIMARY KEY, note text, updated_at timestamp NOT NULL);
		CREATE TABLE app.codes (code int PRIMARY KEY, label text);
		INSERT INTO app.codes SELECT g, 'code ' || g FROM generate_series(1, 5) g`)
	require.NoError(t, err)
	_, err = f.src.Exec(ctx, `INSERT INTO app.visits VALUES ('a-1', 'first', '2026-01-01 08:00'), ($1, 'second', '2026-01-02 09:00')`,
		keySentinel)
	require.NoError(t, err)

	dir := t.TempDir()
	for name, body := range map[string]string{
		"visits.yaml": "schema: app\nname: visits\ndialect: postgres\nkey: [id]\nmodified_at: updated_at\ncolumns:\n" +
			"  - {name: id, type: text, nullable: false}\n  - {name: note, type: text, nullable: true}\n  - {name: updated_at, type: timestamp, nullable: false}\n",
		"codes.yaml": "schema: app\nname: codes\ndialect: postgres\nkey: [code]\ncolumns:\n" +
			"  - {name: code, type: integer, nullable: false}\n  - {name: label, type: text, nullable: true}\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600))
	}
	u, err := url.Parse(f.sourceDB)
	require.NoError(t, err)
	if port == "" {
		port = u.Port()
	}
	cfg := fmt.Sprintf(`store:
  url: %q
catalog: [visits.yaml, codes.yaml]
orgs:
  - name: %s
    schedule: {every: 10m}
    source: {dialect: postgres, via: direct, host: %s, port: %s, database: %s, user: %s, tls: {mode: disable}}
    tables:
      - {name: app.visits, strategy: auto}
      - {name: app.codes, strategy: snapshot}
`, pgtest.URL(t), org, u.Hostname(), port, strings.TrimPrefix(u.Path, "/"), u.User.Username())
	if warehouse != "" {
		cfg = strings.Replace(cfg, "    schedule:", "    lake: true\n    schedule:", 1) + fmt.Sprintf("lake: {warehouse: %q}\n", warehouse)
	}
	path := filepath.Join(dir, "ehrsync.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	f.cfg, err = config.Load(path)
	require.NoError(t, err)
	f.svc, err = service.Open(ctx, f.cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), "tester", 1)
	require.NoError(t, err)
	t.Cleanup(f.svc.Close)
	f.status = f.svc.Status
	return f
}

func (f *fixture) sync(t *testing.T) {
	t.Helper()
	f.svc.Engine.SyncOrg(context.Background(), &f.cfg.Orgs[0], nil)
}

func (f *fixture) gather(t *testing.T, opts status.Options) *status.Report {
	t.Helper()
	if opts.Orgs == nil {
		opts.Orgs = f.cfg.Orgs
	}
	opts.Catalog = f.svc.Engine.Catalog()
	rep, err := f.status.Gather(context.Background(), opts)
	require.NoError(t, err)
	return rep
}

// table finds a table in a one-org report.
func table(t *testing.T, rep *status.Report, name string) status.Table {
	t.Helper()
	require.Len(t, rep.Orgs, 1)
	for _, tb := range rep.Orgs[0].Tables {
		if tb.Name == name {
			return tb
		}
	}
	t.Fatalf("table %s not in the report", name)
	return status.Table{}
}

// TestStateFollowsWhatHappened: through real syncs of a PostgreSQL source,
// each table's state, last run, rows, freshness and position follow what
// happened to it: never run, synced (a snapshot-only table too, between
// passes), reset by an operator, failing (and since when, across
// attempts), and synced again.
func TestStateFollowsWhatHappened(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "")

	rep := f.gather(t, status.Options{})
	for _, name := range []string{"app.visits", "app.codes"} {
		tb := table(t, rep, name)
		require.Equal(t, status.StateNeverRun, tb.State, name)
		require.Nil(t, tb.LastRun)
		require.Nil(t, tb.FreshnessSeconds)
		require.False(t, tb.Stale)
		require.False(t, tb.NextRun.IsZero())
		require.Equal(t, (30 * time.Minute).Seconds(), tb.StaleAfterSeconds, "three intervals of a 10m schedule")
	}
	require.Equal(t, "auto", table(t, rep, "app.visits").Strategy, "configured, before any run")
	require.Empty(t, rep.Attention())

	f.sync(t)
	rep = f.gather(t, status.Options{})
	visits, codes := table(t, rep, "app.visits"), table(t, rep, "app.codes")
	require.Equal(t, status.StateSynced, visits.State)
	require.Equal(t, "hwm", visits.Strategy, "the strategy the planner chose")
	require.NotNil(t, visits.LastRun)
	require.Equal(t, status.OutcomeOK, visits.LastRun.Outcome)
	require.GreaterOrEqual(t, visits.LastRun.Rows, int64(2), "change rows read (a catch-up may read one again)")
	require.Equal(t, int64(2), visits.LastRun.Inserted)
	require.Equal(t, "tester", visits.LastRun.Actor)
	require.Equal(t, watermarks.KindCursor, visits.Position.Kind)
	require.False(t, visits.LastChangeAt.IsZero())
	require.False(t, visits.LastSuccessAt.IsZero())
	require.NotNil(t, visits.FreshnessSeconds)
	require.Equal(t, status.StateSynced, codes.State, "a snapshot-only table between passes is synced, not snapshotting")
	require.Equal(t, int64(5), codes.LastRun.Rows)
	require.Equal(t, codes.LastRun.StartedAt.Add(10*time.Minute).Truncate(10*time.Minute), codes.NextRun,
		"the schedule's run after the last one")
	require.Empty(t, rep.Attention())

	// A threshold every table is past: all stale.
	stale := f.gather(t, status.Options{StaleAfter: time.Nanosecond})
	require.True(t, table(t, stale, "app.visits").Stale)
	require.Len(t, stale.Attention(), 2)

	// An operator's reset.
	require.NoError(t, f.svc.Positions.Reset(ctx, org, "app.visits", nil, "alice", "test"))
	require.Equal(t, status.StateReset, table(t, f.gather(t, status.Options{}), "app.visits").State)

	// The source table goes away: app.codes fails, twice.
	_, err := f.src.Exec(ctx, "ALTER TABLE app.codes RENAME TO codes_gone")
	require.NoError(t, err)
	f.sync(t)
	first := table(t, f.gather(t, status.Options{}), "app.codes")
	require.Equal(t, status.StateFailing, first.State)
	require.Equal(t, status.OutcomeFailed, first.LastRun.Outcome)
	require.NotEmpty(t, first.LastRun.ErrorClass)
	require.Equal(t, 1, first.Failures)
	require.Equal(t, first.LastRun.StartedAt, first.FailingSince)
	require.Equal(t, codes.LastSuccessAt, first.LastSuccessAt, "the last success stays")
	f.sync(t)
	rep = f.gather(t, status.Options{})
	second := table(t, rep, "app.codes")
	require.Equal(t, 2, second.Failures)
	require.Equal(t, first.FailingSince, second.FailingSince, "failing since the first failure")
	problems := rep.Attention()
	require.Len(t, problems, 1)
	require.Equal(t, "failing", problems[0].What)
	require.Equal(t, status.StateSynced, table(t, rep, "app.visits").State, "the reset table re-synced")

	_, err = f.src.Exec(ctx, "ALTER TABLE app.codes_gone RENAME TO codes")
	require.NoError(t, err)
	f.sync(t)
	again := table(t, f.gather(t, status.Options{}), "app.codes")
	require.Equal(t, status.StateSynced, again.State)
	require.Zero(t, again.Failures)
	require.True(t, again.FailingSince.IsZero())
}

// TestUnreachableSourceFailsEveryTable: a run that cannot reach its source
// is a failed attempt of each of its tables, with the source's class.
func TestUnreachableSourceFailsEveryTable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := fmt.Sprint(ln.Addr().(*net.TCPAddr).Port)
	require.NoError(t, ln.Close()) // nothing listens there now
	f := newFixture(t, port)
	f.sync(t)
	rep := f.gather(t, status.Options{})
	for _, name := range []string{"app.visits", "app.codes"} {
		tb := table(t, rep, name)
		require.Equal(t, status.StateFailing, tb.State, name)
		require.Equal(t, "server_unreachable", tb.LastRun.ErrorClass, name)
	}
	require.Len(t, rep.Attention(), 2)
	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.Contains(t, text.String(), "failed: server_unreachable")
	require.Contains(t, text.String(), "fix: check that the server is running", "the class's fix")
}

// TestLeaseHolderIsShown: a table whose lease a process holds shows who.
func TestLeaseHolderIsShown(t *testing.T) {
	f := newFixture(t, "")
	unlock, ok, err := f.svc.Leases.TryLock(context.Background(), org, "app.codes")
	require.NoError(t, err)
	require.True(t, ok)
	rep := f.gather(t, status.Options{})
	host, err := os.Hostname()
	require.NoError(t, err)
	l := table(t, rep, "app.codes").Lease
	require.NotNil(t, l)
	require.Equal(t, fmt.Sprintf("%d@%s", os.Getpid(), host), l.Holder)
	require.Nil(t, table(t, rep, "app.visits").Lease)
	unlock()
	require.Nil(t, table(t, f.gather(t, status.Options{}), "app.codes").Lease)
}

// TestReportsHoldNoKeyValues: a position holding a key value (the hwm
// cursor's tie-break key, and a snapshot pass's last key) is reported by
// its summary; neither the text nor the JSON holds the value.
func TestReportsHoldNoKeyValues(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "")
	f.sync(t)
	// A snapshot pass under way, after the sentinel key.
	mid := watermarks.Snapshot{LastKey: watermarks.Key{watermarks.String("text", keySentinel)}}
	require.NoError(t, f.svc.Positions.Reset(ctx, org, "app.codes", mid, "alice", "test"))

	var stored string
	require.NoError(t, f.svc.Store.QueryRow(ctx, "SELECT string_agg(position::text, ' ') FROM ehrsync.positions").Scan(&stored))
	require.Contains(t, stored, keySentinel, "the test needs positions that hold the key value")

	rep := f.gather(t, status.Options{})
	require.Equal(t, status.StateSnapshotting, table(t, rep, "app.codes").State)
	var text, js bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.NoError(t, rep.WriteJSON(&js))
	require.NotContains(t, text.String(), keySentinel)
	require.NotContains(t, js.String(), keySentinel)
	require.Contains(t, text.String(), "snapshotting")

	// The JSON reads back as the report (the CLI reads a daemon's so).
	var back status.Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	require.Equal(t, rep.Orgs[0].Tables[0].Position.Text, back.Orgs[0].Tables[0].Position.Text)
}

// TestDaemonFacts: a daemon's report carries its next run and state, and a
// paused schedule has no next run.
func TestDaemonFacts(t *testing.T) {
	f := newFixture(t, "")
	next := time.Date(2030, 1, 2, 3, 4, 0, 0, time.UTC)
	rep := f.gather(t, status.Options{Daemon: []daemon.OrgStatus{{Name: org, State: "running", NextRun: next}}})
	require.Equal(t, "daemon", rep.From)
	require.Equal(t, "running", rep.Orgs[0].Daemon.State)
	require.Equal(t, next, table(t, rep, "app.visits").NextRun)
	rep = f.gather(t, status.Options{Daemon: []daemon.OrgStatus{{Name: org, State: "paused", Paused: true, NextRun: next}}})
	require.True(t, table(t, rep, "app.visits").NextRun.IsZero())
	var text bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.Contains(t, text.String(), "paused")
}

// TestTablesFilter: only the tables asked for; an unknown one is refused.
func TestTablesFilter(t *testing.T) {
	f := newFixture(t, "")
	rep := f.gather(t, status.Options{Tables: []string{"app.codes"}})
	require.Len(t, rep.Orgs[0].Tables, 1)
	require.Equal(t, "app.codes", rep.Orgs[0].Tables[0].Name)
	_, err := f.status.Gather(context.Background(), status.Options{Orgs: f.cfg.Orgs, Tables: []string{"app.nope"}, Catalog: f.svc.Engine.Catalog()})
	require.ErrorIs(t, err, daemon.ErrUnknownTable)
}

// TestStoreWithoutSchema: a store nothing was synced into is named, with
// the fix.
func TestStoreWithoutSchema(t *testing.T) {
	pool := pgtest.Pool(t)
	_, err := status.New(pool).Gather(context.Background(), status.Options{})
	require.ErrorIs(t, err, status.ErrNoSchema)
}

// TestAttemptsInARow: the run record keeps the last attempt, the last
// success, and the failing streak: a canceled attempt neither counts in it
// nor ends it; a success ends it.
func TestAttemptsInARow(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(ctx, pool))
	st := status.New(pool)
	cfg := []config.Org{{Name: org, Schedule: config.Schedule{Every: time.Hour}, Tables: []config.Table{{Name: "dbo.claims"}}}}
	attempt := func(err error) status.Table {
		t.Helper()
		require.NoError(t, st.TableAttempt(ctx, "daemon", time.Second, engine.TableResult{Org: org, Table: "dbo.claims", RunID: "r",
			Strategy: "cdc", Err: err}))
		rep, err := st.Gather(ctx, status.Options{Orgs: cfg})
		require.NoError(t, err)
		return rep.Orgs[0].Tables[0]
	}
	ok := attempt(nil)
	require.Equal(t, status.OutcomeOK, ok.LastRun.Outcome)
	require.False(t, ok.LastSuccessAt.IsZero())
	require.InDelta(t, 1, ok.LastRun.DurationSeconds, 0.001)

	boom := errors.New("boom")
	first := attempt(boom)
	require.Equal(t, 1, first.Failures)
	require.Equal(t, ok.LastSuccessAt, first.LastSuccessAt)
	canceled := attempt(fmt.Errorf("run: %w", context.Canceled))
	require.Equal(t, status.OutcomeCanceled, canceled.LastRun.Outcome)
	require.Equal(t, "canceled", canceled.LastRun.ErrorClass)
	require.Equal(t, 1, canceled.Failures)
	require.Equal(t, first.FailingSince, canceled.FailingSince)
	require.Equal(t, status.StateFailing, canceled.State)
	second := attempt(boom)
	require.Equal(t, 2, second.Failures)
	require.Equal(t, first.FailingSince, second.FailingSince)
	again := attempt(nil)
	require.Zero(t, again.Failures)
	require.True(t, again.FailingSince.IsZero())
	require.True(t, again.LastSuccessAt.After(ok.LastSuccessAt))
	require.Equal(t, status.StateSynced, again.State)
}
