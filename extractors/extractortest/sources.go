package extractortest

import (
	"context"
	"database/sql"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

// EnvMSSQLDSN names the variable that points the live suite at a SQL Server
// test database (a go-mssqldb URL whose login may create and drop tables).
const EnvMSSQLDSN = "EHRSYNC_TEST_MSSQL_DSN"

// Postgres is a PostgreSQL source: a fresh database per test from pgtest
// (the test package's TestMain must call pgtest.Main), opened through pgx
// stdlib as the engine opens PostgreSQL sources.
func Postgres() Source {
	return Source{
		Dialect: schemas.Postgres,
		Open: func(t *testing.T) *sql.DB {
			t.Helper()
			db, err := sql.Open("pgx", pgtest.URL(t))
			require.NoError(t, err)
			t.Cleanup(func() { db.Close() })
			return db
		},
	}
}

// SQLServer is the SQL Server source at dsn, shared by the tests (their
// tables have unique names). It reports BlockingReads when the database
// does not have READ_COMMITTED_SNAPSHOT on.
func SQLServer(t *testing.T, dsn string) Source {
	t.Helper()
	connector, err := mssql.NewConnector(dsn)
	require.NoError(t, err)
	db := sql.OpenDB(connector)
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var rcsi bool
	require.NoError(t, db.QueryRowContext(ctx,
		"SELECT is_read_committed_snapshot_on FROM sys.databases WHERE database_id = DB_ID()").Scan(&rcsi))
	return Source{
		Dialect:       schemas.SQLServer,
		Open:          func(*testing.T) *sql.DB { return db },
		BlockingReads: !rcsi,
	}
}
