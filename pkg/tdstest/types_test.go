package tdstest_test

import (
	"bytes"
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// column answers one result with one column of the given type and values.
func column(t *testing.T, typeName string, values ...any) tdstest.Handler {
	ty := typ(t, typeName)
	return tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		res := tdstest.Result{Columns: []tdstest.Column{{Name: "v", Type: ty, Nullable: true}}}
		for _, v := range values {
			res.Rows = append(res.Rows, []any{v})
		}
		return []tdstest.Result{res}, nil
	})
}

// scanAll returns the column's values as the driver gives them.
func scanAll(t *testing.T, db *sql.DB) []any {
	t.Helper()
	rows, err := db.Query("select v")
	require.NoError(t, err)
	defer rows.Close()
	var got []any
	for rows.Next() {
		var v any
		require.NoError(t, rows.Scan(&v))
		got = append(got, v)
	}
	require.NoError(t, rows.Err())
	return got
}

func utc(y int, m time.Month, d, h, mi, s, ns int) time.Time {
	return time.Date(y, m, d, h, mi, s, ns, time.UTC)
}

func TestTypesRoundTrip(t *testing.T) {
	guid := []byte{0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}
	big := bytes.Repeat([]byte("0123456789abcdef"), 100*1024/16)
	ist := time.FixedZone("IST", 5*3600+30*60)
	cases := []struct {
		typ  string
		in   []any
		want []any // nil: the same as in
	}{
		{typ: "tinyint", in: []any{int64(0), int64(255)}},
		{typ: "smallint", in: []any{int64(-32768), int64(32767)}},
		{typ: "int", in: []any{int64(-2147483648), int64(2147483647)}},
		{typ: "bigint", in: []any{int64(-9223372036854775808), int64(9223372036854775807)}},
		{typ: "bit", in: []any{true, false}},
		{typ: "decimal(38,0)", in: []any{"99999999999999999999999999999999999999", "-99999999999999999999999999999999999999", "0"},
			want: []any{[]byte("99999999999999999999999999999999999999"), []byte("-99999999999999999999999999999999999999"), []byte("0")}},
		{typ: "numeric(19,2)", in: []any{"99999999999999999.99", "-99999999999999999.99", "-0.5", "12.3"},
			want: []any{[]byte("99999999999999999.99"), []byte("-99999999999999999.99"), []byte("-0.50"), []byte("12.30")}},
		{typ: "decimal(5,5)", in: []any{"0.12345"}, want: []any{[]byte("0.12345")}},
		{typ: "decimal(28,4)", in: []any{"123456789012345678901234.5678"}, want: []any{[]byte("123456789012345678901234.5678")}},
		{typ: "money", in: []any{"922337203685477.5807", "-922337203685477.5808", "1.5"},
			want: []any{[]byte("922337203685477.5807"), []byte("-922337203685477.5808"), []byte("1.5000")}},
		{typ: "smallmoney", in: []any{"214748.3647", "-214748.3648"},
			want: []any{[]byte("214748.3647"), []byte("-214748.3648")}},
		{typ: "float", in: []any{1.5e308, -2.25, 0.0}},
		{typ: "float(24)", in: []any{1.5}},
		{typ: "real", in: []any{3.25, -1e38}, want: []any{3.25, float64(float32(-1e38))}},
		{typ: "uniqueidentifier", in: []any{guid}},
		{typ: "datetime", in: []any{utc(1753, 1, 1, 0, 0, 0, 0), utc(9999, 12, 31, 23, 59, 59, 997_000_000), utc(2020, 1, 2, 3, 4, 5, 3_000_000),
			utc(2020, 1, 2, 3, 4, 5, 2_000_000), utc(2020, 1, 2, 3, 4, 5, 5_000_000), utc(2020, 1, 2, 23, 59, 59, 999_000_000)},
			want: []any{utc(1753, 1, 1, 0, 0, 0, 0), utc(9999, 12, 31, 23, 59, 59, 997_000_000), utc(2020, 1, 2, 3, 4, 5, 3_000_000),
				utc(2020, 1, 2, 3, 4, 5, 3_000_000), utc(2020, 1, 2, 3, 4, 5, 7_000_000), utc(2020, 1, 3, 0, 0, 0, 0)}},
		{typ: "smalldatetime", in: []any{utc(1900, 1, 1, 0, 0, 0, 0), utc(2079, 6, 6, 23, 59, 0, 0), utc(2020, 5, 6, 7, 8, 29, 998_000_000), utc(2020, 5, 6, 7, 8, 29, 999_000_000)},
			want: []any{utc(1900, 1, 1, 0, 0, 0, 0), utc(2079, 6, 6, 23, 59, 0, 0), utc(2020, 5, 6, 7, 8, 0, 0), utc(2020, 5, 6, 7, 9, 0, 0)}},
		{typ: "datetime2(7)", in: []any{utc(2021, 3, 4, 5, 6, 7, 123_456_700), utc(1, 1, 1, 0, 0, 0, 0), utc(9999, 12, 31, 23, 59, 59, 999_999_900)}},
		{typ: "datetime2(0)", in: []any{utc(2021, 3, 4, 5, 6, 7, 500_000_000)}, want: []any{utc(2021, 3, 4, 5, 6, 8, 0)}},
		{typ: "datetimeoffset(7)", in: []any{time.Date(2021, 3, 4, 5, 6, 7, 100, ist)}},
		{typ: "date", in: []any{utc(1, 1, 1, 0, 0, 0, 0), utc(9999, 12, 31, 0, 0, 0, 0)}},
		{typ: "time(3)", in: []any{utc(1, 1, 1, 12, 34, 56, 789_000_000)}},
		{typ: "time(7)", in: []any{utc(1, 1, 1, 23, 59, 59, 999_999_900)}},
		{typ: "time", in: []any{utc(1, 1, 1, 0, 0, 0, 100)}},
		{typ: "varchar(20)", in: []any{"O’Brien", "José", "€5", "日本", ""}, want: []any{"O’Brien", "José", "€5", "??", ""}},
		{typ: "char(4)", in: []any{"ab  ", "abcd"}},
		{typ: "varchar(max)", in: []any{"José " + strings.Repeat("x", 20000)}},
		{typ: "nvarchar(10)", in: []any{"😀 ok", "日本"}},
		{typ: "nchar(3)", in: []any{"ab "}},
		{typ: "nvarchar(max)", in: []any{strings.Repeat("ü😀", 9000)}},
		{typ: "text", in: []any{"José’s text"}},
		{typ: "ntext", in: []any{"日本語 ntext"}},
		{typ: "image", in: []any{[]byte{0, 1, 2, 255}}},
		{typ: "varbinary(max)", in: []any{big, []byte{}}},
		{typ: "varbinary(10)", in: []any{[]byte{1, 2, 3}}},
		{typ: "binary(4)", in: []any{[]byte{1, 2, 3, 4}}},
		{typ: "rowversion", in: []any{[]byte{0, 0, 0, 0, 0, 0, 0x07, 0xd1}}},
		{typ: "xml", in: []any{"<a b=\"1\">José</a>"}},
		{typ: "hierarchyid", in: []any{[]byte{0x58}}},
		{typ: "sql_variant", in: []any{
			tdstest.Variant{Type: typ(t, "int"), Value: int64(42)},
			tdstest.Variant{Type: typ(t, "varchar(10)"), Value: "José"},
			tdstest.Variant{Type: typ(t, "nvarchar(10)"), Value: "日本"},
			tdstest.Variant{Type: typ(t, "varbinary(8)"), Value: []byte{1, 2}},
			tdstest.Variant{Type: typ(t, "uniqueidentifier"), Value: guid},
			tdstest.Variant{Type: typ(t, "decimal(10,2)"), Value: "-3.10"},
			tdstest.Variant{Type: typ(t, "datetime2(3)"), Value: utc(2022, 2, 3, 4, 5, 6, 7_000_000)},
			tdstest.Variant{Type: typ(t, "bit"), Value: true},
			tdstest.Variant{Type: typ(t, "float"), Value: 2.5},
			tdstest.Variant{Type: typ(t, "money"), Value: "-1.25"},
			tdstest.Variant{Type: typ(t, "datetime"), Value: utc(2022, 2, 3, 4, 5, 6, 3_000_000)},
			tdstest.Variant{Type: typ(t, "date"), Value: utc(2022, 2, 3, 0, 0, 0, 0)},
		}, want: []any{int64(42), "José", "日本", []byte{1, 2}, guid, []byte("-3.10"), utc(2022, 2, 3, 4, 5, 6, 7_000_000), true, 2.5,
			[]byte("-1.2500"), utc(2022, 2, 3, 4, 5, 6, 3_000_000), utc(2022, 2, 3, 0, 0, 0, 0)}},
	}
	for _, tc := range cases {
		t.Run(tc.typ, func(t *testing.T) {
			in := append(append([]any{}, tc.in...), nil) // and a NULL
			want := tc.want
			if want == nil {
				want = tc.in
			}
			want = append(append([]any{}, want...), nil)
			s := tdstest.Start(t, tdstest.Config{Handler: column(t, tc.typ, in...)})
			got := scanAll(t, open(t, s))
			require.Len(t, got, len(want))
			for i := range want {
				if wt, ok := want[i].(time.Time); ok {
					gt, ok := got[i].(time.Time)
					require.True(t, ok, "row %d: got %T", i, got[i])
					require.True(t, wt.Equal(gt), "row %d: got %v, want %v", i, gt, wt)
					_, wo := wt.Zone()
					_, gotOff := gt.Zone()
					require.Equal(t, wo, gotOff, "row %d: zone offset", i)
					continue
				}
				require.Equal(t, want[i], got[i], "row %d", i)
			}
			require.Empty(t, s.Errors())
		})
	}
}

