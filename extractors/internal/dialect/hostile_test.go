package dialect

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// hostile are names that break SQL written without quoting.
var hostile = []string{
	`a]b`, `]`, `]]`, `[x]`, `a"b`, `"`, `semi;colon`, `with space`, `O'Brien`,
	`ünïcödé`, `emoji 😀 𝄞`, `DROP TABLE x; --`, `x]; DROP TABLE y; --`, `a"]"b`, `/* c */`,
}

// unquote reverses one dialect's quoting, and fails on text that is not
// exactly one quoted identifier (an unescaped closing quote inside means
// the name could end early and the rest run as SQL).
func unquote(t *testing.T, d Dialect, q string) string {
	t.Helper()
	open, closing := `"`, `"`
	if d.Name() == schemas.SQLServer {
		open, closing = "[", "]"
	}
	require.True(t, strings.HasPrefix(q, open) && strings.HasSuffix(q, closing) && len(q) >= 2, "%s is not quoted", q)
	inner := q[1 : len(q)-1]
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		if inner[i] == closing[0] {
			require.True(t, i+1 < len(inner) && inner[i+1] == closing[0], "%s: an unescaped %s ends the name early", q, closing)
			i++
		}
		b.WriteByte(inner[i])
	}
	return b.String()
}

func TestHostileNamesAreQuotedOnBothDialects(t *testing.T) {
	for _, d := range []Dialect{SQLServer, Postgres} {
		for _, name := range hostile {
			t.Run(string(d.Name())+"/"+name, func(t *testing.T) {
				require.Equal(t, name, unquote(t, d, d.Quote(name)))
			})
		}
	}
}

func TestHostileTableQueries(t *testing.T) {
	typ, err := schemas.ParseType(schemas.SQLServer, "int")
	require.NoError(t, err)
	tbl := &schemas.Table{Schema: `s]"; x`, Name: `t]able 𝄞`, Dialect: schemas.SQLServer, Key: []string{`k]ey`},
		Columns: []schemas.Column{{Name: `k]ey`, Type: typ}, {Name: `v"al;`, Type: typ}}}
	sel := Select{Table: tbl, Columns: []string{`k]ey`, `v"al;`}, In: &In{Column: `v"al;`, Values: []Param{{Arg: 1}}},
		Where: []Cond{{Columns: []string{`k]ey`}, Op: Gt, Values: []Param{{Arg: 2}}}}, OrderBy: []string{`k]ey`}, Limit: 3}
	tests := []struct {
		d         Dialect
		build     string
		max       string
		quotedTbl string
	}{
		{SQLServer,
			`SELECT TOP (@p1) [k]]ey], [v"al;] FROM [s]]"; x].[t]]able 𝄞] WHERE [v"al;] IN (@p2) AND [k]]ey] > @p3 ORDER BY [k]]ey]`,
			`SELECT MAX([v"al;]) FROM [s]]"; x].[t]]able 𝄞]`, `[s]]"; x].[t]]able 𝄞]`},
		{Postgres,
			`SELECT "k]ey", "v""al;" FROM "s]""; x"."t]able 𝄞" WHERE "v""al;" IN ($1) AND "k]ey" > $2 ORDER BY "k]ey" LIMIT $3`,
			`SELECT MAX("v""al;") FROM "s]""; x"."t]able 𝄞"`, `"s]""; x"."t]able 𝄞"`},
	}
	for _, tc := range tests {
		t.Run(string(tc.d.Name()), func(t *testing.T) {
			q, _, err := tc.d.Build(sel)
			require.NoError(t, err)
			require.Equal(t, tc.build, q)
			q, _, err = tc.d.Max(tbl, `v"al;`, nil)
			require.NoError(t, err)
			require.Equal(t, tc.max, q)
			require.Equal(t, tc.quotedTbl, tc.d.QuoteTable(tbl))
		})
	}
}
