package mssqlmodel

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

func TestExpressions(t *testing.T) {
	m := New(Options{})
	for _, c := range []struct {
		sql    string
		params []tdstest.Param
		want   any
	}{
		{"SELECT CASE WHEN NULL = NULL THEN 1 ELSE 0 END", nil, int64(0)},
		{"SELECT CASE WHEN NOT (NULL = 1) THEN 1 ELSE 0 END", nil, int64(0)},
		{"SELECT CASE WHEN 1 IN (2, NULL) THEN 1 WHEN 1 NOT IN (2, NULL) THEN 2 ELSE 3 END", nil, int64(3)},
		{"SELECT CASE WHEN 1 IN (2, NULL, 1) THEN 1 ELSE 0 END", nil, int64(1)},
		{"SELECT CASE WHEN NULL = 1 OR 1 = 1 THEN 1 ELSE 0 END", nil, int64(1)},
		{"SELECT CASE WHEN NULL = 1 AND 1 = 0 THEN 1 WHEN NOT (NULL = 1 AND 1 = 0) THEN 2 END", nil, int64(2)},
		{"SELECT CASE WHEN @p1 IS NULL THEN 'null' ELSE 'not' END", []tdstest.Param{{Type: tInt}}, "null"},
		{"SELECT ISNULL(@p1, 7)", []tdstest.Param{{Type: tInt}}, int64(7)},
		{"SELECT COALESCE(NULL, NULL, N'x')", nil, "x"},
		{"SELECT CASE 2 WHEN 1 THEN 'a' WHEN 2 THEN 'b' END", nil, "b"},
		{"SELECT CASE WHEN 5 BETWEEN 1 AND 5 THEN 1 ELSE 0 END", nil, int64(1)},
		{"SELECT 7 / 2 + 7 % 2 * 10", nil, int64(13)},
		{"SELECT 1.5 + 1", nil, "2.5"},
		{"SELECT N'it''s' + 'x'", nil, "it'sx"},
		{"SELECT [a]]b] FROM (SELECT 1 AS [a]]b]) AS d", nil, int64(1)},
		{"SELECT /* comment */ 1 -- trailing", nil, int64(1)},
		{"SELECT CAST('6F9619FF-8B86-D011-B42D-00C04FC964FF' AS uniqueidentifier)", nil,
			[]byte{0xFF, 0x19, 0x96, 0x6F, 0x86, 0x8B, 0x11, 0xD0, 0xB4, 0x2D, 0x00, 0xC0, 0x4F, 0xC9, 0x64, 0xFF}},
		{"SELECT CAST(CAST('6F9619FF-8B86-D011-B42D-00C04FC964FF' AS uniqueidentifier) AS nvarchar(36))", nil,
			"6F9619FF-8B86-D011-B42D-00C04FC964FF"},
		{"SELECT CAST(0x0102 AS binary(4))", nil, []byte{1, 2, 0, 0}},
		{"SELECT CAST(258 AS binary(2))", nil, []byte{1, 2}},
		{"SELECT CASE WHEN 0x01 = 0x0100 THEN 1 ELSE 0 END", nil, int64(1)},
		{"SELECT CAST('2026-01-05 08:00:00.002' AS datetime)", nil, nil},
		{"SELECT CAST(N'abc' AS char(5))", nil, "abc  "},
		{"SELECT CAST(N'abcdef' AS varchar(3))", nil, "abc"},
		{"SELECT COUNT(*) FROM (SELECT 1 AS x) AS d WHERE 1 = 0", nil, int64(0)},
		{"SELECT MAX(x) FROM (SELECT 1 AS x) AS d WHERE 1 = 0", nil, nil},
	} {
		t.Run(c.sql, func(t *testing.T) {
			res, err := eval(t, m, c.sql, c.params...)
			require.NoError(t, err)
			if c.sql == "SELECT CAST('2026-01-05 08:00:00.002' AS datetime)" {
				require.Equal(t, 3333333, res[0].Rows[0][0].(interface{ Nanosecond() int }).Nanosecond())
				return
			}
			require.Equal(t, c.want, res[0].Rows[0][0])
		})
	}
}

func TestSQLErrors(t *testing.T) {
	m := New(Options{})
	require.NoError(t, m.CreateTable(&schemas.Table{Schema: "dbo", Name: "a", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{col("id", "int", false)}, Key: []string{"id"}}))
	require.NoError(t, m.CreateTable(&schemas.Table{Schema: "dbo", Name: "b", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{col("id", "int", false)}, Key: []string{"id"}}))
	for _, c := range []struct {
		sql  string
		want int32
	}{
		{"SELECT id FROM dbo.a JOIN dbo.b ON a.id = b.id", 209},
		{"SELECT x.id FROM dbo.a", 4104},
		{"SELECT 1 / 0", 8134},
		{"SELECT CAST('x' AS int)", 245},
		{"SELECT CAST('x' AS uniqueidentifier)", 8169},
		{"SELECT CAST('x' AS datetime)", 241},
		{"SELECT (SELECT id FROM (SELECT 1 AS id UNION_ALL_IS_NOT_HERE) AS d)", 0},
		{"SELECT id FROM dbo.a WHERE MAX(id) > 1", 147},
		{"SELECT id, MAX(id) FROM dbo.a", 8120},
		{"SELECT CAST(2147483647 AS int) + 1", 8115},
	} {
		t.Run(c.sql, func(t *testing.T) {
			_, err := eval(t, m, c.sql)
			require.Error(t, err)
			if c.want == 0 {
				_, isSQL := err.(*tdstest.Error)
				require.False(t, isSQL)
				return
			}
			se, ok := err.(*tdstest.Error)
			require.True(t, ok, "%v", err)
			require.Equal(t, c.want, se.Number, se.Message)
		})
	}
}

// TestIntegerAggregates: SUM and AVG over integers are integers of the
// argument's type (int, or bigint); AVG truncates toward zero; a sum that
// does not fit is error 8115.
func TestIntegerAggregates(t *testing.T) {
	m := fullModel(t) // dbo.claim_lines: 4 rows, modify_timestamp 08:00 to 08:03
	half := pDateTime1(time.Date(2026, 1, 5, 8, 1, 30, 0, time.UTC))
	res := queryAs(t, m, "ehrsync", "SELECT SUM(1), SUM(CAST(3 AS bigint)), AVG(CASE WHEN [modify_timestamp] > @p1 THEN 1 ELSE 0 END) FROM [dbo].[claim_lines]", half)
	require.Equal(t, [][]any{{int64(4), int64(12), int64(0)}}, res.Rows)
	require.Equal(t, []string{"int", "bigint", "int"}, []string{res.Columns[0].Type.Name, res.Columns[1].Type.Name, res.Columns[2].Type.Name})
	sqlErr(t, m, "ehrsync", 8115, "SELECT SUM(CAST(2147483647 AS int)) FROM [dbo].[claim_lines]")
}
