package check_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/pkg/verify"
	"github.com/ehrsync/ehrsync/schemas"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const sentinel = "Ch3ck-S3ntinel-41d2"

func opts(step time.Duration) check.Options {
	return check.Options{StepTimeout: step, Catalog: schemas.NextGen(), Planner: planner.New()}
}

func org(t *testing.T, dialect config.Dialect, via config.Via, addr string) config.Org {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return config.Org{Name: "st-mary", Source: config.Source{Dialect: dialect, Via: via, Host: host, Port: p,
		Database: "ehr", User: "ehrsync", Password: config.NewSecret(sentinel), TLS: config.TLS{Mode: config.TLSRequire},
		ConnectTimeout: 30 * time.Second, QueryTimeout: time.Minute},
		Tables: []config.Table{{Name: "dbo.claims", Strategy: config.StrategyAuto}}}
}

func step(t *testing.T, o check.OrgReport, name string) check.Step {
	t.Helper()
	for _, s := range o.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %q in %+v", name, o.Steps)
	return check.Step{}
}

// requireClean asserts the report, as text and JSON, has no secret in it.
func requireClean(t *testing.T, rep check.Report, secrets ...string) (text, js string) {
	t.Helper()
	var tb, jb bytes.Buffer
	require.NoError(t, rep.WriteText(&tb))
	require.NoError(t, rep.WriteJSON(&jb))
	for _, s := range secrets {
		require.NotContains(t, tb.String(), s)
		require.NotContains(t, jb.String(), s)
	}
	var back check.Report
	require.NoError(t, json.Unmarshal(jb.Bytes(), &back))
	require.Equal(t, check.SchemaVersion, back.SchemaVersion)
	return tb.String(), jb.String()
}

func TestUnreachable(t *testing.T) {
	tests := []struct {
		name    string
		dialect config.Dialect
		via     config.Via
		addr    string
		step    string
		want    *source.Class
		probe   string
	}{
		{"sqlserver relay refuses", config.SQLServer, config.ViaRelay, sourcetest.ClosedAddr(t), "tcp relay", source.ClassRelayUnreachable, ""},
		{"postgres relay refuses", config.Postgres, config.ViaRelay, sourcetest.ClosedAddr(t), "tcp relay", source.ClassRelayUnreachable, ""},
		{"relay probe down", config.SQLServer, config.ViaRelay, sourcetest.ClosedAddr(t), "relay probe", source.ClassRelayUnreachable, "tcp://" + sourcetest.ClosedAddr(t)},
		{"sqlserver behind relay", config.SQLServer, config.ViaRelay, sourcetest.CloseAddr(t), "login", source.ClassRelayUpstream, "tcp://" + sourcetest.HangAddr(t)},
		{"sqlserver relay hangs", config.SQLServer, config.ViaRelay, sourcetest.HangAddr(t), "login", source.ClassConnectTimeout, ""},
		{"postgres direct hangs", config.Postgres, config.ViaDirect, sourcetest.HangAddr(t), "login", source.ClassConnectTimeout, ""},
		{"direct refuses", config.SQLServer, config.ViaDirect, sourcetest.ClosedAddr(t), "tcp server", source.ClassServerUnreachable, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := org(t, tt.dialect, tt.via, tt.addr)
			if tt.probe != "" {
				o.Source.Relay = &config.Relay{Probe: tt.probe}
			}
			rep := check.Run(context.Background(), []config.Org{o}, opts(time.Second))
			require.False(t, rep.Healthy)
			require.False(t, rep.Orgs[0].Healthy)
			s := step(t, rep.Orgs[0], tt.step)
			require.Equal(t, check.StatusFailed, s.Status)
			require.Equal(t, tt.want.Code, s.Problem.Code)
			require.Equal(t, tt.want.For(o.Source).Fix, s.Problem.Fix)
			text, _ := requireClean(t, rep, sentinel)
			require.Contains(t, text, tt.want.Code)
		})
	}
}

