package verify_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/verify"
	"github.com/ehrsync/ehrsync/schemas"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// links is a table with a composite key whose last part is an integer, so
// that numeric and text key orders differ (9 < 10, "9" > "10").
func links(t *testing.T) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: "dbo", Name: "links", Dialect: schemas.SQLServer, Key: []string{"trans_id", "seq_nbr"}}
	for _, c := range []struct{ name, typ string }{{"trans_id", "uniqueidentifier"}, {"seq_nbr", "int"}, {"group_code", "varchar(2)"}} {
		ty, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: c.name, Type: ty, Nullable: c.name == "group_code"})
	}
	return tb
}

func setup(t *testing.T, pool *pgxpool.Pool, schema string, store bool, rows string) {
	t.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+schema+`;
		CREATE TABLE `+schema+`.links (trans_id uuid, seq_nbr int, group_code text, _ehrsync_deleted boolean NOT NULL DEFAULT false, PRIMARY KEY (trans_id, seq_nbr))`)
	require.NoError(t, err)
	cols := "trans_id, seq_nbr, group_code"
	if store {
		cols += ", _ehrsync_deleted"
	}
	if rows != "" {
		_, err = pool.Exec(ctx, `INSERT INTO `+schema+`.links (`+cols+`) VALUES `+rows)
		require.NoError(t, err)
	}
}

func TestTableFindsEveryDifference(t *testing.T) {
	const a, b = "'00000000-0000-0000-0000-00000000000a'", "'00000000-0000-0000-0000-00000000000b'"
	cases := []struct {
		name   string
		source string
		store  string
		want   verify.Diff
		equal  bool
	}{
		{"equal", "(" + a + ", 9, 'CO'), (" + a + ", 10, 'PR')", "(" + a + ", 9, 'CO', false), (" + a + ", 10, 'PR', false)",
			verify.Diff{SourceRows: 2, StoreRows: 2}, true},
		{"missing", "(" + a + ", 9, 'CO'), (" + a + ", 10, 'PR')", "(" + a + ", 10, 'PR', false)",
			verify.Diff{SourceRows: 2, StoreRows: 1, Missing: 1}, false},
		{"extra", "(" + a + ", 10, 'PR')", "(" + a + ", 9, 'CO', false), (" + a + ", 10, 'PR', false), (" + b + ", 1, NULL, false)",
			verify.Diff{SourceRows: 1, StoreRows: 3, Extra: 2}, false},
		{"changed", "(" + a + ", 9, 'CO'), (" + b + ", 1, NULL)", "(" + a + ", 9, 'OA', false), (" + b + ", 1, '', false)",
			verify.Diff{SourceRows: 2, StoreRows: 2, Changed: 2}, false},
		{"soft-deleted rows are absent", "(" + a + ", 9, 'CO')", "(" + a + ", 9, 'CO', false), (" + b + ", 1, NULL, true)",
			verify.Diff{SourceRows: 1, StoreRows: 1}, true},
		{"both empty", "", "", verify.Diff{}, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src, store := pgtest.Pool(t), pgtest.Pool(t)
			setup(t, src, "dbo", false, c.source)
			setup(t, store, "org", true, c.store)
			got, err := verify.Table(context.Background(), src, store, "dbo", "org", links(t))
			require.NoError(t, err)
			c.want.Table = "dbo.links"
			require.Equal(t, c.want, got)
			require.Equal(t, c.equal, got.Equal())
		})
	}
}

// visits is a table with a practice column.
func visits(t *testing.T) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: "app", Name: "visits", Dialect: schemas.Postgres, Key: []string{"id"}, Practice: "practice_id"}
	for _, c := range []struct{ name, typ string }{{"id", "integer"}, {"practice_id", "character(4)"}, {"note", "text"}} {
		ty, err := schemas.ParseType(schemas.Postgres, c.typ)
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: c.name, Type: ty, Nullable: c.name == "note"})
	}
	return tb
}

// TestComparePractices: with an organization's practices, the source rows
// of other practices are not missing from the store; progress hears of
// every row compared.
func TestComparePractices(t *testing.T) {
	ctx := context.Background()
	src, store := pgtest.Pool(t), pgtest.Pool(t)
	_, err := src.Exec(ctx, `CREATE SCHEMA app; CREATE TABLE app.visits (id int PRIMARY KEY, practice_id char(4), note text);
		INSERT INTO app.visits VALUES (1, '0001', 'a'), (2, '0002', 'b'), (3, '0001', 'c')`)
	require.NoError(t, err)
	_, err = store.Exec(ctx, `CREATE SCHEMA org; CREATE TABLE org.app__visits (id int PRIMARY KEY, practice_id char(4), note text,
			_ehrsync_deleted boolean NOT NULL DEFAULT false);
		INSERT INTO org.app__visits (id, practice_id, note) VALUES (1, '0001', 'a'), (3, '0001', 'c')`)
	require.NoError(t, err)

	var progress []int64
	d, err := verify.Compare(ctx, src, store, "app", "org", visits(t), verify.Options{Practices: []string{"0001"},
		Progress: func(rows int64) { progress = append(progress, rows) }})
	require.NoError(t, err)
	require.True(t, d.Equal(), "%s", d)
	require.Equal(t, int64(2), d.SourceRows)
	require.Equal(t, []int64{2}, progress)

	d, err = verify.Compare(ctx, src, store, "app", "org", visits(t), verify.Options{})
	require.NoError(t, err)
	require.Equal(t, int64(1), d.Missing, "another practice's row, without the filter")
}

// TestOrgComparesPostgresSourcesOnly: a SQL Server organization is refused
// with ErrNotPostgres, before any query.
func TestOrgComparesPostgresSourcesOnly(t *testing.T) {
	org := &config.Org{Name: "st-mary", Source: config.Source{Dialect: config.SQLServer}, Tables: []config.Table{{Name: "dbo.claims"}}}
	_, err := verify.Org(context.Background(), nil, nil, org, schemas.NextGen(), nil, nil)
	require.ErrorIs(t, err, verify.ErrNotPostgres)
}
