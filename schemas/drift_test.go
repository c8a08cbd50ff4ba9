package schemas_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func pgCols(t *testing.T, specs ...[2]string) []schemas.SourceColumn {
	t.Helper()
	var out []schemas.SourceColumn
	for _, s := range specs {
		c := schemas.SourceColumn{Name: s[0], TypeText: s[1], Nullable: true}
		if typ, err := schemas.ParseType(schemas.Postgres, s[1]); err == nil {
			c.Type = typ
		}
		out = append(out, c)
	}
	return out
}

func TestAdaptToSource(t *testing.T) {
	table := func(t *testing.T, specs ...[2]string) *schemas.Table {
		tb := &schemas.Table{Schema: "dbo", Name: "x", Dialect: schemas.Postgres, Key: []string{"id"}}
		for i, s := range specs {
			typ, err := schemas.ParseType(schemas.Postgres, s[1])
			require.NoError(t, err)
			tb.Columns = append(tb.Columns, schemas.Column{Name: s[0], Type: typ, Nullable: i > 0})
		}
		return tb
	}
	id, a := [2]string{"id", "bigint"}, [2]string{"a", "integer"}
	tests := []struct {
		name    string
		table   *schemas.Table
		source  []schemas.SourceColumn
		allow   []string
		want    []string // the adapted table's column types, name type
		changed []string
		added   []string
		ignored []string
		err     string
	}{
		{name: "unchanged", table: table(t, id, a), source: pgCols(t, id, a), want: []string{"id bigint", "a integer"}},
		{name: "widened", table: table(t, id, a), source: pgCols(t, id, [2]string{"a", "bigint"}),
			want: []string{"id bigint", "a bigint"}, changed: []string{"a: integer -> bigint"}},
		{name: "narrowed", table: table(t, id, [2]string{"a", "numeric(19,2)"}), source: pgCols(t, id, [2]string{"a", "numeric(10,2)"}),
			want: []string{"id bigint", "a numeric(10,2)"}, changed: []string{"a: numeric(19,2) -> numeric(10,2)"}},
		{name: "added, not allowed", table: table(t, id, a), source: pgCols(t, id, a, [2]string{"b", "text"}),
			want: []string{"id bigint", "a integer"}, ignored: []string{"b"}},
		{name: "added, allowed", table: table(t, id, a), source: pgCols(t, id, a, [2]string{"b", "text"}), allow: []string{"id", "B"},
			want: []string{"id bigint", "a integer", "b text"}, added: []string{"b"}},
		{name: "dropped", table: table(t, id, a), source: pgCols(t, id), err: "column a is in the catalog but no longer at the source: leave it out with the table's columns allow-list"},
		{name: "dropped, left out", table: table(t, id, a), source: pgCols(t, id), allow: []string{"id"}, want: []string{"id bigint", "a integer"}},
		{name: "key dropped", table: table(t, id, a), source: pgCols(t, a), allow: []string{"a"}, err: "column id is in the catalog but no longer at the source: it is a key"},
		{name: "type not carried", table: table(t, id, a), source: pgCols(t, id, [2]string{"a", "interval"}), err: "column a now has type interval at the source, which ehrsync cannot carry"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := schemas.AdaptToSource(tc.table, schemas.Postgres, tc.source, tc.allow)
			if tc.err != "" {
				require.ErrorIs(t, err, schemas.ErrSourceChanged)
				require.ErrorContains(t, err, "table dbo.x: ")
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			var cols []string
			for _, c := range got.Table.Columns {
				cols = append(cols, c.Name+" "+c.Type.String())
			}
			require.Equal(t, tc.want, cols)
			require.Equal(t, tc.changed, got.Changed)
			require.Equal(t, tc.added, got.Added)
			require.Equal(t, tc.ignored, got.Ignored)
		})
	}

	t.Run("across dialects only a real change counts", func(t *testing.T) {
		claims, ok := schemas.NextGen().Table("dbo.payer_mstr")
		require.True(t, ok)
		pg, err := claims.AsPostgres()
		require.NoError(t, err)
		var src []schemas.SourceColumn
		for _, c := range pg.Columns {
			text := c.Type.String()
			if c.Name == claims.RowVersion {
				text = "bigint" // the synthetic source's stand-in for rowversion
			}
			src = append(src, pgCols(t, [2]string{c.Name, text})...)
		}
		got, err := schemas.AdaptToSource(claims, schemas.Postgres, src, nil)
		require.NoError(t, err)
		require.Empty(t, got.Changed)
		src[1] = pgCols(t, [2]string{src[1].Name, "integer"})[0]
		_, err = schemas.AdaptToSource(claims, schemas.Postgres, src, nil)
		require.ErrorContains(t, err, "changed type at the source (the catalog says varchar(40), the source has integer): update the table's catalog file")
	})
}
