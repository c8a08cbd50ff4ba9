package check_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
	"github.com/ehrsync/ehrsync/schemas"
)

// What check finds is what sync would hit: these tests give check a
// source as sync would meet it and assert the report names the problem
// and its fix, without a secret or a row value.

// TestSecretNamed: a secret that does not resolve is named by its key
// and reference, not reported as a generic failure.
func TestSecretNamed(t *testing.T) {
	os.Unsetenv("EHRSYNC_TEST_STMARY_PASSWORD")
	o := org(t, config.SQLServer, config.ViaDirect, sourcetest.ClosedAddr(t))
	o.Source.Password = config.NewSecret("env:EHRSYNC_TEST_STMARY_PASSWORD")
	rep := check.Run(context.Background(), []config.Org{o}, opts(time.Second))
	text, _ := requireClean(t, rep)
	s := step(t, rep.Orgs[0], "secrets")
	require.Equal(t, check.StatusFailed, s.Status)
	require.Equal(t, source.ClassSecret.Code, s.Problem.Code)
	require.Equal(t, "(source.password: env:EHRSYNC_TEST_STMARY_PASSWORD is not set)", s.Detail)
	require.Contains(t, text, "env:EHRSYNC_TEST_STMARY_PASSWORD is not set")
}

// TestPostgresFixesNameItsPort: a PostgreSQL source's connection
// failures are fixed on its own port, with PostgreSQL's texts: nothing
// says 1433 or SQL Server.
func TestPostgresFixesNameItsPort(t *testing.T) {
	for _, addr := range []string{sourcetest.ClosedAddr(t), sourcetest.HangAddr(t)} {
		o := org(t, config.Postgres, config.ViaDirect, addr)
		rep := check.Run(context.Background(), []config.Org{o}, opts(time.Second))
		text, js := requireClean(t, rep, sentinel)
		require.False(t, rep.Healthy)
		for _, out := range []string{text, js} {
			require.NotContains(t, out, "1433")
			require.NotContains(t, out, "SQL Server")
		}
		_, port, _ := strings.Cut(addr, ":")
		require.Contains(t, text, port, "the fix names the source's port")
	}
}

// TestReconcileEveryIsNotBlind: a strategy that does not see deletes is
// reported blind to them, unless reconcile_every finds them.
func TestReconcileEveryIsNotBlind(t *testing.T) {
	o, _, _ := pgSource(t)
	o.Tables = []config.Table{{Name: "dbo.payer_mstr", Strategy: config.StrategySnapshot}}
	rep := check.Run(context.Background(), []config.Org{o}, opts(10*time.Second))
	text, _ := requireClean(t, rep, sentinel)
	require.Equal(t, "deletes (set reconcile_every to find them by comparing keys)", rep.Orgs[0].Tables[0].Blind)
	require.Contains(t, text, "cannot see deletes")

	o.Tables[0].ReconcileEvery = 6 * time.Hour
	rep = check.Run(context.Background(), []config.Org{o}, opts(10*time.Second))
	text, _ = requireClean(t, rep, sentinel)
	tb := rep.Orgs[0].Tables[0]
	require.Empty(t, tb.Blind)
	require.Contains(t, tb.Notes, "the strategy does not see deletes; reconcile_every (6h0m0s) finds them by comparing keys")
	require.NotContains(t, text, "cannot see")
}