func TestTLSFailureStep(t *testing.T) {
	ca := sourcetest.NewCA(t)
	cert := ca.Issue(t, "other.example", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	for _, d := range []config.Dialect{config.Postgres, config.SQLServer} {
		t.Run(string(d), func(t *testing.T) {
			addr := sourcetest.TLSAddr(t, cert, true)
			if d == config.SQLServer {
				addr = sourcetest.TDSTLSAddr(t, cert) // TLS inside TDS, as SQL Server before 2022
			}
			o := org(t, d, config.ViaRelay, addr)
			o.Source.TLS.CAFile, o.Source.TLS.ServerName = ca.File(t), "sql.customer.example"
			rep := check.Run(context.Background(), []config.Org{o}, opts(2*time.Second))
			require.False(t, rep.Healthy)
			s := step(t, rep.Orgs[0], "tls")
			require.Equal(t, check.StatusFailed, s.Status)
			require.Equal(t, source.ClassTLSWrongHost.Code, s.Problem.Code)
			require.Equal(t, source.ClassTLSWrongHost.Fix, s.Problem.Fix)
			require.Equal(t, check.StatusSkipped, step(t, rep.Orgs[0], "login").Status)
			requireClean(t, rep, sentinel)
		})
	}
}

// pgSource creates the synthetic NextGen schema in a fresh database and
// returns an org reading it directly.
func pgSource(t *testing.T) (config.Org, *pgxpool.Pool, string) {
	t.Helper()
	ctx := context.Background()
	u := pgtest.URL(t)
	pool, err := pgxpool.New(ctx, u)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, synth.CreatePostgres(ctx, pool, schemas.NextGen()))
	pu, err := url.Parse(u)
	require.NoError(t, err)
	port, err := strconv.Atoi(pu.Port())
	require.NoError(t, err)
	o := config.Org{Name: "st_mary", Source: config.Source{Dialect: config.Postgres, Via: config.ViaDirect,
		Host: pu.Hostname(), Port: port, Database: pu.Path[1:], User: pu.User.Username(),
		Password: config.NewSecret(sentinel), // trust authentication: sent, never needed, never printed
		TLS:      config.TLS{Mode: config.TLSDisable}, ConnectTimeout: 10 * time.Second, QueryTimeout: time.Minute}}
	for _, tb := range schemas.NextGen().Tables() {
		o.Tables = append(o.Tables, config.Table{Name: tb.QualifiedName(), Strategy: config.StrategyAuto, BatchRows: 500})
	}
	return o, pool, u
}

func TestPostgresHealthy(t *testing.T) {
	o, _, _ := pgSource(t)
	rep := check.Run(context.Background(), []config.Org{o}, opts(10*time.Second))
	text, _ := requireClean(t, rep, sentinel)
	t.Log("\n" + text)
	require.True(t, rep.Healthy, text)
	for _, name := range []string{"secrets", "dns", "tcp server", "tls", "login", "query", "version", "database"} {
		if name == "dns" {
			continue // the host is an IP address: no DNS step
		}
		s := step(t, rep.Orgs[0], name)
		require.NotEqual(t, check.StatusFailed, s.Status, name)
	}
	require.Equal(t, check.StatusWarning, step(t, rep.Orgs[0], "tls").Status, "tls.mode disable is warned about")
	require.Len(t, rep.Orgs[0].Tables, len(o.Tables))
	for _, tb := range rep.Orgs[0].Tables {
		require.True(t, tb.Exists, tb.Name)
		require.NotEmpty(t, tb.Key, tb.Name)
		require.NotEmpty(t, tb.Strategy, tb.Name)
		require.NotEmpty(t, tb.Why, tb.Name)
		require.Len(t, tb.Permissions, 1)
		require.NotNil(t, tb.Permissions[0].Granted)
		require.True(t, *tb.Permissions[0].Granted)
	}
	require.Contains(t, text, "HEALTHY")
}

