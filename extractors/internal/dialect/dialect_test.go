package dialect

import (
	"fmt"
	"testing"
	"time"

	"github.com/golang-sql/civil"
	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func table(t *testing.T) *schemas.Table {
	t.Helper()
	tbl := &schemas.Table{Schema: "dbo", Name: "odd]name", Dialect: schemas.SQLServer, Key: []string{"a", "b"}}
	for _, c := range []struct{ name, typ string }{{"a", "uniqueidentifier"}, {"b", "int"}, {"c", "varchar(8)"}} {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err)
		tbl.Columns = append(tbl.Columns, schemas.Column{Name: c.name, Type: typ})
	}
	return tbl
}

func TestQuote(t *testing.T) {
	tests := []struct {
		name string
		d    Dialect
		in   string
		want string
	}{
		{"sqlserver plain", SQLServer, "trans_id", "[trans_id]"},
		{"sqlserver closing bracket doubled", SQLServer, "a]b", "[a]]b]"},
		{"postgres plain", Postgres, "trans_id", `"trans_id"`},
		{"postgres quote doubled", Postgres, `a"b`, `"a""b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.d.Quote(tc.in))
		})
	}
}

func TestBuild(t *testing.T) {
	tbl := table(t)
	p := func(v any) Param { return Param{Arg: v} }
	sel := func(op Op) Select {
		return Select{
			Table: tbl, Columns: []string{"a", "b", "c"},
			In:      &In{Column: "c", Values: []Param{p("x"), p("y")}},
			Where:   []Cond{{Columns: []string{"a", "b"}, Op: op, Values: []Param{p(1), {Arg: "2", Cast: "numeric(5,2)"}}}},
			OrderBy: []string{"a", "b"}, Limit: 10,
		}
	}
	tests := []struct {
		name string
		d    Dialect
		s    Select
		want string
		args int
	}{
		{"sqlserver row >", SQLServer, sel(Gt),
			"SELECT TOP (@p1) [a], [b], [c] FROM [dbo].[odd]]name] WHERE [c] IN (@p2, @p3) AND (([a] > @p4) OR ([a] = @p4 AND [b] > CAST(@p5 AS numeric(5,2)))) ORDER BY [a], [b]", 5},
		{"sqlserver row <=", SQLServer, sel(Le),
			"SELECT TOP (@p1) [a], [b], [c] FROM [dbo].[odd]]name] WHERE [c] IN (@p2, @p3) AND (([a] < @p4) OR ([a] = @p4 AND [b] <= CAST(@p5 AS numeric(5,2)))) ORDER BY [a], [b]", 5},
		{"postgres row >", Postgres, sel(Gt),
			`SELECT "a", "b", "c" FROM "dbo"."odd]name" WHERE "c" IN ($1, $2) AND ("a", "b") > ($3, $4::numeric(5,2)) ORDER BY "a", "b" LIMIT $5`, 5},
		{"single column", SQLServer, Select{Table: tbl, Columns: []string{"a"}, NotNull: "b",
			Where: []Cond{{Columns: []string{"b"}, Op: Lt, Values: []Param{p(1)}}}, Limit: 1},
			"SELECT TOP (@p1) [a] FROM [dbo].[odd]]name] WHERE [b] IS NOT NULL AND [b] < @p2", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q, args, err := tc.d.Build(tc.s)
			require.NoError(t, err)
			require.Equal(t, tc.want, q)
			require.Len(t, args, tc.args)
		})
	}
	_, _, err := SQLServer.Build(Select{Table: tbl, Columns: []string{"a"}})
	require.Error(t, err, "a chunk query always has a limit")
}

// Key and cursor parameters are bound with the column's exact type
// (PITFALLS.md P15): never a Go string (nvarchar) for a varchar, a typed
// uniqueidentifier for GUIDs (P12), datetime ticks for datetime (P14), and
// exact text cast to the declared type for decimals (P13).
func TestParamSQLServer(t *testing.T) {
	u := uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")
	at := time.Date(2026, 1, 5, 8, 0, 0, 3_333_334, time.UTC)
	tests := []struct {
		typ  string
		v    any
		want Param
	}{
		{"varchar(8)", "20260105", Param{Arg: mssql.VarChar("20260105")}},
		{"char(4)", "0001", Param{Arg: mssql.VarChar("0001")}},
		// Non-ASCII varchar goes as nvarchar, converted by the server (D3).
		{"varchar(40)", "O’Brien", Param{Arg: "O’Brien", Cast: "varchar(40)"}},
		{"char(10)", "José", Param{Arg: "José", Cast: "char(10)"}},
		{"varchar", "José", Param{Arg: "José", Cast: "varchar(max)"}}, // never CAST's 30-character default
		{"nvarchar(40)", "Zoë", Param{Arg: "Zoë"}},
		{"uniqueidentifier", u, Param{Arg: mssql.UniqueIdentifier(u)}},
		{"tinyint", int64(255), Param{Arg: uint8(255)}},
		{"smallint", int64(-2), Param{Arg: int16(-2)}},
		{"int", int64(7), Param{Arg: int32(7)}},
		{"bigint", int64(7), Param{Arg: int64(7)}},
		{"numeric(19,2)", "-125.40", Param{Arg: mssql.VarChar("-125.40"), Cast: "numeric(19,2)"}},
		{"money", "1.0000", Param{Arg: mssql.VarChar("1.0000"), Cast: "money"}},
		{"datetime", at, Param{Arg: mssql.DateTime1(at)}},
		{"smalldatetime", at, Param{Arg: mssql.DateTime1(at), Cast: "smalldatetime"}},
		{"datetime2", at, Param{Arg: civil.DateTimeOf(at)}},
		{"datetime2(7)", at, Param{Arg: civil.DateTimeOf(at)}},
		{"datetime2(3)", at, Param{Arg: civil.DateTimeOf(at), Cast: "datetime2(3)"}},
		{"datetimeoffset(7)", at, Param{Arg: mssql.DateTimeOffset(at)}},
		{"date", at, Param{Arg: civil.DateOf(at)}},
		{"rowversion", []byte{0, 0, 0, 0, 0, 0, 7, 0xd1}, Param{Arg: []byte{0, 0, 0, 0, 0, 0, 7, 0xd1}}},
		{"bit", true, Param{Arg: true}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %v", tc.typ, tc.v), func(t *testing.T) {
			typ, err := schemas.ParseType(schemas.SQLServer, tc.typ)
			require.NoError(t, err)
			got, err := SQLServer.Param(schemas.Column{Name: "k", Type: typ}, schemas.SQLServer, tc.v)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParamErrors(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		v    any
	}{
		{"null", "int", nil},
		{"wrong native", "uniqueidentifier", "6f9619ff-8b86-d011-b42d-00c04fc964ff"},
		{"tinyint out of range", "tinyint", int64(256)},
		{"int out of range", "int", int64(1) << 40},
		{"not a key type", "xml", "<a/>"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, err := schemas.ParseType(schemas.SQLServer, tc.typ)
			require.NoError(t, err)
			_, err = SQLServer.Param(schemas.Column{Name: "k", Type: typ}, schemas.SQLServer, tc.v)
			require.Error(t, err)
			if s, ok := tc.v.(string); ok {
				require.NotContains(t, err.Error(), s, "errors never carry values")
			}
		})
	}
}

func TestParamPostgres(t *testing.T) {
	u := uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")
	typ, err := schemas.ParseType(schemas.SQLServer, "uniqueidentifier")
	require.NoError(t, err)
	got, err := Postgres.Param(schemas.Column{Name: "k", Type: typ}, schemas.SQLServer, u)
	require.NoError(t, err)
	require.Equal(t, Param{Arg: u.String()}, got)
}