// TestPostgresDrift: a column dropped at a PostgreSQL source fails its
// table in check with the fix, as it fails the table in a sync, with the
// same words.
func TestPostgresDrift(t *testing.T) {
	ctx := context.Background()
	o, pool, _ := pgSource(t)
	_, err := pool.Exec(ctx, "ALTER TABLE dbo.payer_mstr DROP COLUMN plan_name")
	require.NoError(t, err)
	o.Tables = []config.Table{{Name: "dbo.payer_mstr", Strategy: config.StrategyAuto, BatchRows: 500},
		{Name: "dbo.tran_code_mstr", Strategy: config.StrategyAuto, BatchRows: 500}}
	rep := check.Run(ctx, []config.Org{o}, opts(10*time.Second))
	text, _ := requireClean(t, rep, sentinel)
	require.False(t, rep.Healthy, text)
	tb := rep.Orgs[0].Tables[0]
	require.Equal(t, check.StatusFailed, tb.Status)
	require.Len(t, tb.Problems, 1)
	require.Equal(t, "schema_drift", tb.Problems[0].Code)
	const cause = "column plan_name is in the catalog but no longer at the source: leave it out with the table's columns allow-list, or remove it from the table's catalog file"
	require.Contains(t, tb.Problems[0].Cause, cause)
	require.Equal(t, check.StatusOK, rep.Orgs[0].Tables[1].Status, "the other table is fine")

	// A sync stops the same table for the same reason.
	res, _ := syncOrg(t, o, pgtest.URL(t))
	require.Equal(t, 1, res.Failed())
	require.Equal(t, "dbo.payer_mstr", res.Tables[0].Table)
	require.ErrorContains(t, res.Tables[0].Err, cause)

	// Left out with the allow-list, the table is read without it.
	for _, c := range must(schemas.NextGen().Table("dbo.payer_mstr")).Columns {
		if c.Name != "plan_name" {
			o.Tables[0].Columns = append(o.Tables[0].Columns, c.Name)
		}
	}
	rep = check.Run(ctx, []config.Org{o}, opts(10*time.Second))
	text, _ = requireClean(t, rep, sentinel)
	require.True(t, rep.Healthy, text)
}

func must[T any](v T, ok bool) T {
	if !ok {
		panic("not found")
	}
	return v
}

// TestWireDrift: on SQL Server too, a column gone from the source fails
// its table with the fix; a column whose type widened is read as it is
// now, and said so.
func TestWireDrift(t *testing.T) {
	f := newFixture(t, mssqlmodel.Options{SnapshotIsolation: true}, "dbo.payer_mstr", "dbo.tran_code_mstr")
	payer := must(schemas.NextGen().Table("dbo.payer_mstr"))
	now := *payer
	now.Columns = nil
	for _, c := range payer.Columns {
		switch c.Name {
		case "plan_name":
			continue // dropped at the source
		case "created_by":
			c.Type = schemas.Type{Name: "bigint"} // widened at the source
		}
		now.Columns = append(now.Columns, c)
	}
	require.NoError(t, f.m.CreateTable(&now))
	tran := must(schemas.NextGen().Table("dbo.tran_code_mstr"))
	now = *tran
	now.Columns = nil
	for _, c := range tran.Columns {
		if c.Type.Name == "int" && !tran.IsKey(c.Name) {
			c.Type = schemas.Type{Name: "bigint"}
		}
		now.Columns = append(now.Columns, c)
	}
	require.NoError(t, f.m.CreateTable(&now))

	o, text := f.run(t)
	require.False(t, o.Healthy, text)
	tb := table(t, o, "dbo.payer_mstr")
	require.Equal(t, check.StatusFailed, tb.Status)
	require.Equal(t, "schema_drift", tb.Problems[0].Code)
	require.Contains(t, tb.Problems[0].Cause, "column plan_name is in the catalog but no longer at the source")
	require.Contains(t, text, "schema_drift")

	tb = table(t, o, "dbo.tran_code_mstr")
	require.Equal(t, check.StatusOK, tb.Status, text)
	require.NotEmpty(t, tb.Notes)
	require.Contains(t, strings.Join(tb.Notes, "\n"), ": int -> bigint: sync reads it as it is now")
}

// TestWireLoginFailed: a login SQL Server refuses shows the server's
// error number and message (the login's name), never the password.
func TestWireLoginFailed(t *testing.T) {
	const wrong = "Wr0ng-S3ntinel-Pw"
	f := newFixture(t, mssqlmodel.Options{}, "dbo.claims")
	f.org.Source.Password = config.NewSecret(wrong)
	rep := check.Run(context.Background(), []config.Org{f.org}, check.Options{StepTimeout: 10 * time.Second, Catalog: schemas.NextGen()})
	text, _ := requireClean(t, rep, wrong, mssqltest.Password)
	s := step(t, rep.Orgs[0], "login")
	require.Equal(t, check.StatusFailed, s.Status, text)
	require.Equal(t, source.ClassLoginFailed.Code, s.Problem.Code)
	require.True(t, strings.HasPrefix(s.Detail, "(SQL Server error 18456: "), s.Detail)
	require.Contains(t, s.Detail, "Login failed for user '"+mssqltest.User+"'.")
	require.Contains(t, s.Problem.Fix, "18456", "SQL Server's fix for a SQL Server source")
}
