package schemas

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// testTable is a small SQL Server table with a two-column key.
func testTable() *Table {
	return &Table{
		Schema:  "dbo",
		Name:    "lines",
		Dialect: SQLServer,
		Columns: []Column{
			{Name: "line_id", Type: Type{Name: "uniqueidentifier"}},
			{Name: "line_no", Type: Type{Name: "smallint"}},
			{Name: "practice_id", Type: Type{Name: "char", Length: 4}},
			{Name: "amount", Type: Type{Name: "numeric", Precision: 19, Scale: 2}, Nullable: true},
			{Name: "note", Type: Type{Name: "nvarchar", Length: Max}, Nullable: true},
			{Name: "modify_timestamp", Type: Type{Name: "datetime"}},
			{Name: "row_timestamp", Type: Type{Name: "rowversion"}},
		},
		Key:        []string{"line_id", "line_no"},
		RowVersion: "row_timestamp",
		ModifiedAt: "modify_timestamp",
		Practice:   "practice_id",
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Table)
		want   []string // substrings; none means valid
	}{
		{name: "valid", change: func(*Table) {}},
		{name: "no schema", change: func(t *Table) { t.Schema = "" }, want: []string{"no schema"}},
		{name: "unknown dialect", change: func(t *Table) { t.Dialect = "oracle" }, want: []string{`unknown dialect "oracle"`}},
		{name: "no columns", change: func(t *Table) { t.Columns = nil; t.Key = nil; t.RowVersion, t.ModifiedAt, t.Practice = "", "", "" }, want: []string{"no columns", "no primary key"}},
		{name: "nullable key", change: func(t *Table) { t.Columns[1].Nullable = true }, want: []string{"key column line_no is nullable"}},
		{name: "missing key column", change: func(t *Table) { t.Key = []string{"line_id", "nope"} }, want: []string{"key column nope does not exist"}},
		{name: "key listed twice", change: func(t *Table) { t.Key = []string{"line_id", "LINE_ID"} }, want: []string{"key column LINE_ID listed twice"}},
		{name: "no key", change: func(t *Table) { t.Key = nil }, want: []string{"no primary key"}},
		{name: "lossy key", change: func(t *Table) { t.Columns[1].Type = Type{Name: "datetime2", Precision: 7} }, want: []string{"key column line_no has type datetime2(7), which does not map exactly"}},
		{name: "duplicate column", change: func(t *Table) { t.Columns[4].Name = "AMOUNT" }, want: []string{"duplicate column AMOUNT"}},
		{name: "reserved prefix", change: func(t *Table) { t.Columns[4].Name = "_ehrsync_op" }, want: []string{"column _ehrsync_op uses the reserved prefix _ehrsync_"}},
		{name: "unmappable type", change: func(t *Table) { t.Columns[4].Type = Type{Name: "cursor"} }, want: []string{`column note: sqlserver type "cursor": unknown type`}},
		{name: "bad provenance", change: func(t *Table) { t.Columns[4].Provenance = "Y" }, want: []string{`column note: provenance "Y" is not C, I or X`}},
		{name: "rowversion wrong type", change: func(t *Table) { t.RowVersion = "modify_timestamp" }, want: []string{"rowversion column modify_timestamp has type datetime, want rowversion"}},
		{name: "rowversion missing", change: func(t *Table) { t.RowVersion = "nope" }, want: []string{"rowversion column nope does not exist"}},
		{name: "modified-at wrong type", change: func(t *Table) { t.ModifiedAt = "note" }, want: []string{"modified-at column note has type nvarchar(max), want a date-time type"}},
		{name: "practice missing", change: func(t *Table) { t.Practice = "practice" }, want: []string{"practice column practice does not exist"}},
		{name: "all problems reported", change: func(t *Table) { t.Columns[0].Nullable = true; t.Practice = "nope" }, want: []string{"key column line_id is nullable", "practice column nope does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := testTable()
			tt.change(tbl)
			err := tbl.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.ErrorContains(t, err, "table "+tbl.QualifiedName())
			for _, w := range tt.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestColumn(t *testing.T) {
	tbl := testTable()
	c, ok := tbl.Column("AMOUNT")
	require.True(t, ok)
	require.Equal(t, "amount", c.Name)
	_, ok = tbl.Column("missing")
	require.False(t, ok)
	require.True(t, tbl.IsKey("Line_No"))
	require.False(t, tbl.IsKey("amount"))
	require.Equal(t, "dbo.lines", tbl.QualifiedName())
}

func TestProject(t *testing.T) {
	tests := []struct {
		name    string
		columns []string
		want    []string
		wantErr string
	}{
		{name: "keeps key, rowversion, modified-at and practice", columns: []string{"note"}, want: []string{"line_id", "line_no", "practice_id", "note", "modify_timestamp", "row_timestamp"}},
		{name: "source order and case-insensitive", columns: []string{"NOTE", "Amount", "note"}, want: []string{"line_id", "line_no", "practice_id", "amount", "note", "modify_timestamp", "row_timestamp"}},
		{name: "empty list keeps the required columns", columns: nil, want: []string{"line_id", "line_no", "practice_id", "modify_timestamp", "row_timestamp"}},
		{name: "unknown columns", columns: []string{"note", "ssn", "dob"}, wantErr: "project dbo.lines: unknown columns ssn, dob"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := testTable()
			p, err := tbl.Project(tt.columns)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var names []string
			for _, c := range p.Columns {
				names = append(names, c.Name)
			}
			require.Equal(t, tt.want, names)
			require.NoError(t, p.Validate())
			require.Len(t, tbl.Columns, 7, "the original is untouched")
		})
	}
}

func TestProjectWithoutSyncColumns(t *testing.T) {
	tbl := testTable()
	tbl.RowVersion, tbl.ModifiedAt, tbl.Practice = "", "", ""
	p, err := tbl.Project([]string{"amount"})
	require.NoError(t, err)
	var names []string
	for _, c := range p.Columns {
		names = append(names, c.Name)
	}
	require.Equal(t, []string{"line_id", "line_no", "amount"}, names)
}

func TestAsPostgres(t *testing.T) {
	for _, tbl := range NextGen().Tables() {
		t.Run(tbl.Name, func(t *testing.T) {
			pg, err := tbl.AsPostgres()
			require.NoError(t, err)
			require.Equal(t, Postgres, pg.Dialect)
			require.NoError(t, pg.Validate())
			require.Equal(t, SQLServer, tbl.Dialect, "the original is untouched")
			for i, c := range tbl.Columns {
				src, err := Map(tbl.Dialect, c.Type)
				require.NoError(t, err)
				dst, err := Map(Postgres, pg.Columns[i].Type)
				require.NoError(t, err)
				require.Equal(t, src.Postgres, dst.Postgres, c.Name)
			}
		})
	}
}
