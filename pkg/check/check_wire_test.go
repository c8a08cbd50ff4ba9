package check_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
)

// check over the wire: check.Run walks the path to a SQL Server model
// (package mssqlmodel) served over TDS on loopback, through ehrsync's own
// source connection and go-mssqldb, with the real planner, and its report
// (the text `ehrsync check` prints, and its --json) is asserted. The login
// is mssqltest.User with only the roles and grants each case gives it.

// rowSentinel is in every text column of every row written: no report may
// show it.
const rowSentinel = "RowS3ntinel"

// fixture is a served model and the org checking it.
type fixture struct {
	m   *mssqlmodel.Model
	srv *mssqltest.Server
	org config.Org
}

func newFixture(t *testing.T, opts mssqlmodel.Options, tables ...string) *fixture {
	t.Helper()
	m := mssqlmodel.New(opts)
	f := &fixture{m: m, srv: mssqltest.Serve(t, m)}
	f.org = config.Org{Name: "st-mary", Source: f.srv.Source}
	for _, name := range tables {
		f.org.Tables = append(f.org.Tables, config.Table{Name: name, Strategy: config.StrategyAuto})
	}
	return f
}

// create creates catalog tables with two rows each.
func (f *fixture) create(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		tb, ok := schemas.NextGen().Table(name)
		require.True(t, ok, name)
		require.NoError(t, f.m.CreateTable(tb))
	}
	tx := f.m.Begin()
	for _, name := range names {
		tb, _ := schemas.NextGen().Table(name)
		for n := 1; n <= 2; n++ {
			require.NoError(t, tx.Insert(name, mssqltest.Row(tb, n, rowSentinel)))
		}
	}
	require.NoError(t, tx.Commit())
}

func (f *fixture) capture(t *testing.T, ci mssqlmodel.CaptureInstance) {
	t.Helper()
	f.m.EnableCDCDatabase()
	_, err := f.m.EnableCDC(ci)
	require.NoError(t, err)
}

func (f *fixture) track(t *testing.T, table string) {
	t.Helper()
	f.m.EnableCTDatabase()
	require.NoError(t, f.m.EnableCT(table))
}

func (f *fixture) grant(t *testing.T, permission, securable string) {
	t.Helper()
	require.NoError(t, f.m.Grant(mssqltest.User, permission, securable))
}

// write commits one more row of table, so the capture agent has work.
func (f *fixture) write(t *testing.T, table string, n int) {
	t.Helper()
	tb, ok := schemas.NextGen().Table(table)
	require.True(t, ok)
	tx := f.m.Begin()
	require.NoError(t, tx.Insert(table, mssqltest.Row(tb, n, rowSentinel)))
	require.NoError(t, tx.Commit())
}

// run checks the org, and returns the report with its text and JSON,
// asserting that neither shows the password or a row value and that the
// JSON reads back as the same report.
func (f *fixture) run(t *testing.T) (check.OrgReport, string) {
	t.Helper()
	rep := check.Run(context.Background(), []config.Org{f.org}, check.Options{
		StepTimeout: 10 * time.Second, Catalog: schemas.NextGen(), Planner: planner.New()})
	text, js := requireClean(t, rep, mssqltest.Password, rowSentinel)
	t.Log("\n" + text)
	var back check.Report
	require.NoError(t, json.Unmarshal([]byte(js), &back))
	for i := range rep.Orgs[0].Steps { // durations are not compared
		back.Orgs[0].Steps[i].DurationMS = rep.Orgs[0].Steps[i].DurationMS
	}
	require.Equal(t, rep, back, "the JSON is the report")
	require.Len(t, rep.Orgs, 1)
	return rep.Orgs[0], text
}

func table(t *testing.T, o check.OrgReport, name string) check.TableReport {
	t.Helper()
	for _, tb := range o.Tables {
		if tb.Name == name {
			return tb
		}
	}
	t.Fatalf("no table %s in %+v", name, o.Tables)
	return check.TableReport{}
}

