package source_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib" // the pgx driver
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
)

// TestEstimateRowsPostgres reads a PostgreSQL table's row count from its
// statistics: the live rows counted as they were written before the table
// is first analyzed, the planner's count once it is, whatever its name's
// characters; nothing for a table that is not there.
func TestEstimateRowsPostgres(t *testing.T) {
	ctx := context.Background()
	db, err := sql.Open("pgx", pgtest.URL(t))
	require.NoError(t, err)
	defer db.Close()
	// The writer's statistics reach the shared counters when its session
	// goes idle after the statement (forced: at once).
	_, err = db.ExecContext(ctx, `CREATE SCHEMA "we;ird"; CREATE TABLE "we;ird"."o""dd" (id int PRIMARY KEY);
		INSERT INTO "we;ird"."o""dd" SELECT generate_series(1, 1234); SELECT pg_stat_force_next_flush()`)
	require.NoError(t, err)
	n, err := source.EstimateRows(ctx, db, config.Postgres, "we;ird", `o"dd`)
	require.NoError(t, err)
	require.Equal(t, int64(1234), n, "before ANALYZE")

	_, err = db.ExecContext(ctx, `DELETE FROM "we;ird"."o""dd" WHERE id > 1000; ANALYZE "we;ird"."o""dd"`)
	require.NoError(t, err)
	n, err = source.EstimateRows(ctx, db, config.Postgres, "we;ird", `o"dd`)
	require.NoError(t, err)
	require.Equal(t, int64(1000), n, "after ANALYZE")

	n, err = source.EstimateRows(ctx, db, config.Postgres, "we;ird", "missing")
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestEstimateRowsSQLServer reads a SQL Server table's row count from
// sys.partitions through go-mssqldb and the TDS server: the table's rows;
// nothing for a table that is missing or that the login cannot see.
func TestEstimateRowsSQLServer(t *testing.T) {
	ctx := context.Background()
	m := mssqlmodel.New(mssqlmodel.Options{})
	tb, ok := schemas.NextGen().Table("dbo.claims")
	require.True(t, ok)
	require.NoError(t, m.CreateTable(tb))
	tx := m.Begin()
	for n := 1; n <= 7; n++ {
		require.NoError(t, tx.Insert("dbo.claims", mssqltest.Row(tb, n, "est")))
	}
	require.NoError(t, tx.Commit())
	srv := mssqltest.Serve(t, m)
	db := srv.Open(t)

	n, err := source.EstimateRows(ctx, db, config.SQLServer, "dbo", "claims")
	require.NoError(t, err)
	require.Equal(t, int64(7), n)

	n, err = source.EstimateRows(ctx, db, config.SQLServer, "dbo", "missing")
	require.NoError(t, err)
	require.Zero(t, n)

	m.AddLogin(mssqltest.User) // no permission on any table
	n, err = source.EstimateRows(ctx, srv.Open(t), config.SQLServer, "dbo", "claims")
	require.NoError(t, err)
	require.Zero(t, n, "a table the login cannot see has no estimate")
}
