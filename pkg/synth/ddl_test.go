package synth

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test -update to create %s", path)
	require.Equal(t, string(want), got, "%s differs: run go test ./pkg/synth -run %s -update and review the diff", path, t.Name())
}

func TestSQLServerDDLGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts SQLServerOptions
		file string
	}{
		{"defaults", SQLServerOptions{}, "sqlserver.sql"},
		{"no capture", SQLServerOptions{CDCTables: []string{}, CTTables: []string{}, NoSnapshotIsolation: true}, "sqlserver_nocapture.sql"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ddl, err := SQLServerDDL(schemas.NextGen(), tc.opts)
			require.NoError(t, err)
			golden(t, tc.file, ddl)
		})
	}
}

func TestSQLServerDDLUnknownTable(t *testing.T) {
	_, err := SQLServerStatements(schemas.NextGen(), SQLServerOptions{CDCTables: []string{"nope"}})
	require.ErrorContains(t, err, "table nope is not in the catalog")
}

func TestPostgresDDLGolden(t *testing.T) {
	ddl, err := PostgresDDL(schemas.NextGen())
	require.NoError(t, err)
	golden(t, "postgres.sql", ddl)
}

func TestPostgresType(t *testing.T) {
	tbl := &schemas.Table{Schema: "dbo", Name: "x", Dialect: schemas.SQLServer, RowVersion: "row_timestamp"}
	for _, tc := range []struct {
		sqlType string
		col     string
		want    string
	}{
		{"uniqueidentifier", "a", "uuid"},
		{"numeric(19,2)", "a", "numeric(19,2)"},
		{"numeric(12,0)", "a", "numeric(12,0)"},
		{"money", "a", "numeric(19,4)"},
		{"datetime", "a", "timestamp(3) without time zone"},
		{"datetime2(7)", "a", "timestamp(6) without time zone"},
		{"datetime2(2)", "a", "timestamp(2) without time zone"},
		{"char(4)", "a", "character(4)"},
		{"varchar(8)", "a", "character varying(8)"},
		{"nvarchar(40)", "a", "character varying(40)"},
		{"nvarchar(max)", "a", "text"},
		{"text", "a", "text"},
		{"bit", "a", "boolean"},
		{"tinyint", "a", "smallint"},
		{"int", "a", "integer"},
		{"bigint", "a", "bigint"},
		{"varbinary(max)", "a", "bytea"},
		{"date", "a", "date"},
		{"timestamp", "row_timestamp", "bigint"},
	} {
		t.Run(tc.sqlType, func(t *testing.T) {
			typ, err := schemas.ParseType(schemas.SQLServer, tc.sqlType)
			require.NoError(t, err)
			got, err := PostgresType(tbl, schemas.Column{Name: tc.col, Type: typ})
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestCreatePostgres(t *testing.T) {
	ctx := context.Background()
	pool := source(t)
	// Idempotent.
	require.NoError(t, CreatePostgres(ctx, pool, schemas.NextGen()))

	for _, tc := range []struct {
		table, column, want string
		notNull             bool
	}{
		{"claims", "claim_id", "uuid", true},
		{"claims", "row_timestamp", "bigint", true},
		{"claims", "status", "character varying(10)", true},
		{"charges", "amt", "numeric(19,2)", true},
		{"charges", "practice_id", "character(4)", true},
		{"charges", "begin_date_of_service", "character varying(8)", false},
		{"transactions", "modify_timestamp", "timestamp(3) without time zone", true},
		{"reason_code_links", "seq_nbr", "smallint", true},
	} {
		t.Run(tc.table+"."+tc.column, func(t *testing.T) {
			var typ string
			var notNull bool
			err := pool.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod), a.attnotnull
				FROM pg_attribute a WHERE a.attrelid = ('dbo.' || $1)::regclass AND a.attname = $2`, tc.table, tc.column).Scan(&typ, &notNull)
			require.NoError(t, err)
			require.Equal(t, tc.want, typ)
			require.Equal(t, tc.notNull, notNull)
		})
	}

	t.Run("indexes", func(t *testing.T) {
		var defs []string
		rows, err := pool.Query(ctx, `SELECT indexdef FROM pg_indexes WHERE schemaname = 'dbo' AND tablename = 'trans_detail' ORDER BY indexname`)
		require.NoError(t, err)
		for rows.Next() {
			var d string
			require.NoError(t, rows.Scan(&d))
			defs = append(defs, d)
		}
		require.NoError(t, rows.Err())
		require.ElementsMatch(t, []string{
			"CREATE UNIQUE INDEX trans_detail_pkey ON dbo.trans_detail USING btree (trans_detail_id)",
			"CREATE INDEX trans_detail_modify_timestamp_idx ON dbo.trans_detail USING btree (modify_timestamp, trans_detail_id)",
			"CREATE INDEX trans_detail_row_timestamp_idx ON dbo.trans_detail USING btree (row_timestamp, trans_detail_id)",
		}, defs)
	})

	t.Run("row_timestamp is the writing transaction's id", func(t *testing.T) {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx)
		var xid, rt1, rt2 int64
		require.NoError(t, tx.QueryRow(ctx, `INSERT INTO dbo.tran_code_mstr (tran_code_id, type, source, description, sign_type, delete_ind, created_by, create_timestamp, modified_by, modify_timestamp)
			VALUES (gen_random_uuid(), 'C', 'I', 'test', -1, 'N', 1, now(), 1, now()) RETURNING row_timestamp`).Scan(&rt1))
		require.NoError(t, tx.QueryRow(ctx, `UPDATE dbo.tran_code_mstr SET description = 'again' RETURNING row_timestamp`).Scan(&rt2))
		require.NoError(t, tx.QueryRow(ctx, `SELECT pg_current_xact_id()::text::bigint`).Scan(&xid))
		require.Equal(t, xid, rt1)
		require.Equal(t, xid, rt2)
	})
}