func perm(t *testing.T, tb check.TableReport, name string) check.Permission {
	t.Helper()
	for _, p := range tb.Permissions {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no permission %q in %+v", name, tb.Permissions)
	return check.Permission{}
}

func granted(p check.Permission) string {
	if p.Granted == nil {
		return "unknown"
	}
	return fmt.Sprint(*p.Granted)
}

// TestWireHealthy: a healthy SQL Server org over the wire, as a
// least-privilege login sees it: every step of the path, the version from
// SERVERPROPERTY, and per table its existence, key, CDC and Change
// Tracking status, grants and plan, and the capture agent.
func TestWireHealthy(t *testing.T) {
	tables := []string{"dbo.claims", "dbo.charges", "dbo.patient_encounter", "dbo.reason_code_links"}
	// A server six hours behind UTC: a log scan 10 s ago has an end_time
	// (local, zone-less) six hours behind UTC now, which only an age
	// computed on the server reads right (D6).
	f := newFixture(t, mssqlmodel.Options{AutoHarvest: true, SnapshotIsolation: true, ServerZone: zone(t, "America/Chicago")}, tables...)
	f.create(t, tables...)
	f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims"})
	f.track(t, "dbo.charges")
	f.m.AddLogin(mssqltest.User, "db_datareader")
	f.grant(t, "VIEW CHANGE TRACKING", "dbo.charges")
	f.grant(t, "VIEW DATABASE STATE", "DATABASE")
	f.write(t, "dbo.claims", 3)
	f.m.Advance(10 * time.Second)

	o, text := f.run(t)
	require.True(t, o.Healthy, text)
	require.Equal(t, "sqlserver", o.Dialect)
	require.Equal(t, "direct", o.Via)
	for _, s := range []struct{ name, detail string }{
		{"secrets", "resolved"},
		{"tcp server", "accepts connections"},
		{"tls", "encrypted, certificate verified"},
		{"login", "as " + mssqltest.User},
		{"query", "SELECT 1"},
		{"version", "SQL Server 16.0.4135.4, Developer Edition (64-bit)"},
		{"database", "NGProd"},
		{"capture agent", "last log scan session ended 10s ago"},
	} {
		st := step(t, o, s.name)
		require.Equal(t, check.StatusOK, st.Status, s.name)
		require.Contains(t, st.Detail, s.detail, s.name)
		require.Nil(t, st.Problem, s.name)
	}
	cases := []struct {
		table, cdc, ct, strategy, why string
		perms                         map[string]string // name -> granted
	}{
		{"dbo.claims", "enabled", "disabled", "cdc", "tracked by Change Data Capture",
			map[string]string{"SELECT": "true", "SELECT ON SCHEMA cdc": "true"}},
		{"dbo.charges", "disabled", "enabled", "change_tracking", "Change Tracking is enabled and VIEW CHANGE TRACKING is granted",
			map[string]string{"SELECT": "true", "VIEW CHANGE TRACKING": "true"}},
		{"dbo.patient_encounter", "disabled", "disabled", "hwm", "row-version column row_timestamp",
			map[string]string{"SELECT": "true"}},
		{"dbo.reason_code_links", "disabled", "disabled", "snapshot", "full keyset snapshot",
			map[string]string{"SELECT": "true"}},
	}
	for _, c := range cases {
		tb := table(t, o, c.table)
		cat, _ := schemas.NextGen().Table(c.table)
		require.Equal(t, check.StatusOK, tb.Status, c.table)
		require.True(t, tb.Exists, c.table)
		require.Equal(t, cat.Key, tb.Key, c.table)
		require.Equal(t, c.cdc, tb.CDC, c.table)
		require.Equal(t, c.ct, tb.CT, c.table)
		require.Equal(t, c.strategy, tb.Strategy, c.table)
		require.Contains(t, tb.Why, c.why, c.table)
		require.Empty(t, tb.Problems, c.table)
		got := map[string]string{}
		for _, p := range tb.Permissions {
			got[p.Name] = granted(p)
			require.True(t, p.Granted == nil || !*p.Granted || p.Grant == "", "a granted permission shows no GRANT")
		}
		require.Equal(t, c.perms, got, c.table)
		require.Contains(t, text, c.table)
	}
	require.Contains(t, text, "org st-mary (sqlserver via direct): HEALTHY")
	require.Contains(t, text, "SELECT=yes SELECT ON SCHEMA cdc=yes")
}

// TestWireProblems: each problem check finds over the wire, named with the
// statement that fixes it; the org is unhealthy where the problem stops a
// table or the capture agent.
func TestWireProblems(t *testing.T) {
	cases := []struct {
		name    string
		tables  []config.Table
		setup   func(t *testing.T, f *fixture)
		healthy bool
		verify  func(t *testing.T, o check.OrgReport, text string)
		zone    string // the server's time zone; "" UTC
	}{
		{name: "a missing table",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}, {Name: "dbo.transactions", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.m.AddLogin(mssqltest.User, "db_datareader")
			},
			verify: func(t *testing.T, o check.OrgReport, text string) {
				require.Equal(t, check.StatusOK, table(t, o, "dbo.claims").Status)
				tb := table(t, o, "dbo.transactions")
				require.Equal(t, check.StatusFailed, tb.Status)
				require.False(t, tb.Exists)
				require.Len(t, tb.Problems, 1)
				require.Equal(t, "table_missing", tb.Problems[0].Code)
				require.Equal(t, "GRANT SELECT ON [dbo].[transactions] TO [ehrsync_reader];", tb.Problems[0].Grant)
				require.Contains(t, text, "dbo.transactions: [table_missing]")
			}},
		{name: "VIEW CHANGE TRACKING missing for change_tracking",
			tables: []config.Table{{Name: "dbo.charges", Strategy: config.StrategyChangeTracking}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.charges")
				f.track(t, "dbo.charges")
				f.m.AddLogin(mssqltest.User, "db_datareader")
			},
			verify: func(t *testing.T, o check.OrgReport, text string) {
				tb := table(t, o, "dbo.charges")
				require.Equal(t, check.StatusFailed, tb.Status)
				require.Equal(t, "enabled", tb.CT)
				p := perm(t, tb, "VIEW CHANGE TRACKING")
				require.True(t, p.Needed)
				require.Equal(t, "false", granted(p))
				want := "GRANT VIEW CHANGE TRACKING ON [dbo].[charges] TO [ehrsync_reader];"
				require.Equal(t, want, p.Grant)
				require.Contains(t, grants(tb), want)
				require.Contains(t, text, "grant: "+want)
			}},
		{name: "VIEW CHANGE TRACKING missing under auto",
			tables: []config.Table{{Name: "dbo.charges", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.charges")
				f.track(t, "dbo.charges")
				f.m.AddLogin(mssqltest.User, "db_datareader")
			},
			healthy: true,
			verify: func(t *testing.T, o check.OrgReport, text string) {
				// The high-water mark works; the grant that would let
				// Change Tracking see deletes is named.
				tb := table(t, o, "dbo.charges")
				require.Equal(t, "hwm", tb.Strategy)
				require.Contains(t, tb.Why, "Change Tracking not readable")
				p := perm(t, tb, "VIEW CHANGE TRACKING")
				require.False(t, p.Needed)
				require.Equal(t, "false", granted(p))
				want := "GRANT VIEW CHANGE TRACKING ON [dbo].[charges] TO [ehrsync_reader];"
				require.Equal(t, want, p.Grant)
				require.Contains(t, text, want)
			}},
		// docs/sqlserver-review.md row 34: strategy cdc on a database
		// without CDC says so, with sp_cdc_enable_db.
		{name: "cdc explicit on a database without cdc",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyCDC}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.m.AddLogin(mssqltest.User, "db_datareader")
			},
			verify: func(t *testing.T, o check.OrgReport, text string) {
				tb := table(t, o, "dbo.claims")
				require.Equal(t, check.StatusFailed, tb.Status)
				require.Equal(t, "disabled", tb.CDC)
				require.Contains(t, grants(tb), "EXEC sys.sp_cdc_enable_db")
				require.Contains(t, text, "CDC is not enabled on the database")
				require.Contains(t, text, "EXEC sys.sp_cdc_enable_db")
				require.NotContains(t, text, "GRANT SELECT ON SCHEMA::cdc first", "the review's misleading text")
				require.NotContains(t, text, "could not be checked", "CDC's absence was checked")
			}},
		// D8: a CDC database with per-table grants, where cdc.change_tables
		// answers 229: auto falls back, and check says why.
		{name: "cdc.change_tables denied under auto",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims"})
				f.m.AddLogin(mssqltest.User)
				f.grant(t, "SELECT", "dbo.claims")
				f.grant(t, "VIEW DATABASE STATE", "DATABASE")
			},
			healthy: true,
			verify: func(t *testing.T, o check.OrgReport, text string) {
				tb := table(t, o, "dbo.claims")
				require.Equal(t, "enabled", tb.CDC)
				require.Equal(t, "hwm", tb.Strategy)
				require.Contains(t, tb.Why, "CDC not readable (the login may not read the CDC metadata (cdc.change_tables): GRANT SELECT ON SCHEMA::cdc")
				p := perm(t, tb, "SELECT ON SCHEMA cdc")
				require.False(t, p.Needed)
				require.Equal(t, "false", granted(p))
				require.Contains(t, text, "dbo.claims: high-water mark on the row-version column row_timestamp (CDC not readable")
				require.Contains(t, text, "GRANT SELECT ON SCHEMA::cdc TO [ehrsync_reader];")
			}},
		// D9: CDC's first run snapshots the table, and without SELECT on it
		// sys.fn_cdc_get_min_lsn answers no LSN.
		{name: "SELECT missing for a cdc table",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims"})
				f.m.AddLogin(mssqltest.User)
				f.grant(t, "SELECT", "SCHEMA::cdc")
				f.grant(t, "VIEW DEFINITION", "dbo.claims")
				f.grant(t, "VIEW DATABASE STATE", "DATABASE")
			},
			verify: func(t *testing.T, o check.OrgReport, text string) {
				tb := table(t, o, "dbo.claims")
				require.Equal(t, "cdc", tb.Strategy)
				require.Equal(t, check.StatusFailed, tb.Status)
				p := perm(t, tb, "SELECT")
				require.True(t, p.Needed, "CDC needs SELECT on the table")
				require.Equal(t, "false", granted(p))
				want := "GRANT SELECT ON [dbo].[claims] TO [ehrsync_reader];"
				require.Equal(t, want, p.Grant)
				require.Contains(t, grants(tb), want)
				require.Contains(t, text, "grant: "+want)
			}},
		{name: "outside the gating role with cdc explicit",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyCDC}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims", Role: "cdc_gate"})
				f.m.AddLogin(mssqltest.User, "db_datareader")
				f.grant(t, "VIEW DATABASE STATE", "DATABASE")
			},
			verify: func(t *testing.T, o check.OrgReport, text string) {
				tb := table(t, o, "dbo.claims")
				require.Equal(t, check.StatusFailed, tb.Status)
				p := perm(t, tb, "member of CDC gating role cdc_gate")
				require.True(t, p.Needed)
				require.Equal(t, "false", granted(p))
				require.Equal(t, "ALTER ROLE [cdc_gate] ADD MEMBER [ehrsync_reader];", p.Grant)
				require.Contains(t, text, "grant: ALTER ROLE [cdc_gate] ADD MEMBER [ehrsync_reader];")
			}},
		// A server 5.5 hours ahead of UTC: a scan 2 h ago has an end_time
		// ahead of UTC now, which an age against UTC would read as just
		// now (D6).
		{name: "capture agent stopped", zone: "Asia/Kolkata",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims"})
				f.m.AddLogin(mssqltest.User, "db_datareader")
				f.grant(t, "VIEW DATABASE STATE", "DATABASE")
				f.write(t, "dbo.claims", 3)
				f.m.Advance(2 * time.Hour)
			},
			verify: func(t *testing.T, o check.OrgReport, text string) {
				require.Equal(t, check.StatusOK, table(t, o, "dbo.claims").Status)
				s := step(t, o, "capture agent")
				require.Equal(t, check.StatusFailed, s.Status)
				require.Equal(t, source.ClassCaptureAgent.Code, s.Problem.Code)
				require.Contains(t, s.Detail, "last log scan session ended 2h0m0s ago")
				require.Contains(t, text, "sys.sp_cdc_start_job")
			}},
		{name: "capture agent unknown without sessions",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.m.SetAutoHarvest(false)
				f.create(t, "dbo.claims")
				f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims"})
				f.m.AddLogin(mssqltest.User, "db_datareader")
				f.grant(t, "VIEW DATABASE STATE", "DATABASE")
			},
			healthy: true,
			verify: func(t *testing.T, o check.OrgReport, text string) {
				s := step(t, o, "capture agent")
				require.Equal(t, check.StatusWarning, s.Status, "no session is unknown, not stopped")
				require.Nil(t, s.Problem)
				require.Contains(t, s.Detail, "unknown: no finished log scan on record")
			}},
		{name: "capture agent not visible without VIEW DATABASE STATE",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims"})
				f.m.AddLogin(mssqltest.User, "db_datareader")
			},
			healthy: true,
			verify: func(t *testing.T, o check.OrgReport, text string) {
				s := step(t, o, "capture agent")
				require.Equal(t, check.StatusWarning, s.Status)
				require.Contains(t, s.Detail, "GRANT VIEW DATABASE STATE TO [ehrsync_reader];")
			}},
		// D7: the plan's why names a capture instance without
		// __$command_id.
		{name: "capture instance without __$command_id",
			tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}},
			setup: func(t *testing.T, f *fixture) {
				f.create(t, "dbo.claims")
				f.capture(t, mssqlmodel.CaptureInstance{Table: "dbo.claims", Name: "claims_old", NoCommandID: true})
				f.m.AddLogin(mssqltest.User, "db_datareader")
				f.grant(t, "VIEW DATABASE STATE", "DATABASE")
			},
			healthy: true,
			verify: func(t *testing.T, o check.OrgReport, text string) {
				tb := table(t, o, "dbo.claims")
				require.Equal(t, "cdc", tb.Strategy)
				require.Contains(t, tb.Why, "capture instance claims_old has no __$command_id")
				require.Contains(t, text, "dbo.claims: the table is tracked by Change Data Capture")
				require.Contains(t, text, "has no __$command_id")
				require.Contains(t, text, "KB 3030352")
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := mssqlmodel.Options{AutoHarvest: true, SnapshotIsolation: true}
			if c.zone != "" {
				opts.ServerZone = zone(t, c.zone)
			}
			f := newFixture(t, opts)
			f.org.Tables = c.tables
			c.setup(t, f)
			o, text := f.run(t)
			require.Equal(t, c.healthy, o.Healthy, text)
			c.verify(t, o, text)
		})
	}
}

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

// grants lists every GRANT (or other fixing statement) a table report
// names, in its problems and its permissions.
func grants(tb check.TableReport) string {
	var out []string
	for _, p := range tb.Problems {
		out = append(out, p.Grant)
	}
	for _, p := range tb.Permissions {
		out = append(out, p.Grant)
	}
	return strings.Join(out, "\n")
}