func TestUniqueIdentifierScan(t *testing.T) {
	wire := []byte{0x78, 0x56, 0x34, 0x12, 0x34, 0x12, 0x78, 0x56, 0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0}
	s := tdstest.Start(t, tdstest.Config{Handler: column(t, "uniqueidentifier", wire)})
	var u mssql.UniqueIdentifier
	require.NoError(t, open(t, s).QueryRow("select v").Scan(&u))
	require.Equal(t, "12345678-1234-5678-1234-56789ABCDEF0", u.String())
}

func TestMismatchedValues(t *testing.T) {
	cases := []struct {
		typ   string
		value any
		want  string
	}{
		{"int", "12", "value of Go type string, want int64"},
		{"int", int64(1) << 40, "out of range"},
		{"tinyint", int64(-1), "out of range"},
		{"decimal(5,2)", "1234.5", "more digits than the precision"},
		{"decimal(5,2)", "1.234", "more fractional digits than the scale"},
		{"decimal(5,2)", "1e3", "not decimal text"},
		{"smallmoney", "214748.3648", "out of range"},
		{"varchar(3)", "abcd", "longer than the column"},
		{"nvarchar(1)", "😀", "longer than the column"},
		{"datetime", utc(1752, 12, 31, 0, 0, 0, 0), "out of range"},
		{"date", utc(2020, 1, 1, 1, 0, 0, 0), "time of day"},
		{"time", utc(2020, 1, 1, 1, 0, 0, 0), "not on 0001-01-01"},
		{"uniqueidentifier", []byte{1}, "want 16"},
		{"rowversion", []byte{1}, "does not fit"},
		{"float", 1, "value of Go type int, want float64"},
		{"sql_variant", int64(1), "want Variant"},
		{"sql_variant", tdstest.Variant{Type: typ(t, "varchar(max)"), Value: "x"}, "cannot hold"},
	}
	for _, tc := range cases {
		t.Run(tc.typ+" "+tc.want, func(t *testing.T) {
			s := tdstest.Start(t, tdstest.Config{Handler: column(t, tc.typ, tc.value)})
			err := open(t, s).QueryRow("select v").Scan(new(any))
			require.Error(t, err)
			e := mssqlError(t, err)
			require.EqualValues(t, 50000, e.Number)
			require.Contains(t, e.Message, `column "v" (`+typ(t, tc.typ).String()+`)`)
			require.Contains(t, e.Message, tc.want)
			require.Len(t, s.Errors(), 1)
		})
	}
}

func TestNullInANotNullColumn(t *testing.T) {
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		return []tdstest.Result{{Columns: []tdstest.Column{{Name: "id", Type: typ(t, "int")}}, Rows: [][]any{{int64(1)}, {nil}}}}, nil
	})
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	rows, err := open(t, s).Query("select id")
	require.NoError(t, err)
	defer rows.Close()
	require.True(t, rows.Next(), "the first row is sent")
	require.False(t, rows.Next())
	e := mssqlError(t, rows.Err())
	require.Contains(t, e.Message, "NULL in a column that is not nullable")
	require.Len(t, s.Errors(), 1)
}
