package source_test

import (
	"context"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/source"
)

// TestQueryErrorClasses produces query-time classes on a real PostgreSQL
// source: a killed session (transient), a query over its deadline and a
// statement_timeout (query timeouts), a missing grant (permission).
func TestQueryErrorClasses(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	src := config.Source{Dialect: config.Postgres, Via: config.ViaDirect, Host: u.Hostname(), Port: port,
		Database: u.Path[1:], User: u.User.Username(), TLS: config.TLS{Mode: config.TLSDisable},
		ConnectTimeout: 5 * time.Second, QueryTimeout: 5 * time.Second}
	db, err := source.Open(ctx, src)
	require.NoError(t, err)
	defer db.Close()
	admin, err := pgxpool.New(ctx, u.String())
	require.NoError(t, err)
	defer admin.Close()

	t.Run("session killed", func(t *testing.T) {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		var pid int
		require.NoError(t, conn.QueryRowContext(ctx, "SELECT pg_backend_pid()").Scan(&pid))
		_, err = admin.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
		require.NoError(t, err)
		var one int
		err = conn.QueryRowContext(ctx, "SELECT 1").Scan(&one)
		require.Error(t, err)
		require.True(t, source.IsTransient(err), "%v: %s", err, source.Classify(err).Code)
	})
	t.Run("deadline", func(t *testing.T) {
		// A connection ready in the pool: the query's deadline must end the
		// query, not a connect on a busy machine (which is connect_timeout).
		require.NoError(t, db.PingContext(ctx))
		qctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		_, err := db.ExecContext(qctx, "SELECT pg_sleep(10)")
		require.Equal(t, source.ClassQueryTimeout, source.Classify(err), "%v", err)
		require.True(t, source.IsTransient(err))
	})
	t.Run("statement_timeout", func(t *testing.T) {
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		_, err = conn.ExecContext(ctx, "SET statement_timeout = 50")
		require.NoError(t, err)
		_, err = conn.ExecContext(ctx, "SELECT pg_sleep(10)")
		require.Equal(t, source.ClassQueryTimeout, source.Classify(err), "%v", err)
	})
	t.Run("permission", func(t *testing.T) {
		_, err := admin.Exec(ctx, "CREATE TABLE secret_rows (v text); REVOKE ALL ON secret_rows FROM PUBLIC")
		require.NoError(t, err)
		conn, err := db.Conn(ctx)
		require.NoError(t, err)
		defer conn.Close()
		role := "q_reader_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		_, err = admin.Exec(ctx, "CREATE ROLE "+role+" NOLOGIN")
		require.NoError(t, err)
		t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
		_, err = conn.ExecContext(ctx, "SET ROLE "+role)
		require.NoError(t, err)
		defer conn.ExecContext(ctx, "RESET ROLE") //nolint:errcheck // back to the pool as it was
		_, err = conn.ExecContext(ctx, "SELECT * FROM secret_rows")
		require.Equal(t, source.ClassPermission, source.Classify(err), "%v", err)
		require.False(t, source.IsTransient(err))
	})
	t.Run("read only", func(t *testing.T) {
		_, err := db.ExecContext(ctx, "CREATE TABLE nope (v int)")
		require.Error(t, err, "source sessions are read-only")
	})
}

func TestApplicationNameAndPoolLimit(t *testing.T) {
	ctx := context.Background()
	u, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	src := config.Source{Dialect: config.Postgres, Via: config.ViaDirect, Host: u.Hostname(), Port: port,
		Database: u.Path[1:], User: u.User.Username(), TLS: config.TLS{Mode: config.TLSDisable},
		ConnectTimeout: 5 * time.Second, QueryTimeout: 5 * time.Second,
		ApplicationName: "ehrsync-st-mary", MaxConnections: 2}
	db, err := source.Open(ctx, src)
	require.NoError(t, err)
	defer db.Close()
	var name string
	require.NoError(t, db.QueryRowContext(ctx, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()").Scan(&name))
	require.Equal(t, "ehrsync-st-mary", name)
	require.Equal(t, 2, db.Stats().MaxOpenConnections)
}