func TestPostgresPermissionMissing(t *testing.T) {
	o, pool, _ := pgSource(t)
	ctx := context.Background()
	role := fmt.Sprintf("limited_%d", time.Now().UnixNano())
	_, err := pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN; GRANT USAGE ON SCHEMA dbo TO %[1]s; GRANT SELECT ON dbo.payer_mstr TO %[1]s`, role))
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), fmt.Sprintf("REVOKE ALL ON ALL TABLES IN SCHEMA dbo FROM %[1]s; REVOKE ALL ON SCHEMA dbo FROM %[1]s; DROP ROLE %[1]s", role))
	})
	o.Source.User = role
	o.Tables = []config.Table{{Name: "dbo.payer_mstr", Strategy: config.StrategyAuto}, {Name: "dbo.claims", Strategy: config.StrategyAuto}}
	rep := check.Run(ctx, []config.Org{o}, opts(10*time.Second))
	text, _ := requireClean(t, rep, sentinel)
	t.Log("\n" + text)
	require.False(t, rep.Healthy, text)
	ok, denied := rep.Orgs[0].Tables[0], rep.Orgs[0].Tables[1]
	require.Equal(t, check.StatusOK, ok.Status, text)
	require.Equal(t, check.StatusFailed, denied.Status)
	require.Len(t, denied.Problems, 1)
	require.Equal(t, source.ClassPermission.Code, denied.Problems[0].Code)
	want := fmt.Sprintf(`GRANT SELECT ON "dbo"."claims" TO "%s";`, role)
	require.Equal(t, want, denied.Problems[0].Grant)
	require.Contains(t, text, want)
}

// TestSSHTunnelSyncAndCheck syncs a synthetic PostgreSQL source through an
// in-process SSH server end to end, and checks it healthy through the
// tunnel.
func TestSSHTunnelSyncAndCheck(t *testing.T) {
	if testing.Short() {
		t.Skip("long (syncs and checks through an SSH tunnel): runs without -short")
	}
	o, srcPool, _ := pgSource(t)
	ctx := context.Background()
	w := synth.NewPostgresWriter(srcPool, "dbo")
	_, err := synth.Populate(ctx, w, synth.Options{Preset: synth.Small, Seed: 11, Catalog: schemas.NextGen()}, 2)
	require.NoError(t, err)

	const sshPW = "ssh-" + sentinel
	srv := sourcetest.StartSSH(t, "tunnel", sshPW)
	o.Source.Via = config.ViaSSH
	o.Source.SSH = &config.SSH{Host: srv.Host(), Port: srv.Port(), User: "tunnel",
		Password: config.NewSecret(sshPW), HostKeyFingerprint: srv.Fingerprint()}

	rep := check.Run(ctx, []config.Org{o}, opts(10*time.Second))
	text, _ := requireClean(t, rep, sentinel, sshPW)
	require.True(t, rep.Healthy, text)
	require.Equal(t, check.StatusOK, step(t, rep.Orgs[0], "ssh").Status)
	require.Equal(t, check.StatusOK, step(t, rep.Orgs[0], "tunnel").Status)

	storeURL := pgtest.URL(t)
	res, logs := syncOrg(t, o, storeURL)
	require.NoError(t, res.Err)
	require.Zero(t, res.Failed(), logs)
	require.NotContains(t, logs, sentinel)
	require.NotContains(t, logs, sshPW)

	store, err := pgxpool.New(ctx, storeURL)
	require.NoError(t, err)
	defer store.Close()
	var rows int64
	for _, tb := range schemas.NextGen().Tables() {
		d, err := verify.Table(ctx, srcPool, store, "dbo", sink.SchemaFor(o.Name), tb)
		require.NoError(t, err)
		require.True(t, d.Equal(), d.String())
		rows += d.SourceRows
	}
	require.Positive(t, rows)
	require.GreaterOrEqual(t, srv.Logins(), 2, "check and sync each went through the tunnel")
}

func TestPostgresLoginAndDatabaseFailures(t *testing.T) {
	o, pool, _ := pgSource(t)
	ctx := context.Background()
	role := fmt.Sprintf("nologin_%d", time.Now().UnixNano())
	_, err := pool.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), "DROP ROLE "+role) })

	t.Run("login failed", func(t *testing.T) {
		o := o
		o.Source.User = role // SQLSTATE 28000: not permitted to log in
		rep := check.Run(ctx, []config.Org{o}, opts(5*time.Second))
		requireClean(t, rep, sentinel)
		require.False(t, rep.Healthy)
		s := step(t, rep.Orgs[0], "login")
		require.Equal(t, source.ClassLoginFailed.Code, s.Problem.Code)
		require.Equal(t, source.ClassLoginFailed.For(o.Source).Fix, s.Problem.Fix)
		require.Contains(t, s.Problem.Fix, "pg_hba.conf", "a PostgreSQL fix for a PostgreSQL source")
		require.Equal(t, `(SQLSTATE 28000: role "`+role+`" is not permitted to log in)`, s.Detail, "the server's cause")
	})
	t.Run("database missing", func(t *testing.T) {
		o := o
		o.Source.Database = "no_such_database_" + role // SQLSTATE 3D000
		rep := check.Run(ctx, []config.Org{o}, opts(5*time.Second))
		requireClean(t, rep, sentinel)
		require.False(t, rep.Healthy)
		s := step(t, rep.Orgs[0], "login")
		require.Equal(t, source.ClassDatabase.Code, s.Problem.Code)
		require.Equal(t, `(SQLSTATE 3D000: database "`+o.Source.Database+`" does not exist)`, s.Detail)
	})
	t.Run("table missing", func(t *testing.T) {
		o := o
		o.Tables = []config.Table{{Name: "dbo.no_such_table", Strategy: config.StrategySnapshot}}
		rep := check.Run(ctx, []config.Org{o}, opts(5*time.Second))
		require.False(t, rep.Healthy)
		tb := rep.Orgs[0].Tables[0]
		require.False(t, tb.Exists)
		require.Equal(t, "table_missing", tb.Problems[0].Code)
	})
}

// syncOrg syncs o into the store at storeURL as `ehrsync sync` does
// (service.Open, then Engine.SyncOrg), and returns the result and the
// logs.
func syncOrg(t *testing.T, o config.Org, storeURL string) (engine.OrgResult, string) {
	t.Helper()
	cfg := &config.Config{Store: config.Store{URL: config.NewSecret(storeURL)}, Orgs: []config.Org{o}}
	cfg.ApplyDefaults()
	var logs bytes.Buffer
	svc, err := service.Open(context.Background(), cfg, slog.New(slog.NewTextHandler(&logs, nil)), "test", 1)
	require.NoError(t, err)
	defer svc.Close()
	return svc.Engine.SyncOrg(context.Background(), &cfg.Orgs[0], nil), logs.String()
}
