package mssqlmodel

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

func TestGUIDOrder(t *testing.T) {
	for _, c := range []struct {
		name string
		a, b string
		want int
	}{
		// Microsoft's example ("How are GUIDs compared in SQL Server
		// 2005?"): the last six bytes decide, 86.. > 39...
		{"last six bytes first", "55666BEE-B3A0-4BF5-81A7-86FF976E763F", "8DD5BCA5-6ABE-4F73-B4B7-393AE6BBB849", 1},
		{"last group beats the rest", "00000000-0000-0000-0000-000000000001", "FFFFFFFF-FFFF-FFFF-FFFF-000000000000", 1},
		{"bytes 8-9 before 6-7", "00000000-0000-0000-0001-000000000000", "FFFFFFFF-FFFF-FFFF-0000-000000000000", 1},
		{"bytes 6-7 before 4-5", "00000000-0000-0001-0000-000000000000", "FFFFFFFF-FFFF-0000-0000-000000000000", 1},
		{"bytes 4-5 before 0-3", "00000000-0001-0000-0000-000000000000", "FFFFFFFF-0000-0000-0000-000000000000", 1},
		// Within the little-endian groups the storage bytes compare in
		// storage order: the last displayed byte of Data1 is the most
		// significant (NEWSEQUENTIALID's first displayed byte counts up
		// fastest).
		{"Data1 least significant byte shows first", "01000000-0000-0000-0000-000000000000", "00000001-0000-0000-0000-000000000000", -1},
		{"equal", "6F9619FF-8B86-D011-B42D-00C04FC964FF", "6f9619ff-8b86-d011-b42d-00c04fc964ff", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, b := GUIDWire(uuid.MustParse(c.a)), GUIDWire(uuid.MustParse(c.b))
			require.Equal(t, c.want, CompareGUID(a, b))
			require.Equal(t, -c.want, CompareGUID(b, a))
		})
	}
}

// guidTable is a table keyed by a uniqueidentifier and an int.
func guidTable() *schemas.Table {
	return &schemas.Table{Schema: "dbo", Name: "g", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{col("id", "uniqueidentifier", false), col("n", "int", false), col("v", "varchar(10)", true)},
		Key:     []string{"id", "n"}}
}

func TestKeysetPagingOverGUIDsReadsEveryRowOnce(t *testing.T) {
	m := New(Options{})
	require.NoError(t, m.CreateTable(guidTable()))
	r := rand.New(rand.NewPCG(1, 2))
	want := map[uuid.UUID]bool{}
	tx := m.Begin()
	for i := range 300 {
		var u uuid.UUID
		for j := range u {
			u[j] = byte(r.IntN(256))
		}
		if i%10 == 0 { // values differing only in the first bytes
			u = uuid.MustParse("00000000-0000-0000-0000-0000000000AA")
			u[0], u[5] = byte(i), byte(i/3)
		}
		want[u] = true
		require.NoError(t, tx.Insert("dbo.g", map[string]any{"id": u, "n": 1, "v": "x"}))
	}
	require.NoError(t, tx.Commit())

	seen := map[uuid.UUID]int{}
	var order [][]byte
	var last []byte
	for range 1000 {
		var res tdstest.Result
		if last == nil {
			res = query(t, m, "SELECT TOP (@p1) [id], [n], [v] FROM [dbo].[g] ORDER BY [id], [n]", pBigint(7))
		} else {
			res = query(t, m, "SELECT TOP (@p1) [id], [n], [v] FROM [dbo].[g] WHERE (([id] > @p2) OR ([id] = @p2 AND [n] > @p3)) ORDER BY [id], [n]",
				pBigint(7), tdstest.Param{Type: tGUID, Value: last}, pInt(1))
		}
		for _, row := range res.Rows {
			b := row[0].([]byte)
			seen[rfcFromWire(b)]++
			order = append(order, b)
			last = b
		}
		if len(res.Rows) < 7 {
			break
		}
	}
	require.Len(t, seen, len(want))
	for u := range want {
		require.Equal(t, 1, seen[u], "row %s", u)
	}
	require.True(t, slices.IsSortedFunc(order, CompareGUID), "rows come in SQL Server's uniqueidentifier order")
	// Paging by the RFC text order instead would not be SQL Server's order.
	require.False(t, slices.IsSortedFunc(order, func(a, b []byte) int { return strings.Compare(guidText(a), guidText(b)) }))
}

func TestCollate(t *testing.T) {
	for _, c := range []struct {
		a, b string
		want int
	}{
		{"abc", "ABC", 0},
		{"AbC", "aBc", 0},
		{"abc", "abc   ", 0}, // trailing spaces ignored
		{"abc", "  abc", 1},  // leading spaces are not
		{"café", "CAFÉ", 0},
		{"e", "é", -1}, // accent sensitive
		{"a", "ä", -1},
		{"à", "Ao", -1}, // accent is a secondary weight
		{"az", "àz", -1},
		{"O'Brien", "OBrien", 1}, // the apostrophe keeps equality, sorts after
		{"coop", "co-op", -1},
		{"Aaronsburg", "'Aiea", -1},
		{"#500-75", "00,", -1}, // symbols before digits
		{"00,", "abc", -1},     // digits before letters
		{"a", "B", -1},
		{"æx", "af", -1}, // æ expands to ae
		{"ad", "æx", -1},
		{"O’Brien", "OBrien", -1}, // a typographic quote is a symbol
		{"José", "Jose", 1},
		{"Zoë", "zoe", 1},
	} {
		t.Run(c.a+"_"+c.b, func(t *testing.T) {
			require.Equal(t, c.want, Collate(c.a, c.b))
			require.Equal(t, -c.want, Collate(c.b, c.a))
		})
	}
}

func TestVarcharComparisonsInTheCollation(t *testing.T) {
	m := New(Options{})
	require.NoError(t, m.CreateTable(guidTable()))
	insert(t, m, "dbo.g",
		map[string]any{"id": guid(1), "n": 1, "v": "Smith"},
		map[string]any{"id": guid(2), "n": 1, "v": "smith  "},
		map[string]any{"id": guid(3), "n": 1, "v": "Smíth"})
	for _, c := range []struct {
		name  string
		param tdstest.Param
		want  int
	}{
		{"varchar parameter, case and trailing spaces ignored", pVarChar("SMITH"), 2},
		{"nvarchar parameter converts the column to nvarchar", pNVarchar("smith"), 2},
		{"accent sensitive", pNVarchar("Smíth"), 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			res := query(t, m, "SELECT TOP (@p1) [id] FROM [dbo].[g] WHERE [v] = @p2 ORDER BY [id]", pBigint(10), c.param)
			require.Len(t, res.Rows, c.want)
		})
	}
}

// TestVarcharKeyPaging is PITFALLS.md P15 at the source: paging a varchar
// key one row per chunk. go-mssqldb sends mssql.VarChar as the Go string's
// UTF-8 bytes in the connection's code page 1252 collation, so a key with a
// non-ASCII character comes back to the server as mojibake and the next
// chunk resumes from the wrong place; an nvarchar parameter cast to the
// column's varchar type carries the characters themselves.
func TestVarcharKeyPaging(t *testing.T) {
	keys := []string{"O'Brien", "O’Brien", "O’Connor", "OBrien", "José"}
	newM := func(t *testing.T) *Model {
		m := New(Options{})
		require.NoError(t, m.CreateTable(&schemas.Table{Schema: "dbo", Name: "patients", Dialect: schemas.SQLServer,
			Columns: []schemas.Column{col("last_name", "varchar(40)", false), col("n", "int", true)}, Key: []string{"last_name"}}))
		for i, k := range keys {
			insert(t, m, "dbo.patients", map[string]any{"last_name": k, "n": i})
		}
		return m
	}
	page := func(t *testing.T, m *Model, bind func(string) (string, tdstest.Param)) []string {
		var got []string
		var last *string
		for range 2 * len(keys) {
			var res tdstest.Result
			if last == nil {
				res = query(t, m, "SELECT TOP (@p1) [last_name], [n] FROM [dbo].[patients] ORDER BY [last_name]", pBigint(1))
			} else {
				ph, p := bind(*last)
				res = query(t, m, "SELECT TOP (@p1) [last_name], [n] FROM [dbo].[patients] WHERE [last_name] > "+ph+" ORDER BY [last_name]",
					pBigint(1), p)
			}
			if len(res.Rows) == 0 {
				break
			}
			k := res.Rows[0][0].(string)
			got = append(got, k)
			last = &k
		}
		return got
	}
	t.Run("SQL Server's order", func(t *testing.T) {
		res := query(t, newM(t), "SELECT TOP (@p1) [last_name] FROM [dbo].[patients] ORDER BY [last_name]", pBigint(10))
		var got []string
		for _, r := range res.Rows {
			got = append(got, r[0].(string))
		}
		require.Equal(t, []string{"José", "O’Brien", "O’Connor", "OBrien", "O'Brien"}, got)
	})
	t.Run("varchar parameter with UTF-8 bytes loses or repeats rows", func(t *testing.T) {
		m := newM(t)
		got := page(t, m, func(k string) (string, tdstest.Param) { return "@p2", pVarChar(k) })
		// The chunk after José resumes after 'JosÃ©', which sorts before
		// José: the pager reads José again and again (cut off here).
		require.Len(t, got, 2*len(keys))
		require.Equal(t, []string{"José", "José", "José"}, got[:3])
		// The chunk after O’Brien resumes after 'Oâ€™Brien', which sorts
		// after O’Connor: O’Connor is never read.
		next := query(t, m, "SELECT TOP (@p1) [last_name], [n] FROM [dbo].[patients] WHERE [last_name] > @p2 ORDER BY [last_name]",
			pBigint(1), pVarChar("O’Brien"))
		require.Equal(t, "OBrien", next.Rows[0][0])
		next = query(t, m, "SELECT TOP (@p1) [last_name], [n] FROM [dbo].[patients] WHERE [last_name] > CAST(@p2 AS varchar(40)) ORDER BY [last_name]",
			pBigint(1), pNVarchar("O’Brien"))
		require.Equal(t, "O’Connor", next.Rows[0][0])
	})
	t.Run("nvarchar parameter cast to varchar reads each row once", func(t *testing.T) {
		m := newM(t)
		got := page(t, m, func(k string) (string, tdstest.Param) { return "CAST(@p2 AS varchar(40))", pNVarchar(k) })
		require.Equal(t, []string{"José", "O’Brien", "O’Connor", "OBrien", "O'Brien"}, got)
	})
	t.Run("a varchar value outside code page 1252 is stored as ?", func(t *testing.T) {
		m := newM(t)
		insert(t, m, "dbo.patients", map[string]any{"last_name": "Łukasz", "n": 9})
		res := query(t, m, "SELECT TOP (@p1) [last_name] FROM [dbo].[patients] WHERE [n] = @p2", pBigint(1), pInt(9))
		require.Equal(t, "?ukasz", res.Rows[0][0])
	})
}

func TestDatetimeTicks(t *testing.T) {
	base := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   time.Duration
		want time.Duration
	}{
		{0, 0},
		{time.Millisecond, 0},
		{2 * time.Millisecond, 3333333},
		{3 * time.Millisecond, 3333333},
		{4 * time.Millisecond, 3333333},
		{5 * time.Millisecond, 6666667},
		{6 * time.Millisecond, 6666667},
		{8 * time.Millisecond, 6666667},
		{9 * time.Millisecond, 10 * time.Millisecond},
		{999 * time.Millisecond, time.Second},
		{998 * time.Millisecond, 996666667},
	} {
		t.Run(c.in.String(), func(t *testing.T) {
			require.Equal(t, base.Add(c.want), roundDatetime(base.Add(c.in)))
		})
	}
	t.Run("rounding into the next day", func(t *testing.T) {
		require.Equal(t, time.Date(2026, 1, 6, 0, 0, 0, 0, time.UTC),
			roundDatetime(time.Date(2026, 1, 5, 23, 59, 59, 999_000_000, time.UTC)))
	})
	t.Run("a datetime column stores the tick, and compares with datetime2 parameters at 100 ns", func(t *testing.T) {
		m := newModel(t, Options{})
		at := base.Add(2 * time.Millisecond) // stored as .003333333
		insert(t, m, "dbo.claim_lines", map[string]any{"claim_id": guid(1), "line_id": guid(1), "practice_id": "0001", "modify_timestamp": at})
		rows, err := m.Rows("dbo.claim_lines")
		require.NoError(t, err)
		require.Equal(t, base.Add(3333333), rows[0]["modify_timestamp"])
		// datetime = datetime parameter (both ticks).
		res := query(t, m, "SELECT TOP (@p1) [claim_id] FROM [dbo].[claim_lines] WHERE [modify_timestamp] = @p2", pBigint(5), pDateTime1(at))
		require.Len(t, res.Rows, 1)
		// The column converts to datetime2 (precedence): .0033333 is not
		// .003 or .002.
		for _, c := range []struct {
			p    time.Time
			want int
		}{{base.Add(3333300), 1}, {base.Add(3 * time.Millisecond), 0}, {base.Add(2 * time.Millisecond), 0}} {
			res = query(t, m, "SELECT TOP (@p1) [claim_id] FROM [dbo].[claim_lines] WHERE [modify_timestamp] = @p2", pBigint(5), pDatetime2(c.p))
			require.Len(t, res.Rows, c.want, c.p)
		}
	})
	t.Run("smalldatetime and datetime2(n)", func(t *testing.T) {
		v, err := convert(base.Add(29*time.Second+998*time.Millisecond), tDatetime2, schemas.Type{Name: "smalldatetime"}, true)
		require.NoError(t, err)
		require.Equal(t, base, v)
		v, err = convert(base.Add(29*time.Second+999*time.Millisecond), tDatetime2, schemas.Type{Name: "smalldatetime"}, true)
		require.NoError(t, err)
		require.Equal(t, base.Add(time.Minute), v)
		v, err = convert(base.Add(1234567891), tDatetime2, schemas.Type{Name: "datetime2", Precision: 3}, true)
		require.NoError(t, err)
		require.Equal(t, base.Add(1235*time.Millisecond), v)
	})
}

func TestDecimalsAndOverflow(t *testing.T) {
	m := New(Options{})
	for _, c := range []struct {
		sql  string
		want any
		err  int32
	}{
		{"SELECT CAST(@p1 AS numeric(19,2))", "12.35", 0},
		{"SELECT CAST(@p1 AS int)", nil, 8115},
		{"SELECT CAST(@p1 AS tinyint)", nil, 8115},
		{"SELECT CAST(@p1 AS numeric(3,1))", nil, 8115},
		{"SELECT CAST(@p1 AS numeric(38,0))", "99999999999999999999999999999999999999", 0},
	} {
		t.Run(c.sql, func(t *testing.T) {
			var p tdstest.Param
			switch {
			case strings.Contains(c.sql, "19,2"):
				p = pVarChar("12.345")
			case strings.Contains(c.sql, "38,0"):
				p = pVarChar("99999999999999999999999999999999999999")
			case strings.Contains(c.sql, "3,1"):
				p = pVarChar("123.4")
			case strings.Contains(c.sql, "tinyint"):
				p = pBigint(256)
			default:
				p = pBigint(1 << 40)
			}
			res, err := eval(t, m, c.sql, p)
			if c.err != 0 {
				se, ok := err.(*tdstest.Error)
				require.True(t, ok, "%v", err)
				require.Equal(t, c.err, se.Number)
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.want, res[0].Rows[0][0])
		})
	}
}

func TestRowVersionAndMinActiveRowVersion(t *testing.T) {
	m := newModel(t, Options{})
	bound := func() uint64 {
		res := query(t, m, "SELECT MIN_ACTIVE_ROWVERSION()")
		require.Equal(t, binaryT(8), res.Columns[0].Type)
		return binary.BigEndian.Uint64(res.Rows[0][0].([]byte))
	}
	require.Equal(t, uint64(2001), bound(), "no open transaction: @@DBTS + 1")
	row := func(n int) map[string]any {
		return map[string]any{"claim_id": guid(n), "line_id": guid(n), "practice_id": "0001"}
	}
	insert(t, m, "dbo.claim_lines", row(1))
	require.Equal(t, uint64(2002), bound())

	open := m.Begin()
	require.NoError(t, open.Insert("dbo.claim_lines", row(2))) // takes 2002
	insert(t, m, "dbo.claim_lines", row(3))                    // takes 2003, commits
	require.Equal(t, uint64(2002), bound(), "the open transaction's row version holds the bound")
	require.Equal(t, uint64(2003), m.DBTS())

	// A window below the bound reads the committed rows only; the open
	// transaction's row is invisible.
	res := query(t, m, "SELECT TOP (@p1) [claim_id], [row_timestamp] FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) AND [row_timestamp] > @p3 AND [row_timestamp] < @p4 ORDER BY [row_timestamp]",
		pBigint(10), pVarChar("0001"), pBytes(binary.BigEndian.AppendUint64(nil, 2000)), pBytes(binary.BigEndian.AppendUint64(nil, 2002)))
	require.Len(t, res.Rows, 1)
	require.Equal(t, binary.BigEndian.AppendUint64(nil, 2001), res.Rows[0][1])

	// An update takes a new row version.
	tx := m.Begin()
	require.NoError(t, tx.Update("dbo.claim_lines", map[string]any{"claim_id": guid(1), "line_id": guid(1), "paid_amt": "1.5"}))
	require.NoError(t, tx.Commit())
	rows, err := m.Rows("dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, binary.BigEndian.AppendUint64(nil, 2004), rows[0]["row_timestamp"])
	require.Equal(t, "1.50", rows[0]["paid_amt"])
	require.Equal(t, uint64(2002), bound())

	require.NoError(t, open.Commit())
	require.Equal(t, uint64(2005), bound())
	m.Touch()
	require.Equal(t, uint64(2006), bound(), "activity elsewhere moves the bound")
	res = query(t, m, "SELECT TOP (@p1) [claim_id] FROM [dbo].[claim_lines] WHERE [row_timestamp] > @p2 AND [row_timestamp] < @p3 ORDER BY [row_timestamp]",
		pBigint(10), pBytes(binary.BigEndian.AppendUint64(nil, 2001)), pBytes(binary.BigEndian.AppendUint64(nil, 2005)))
	require.Len(t, res.Rows, 3, "the late commit's row is below the next window's bound, not lost")
}

func TestUncommittedWritesAreInvisible(t *testing.T) {
	m := newModel(t, Options{})
	tx := m.Begin()
	require.NoError(t, tx.Insert("dbo.claim_lines", map[string]any{"claim_id": guid(1), "line_id": guid(1), "practice_id": "0001"}))
	res := query(t, m, "SELECT TOP (@p1) [claim_id] FROM [dbo].[claim_lines] ORDER BY [claim_id], [line_id]", pBigint(10))
	require.Empty(t, res.Rows)
	other := m.Begin()
	require.ErrorIs(t, other.Insert("dbo.claim_lines", map[string]any{"claim_id": guid(1), "line_id": guid(1), "practice_id": "0001"}), ErrWouldBlock)
	other.Rollback()
	require.NoError(t, tx.Commit())
	res = query(t, m, "SELECT TOP (@p1) [claim_id] FROM [dbo].[claim_lines] ORDER BY [claim_id], [line_id]", pBigint(10))
	require.Len(t, res.Rows, 1)
	dup := m.Begin()
	require.ErrorIs(t, dup.Insert("dbo.claim_lines", map[string]any{"claim_id": guid(1), "line_id": guid(1), "practice_id": "0001"}), ErrDuplicate)
	dup.Rollback()
}

// TestChunkQueries runs the chunk queries of the goldens in
// extractors/{snapshot,hwm}/testdata.
func TestChunkQueries(t *testing.T) {
	m := newModel(t, Options{})
	t0 := time.Date(2026, 1, 5, 7, 50, 0, 0, time.UTC)
	var rows []map[string]any
	for i := range 6 {
		p := "0001"
		if i == 4 {
			p = "0002"
		}
		rows = append(rows, map[string]any{"claim_id": guid(i / 2), "line_id": guid(i), "practice_id": p,
			"paid_amt": "10.25", "service_date": t0, "modify_timestamp": t0.Add(time.Duration(i) * time.Minute)})
	}
	insert(t, m, "dbo.claim_lines", rows...)
	cols := "[claim_id], [line_id], [practice_id], [paid_amt], [service_date], [modify_timestamp], [row_timestamp]"
	t.Run("keyset first chunk with the practice filter", func(t *testing.T) {
		res := query(t, m, "SELECT TOP (@p1) "+cols+" FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2, @p3) ORDER BY [claim_id], [line_id]",
			pBigint(2), pVarChar("0001"), pVarChar("0002"))
		require.Len(t, res.Rows, 2)
		require.Equal(t, []string{"claim_id", "line_id", "practice_id", "paid_amt", "service_date", "modify_timestamp", "row_timestamp"},
			names(res))
		require.Equal(t, schemas.Type{Name: "numeric", Precision: 19, Scale: 2}, res.Columns[3].Type)
		require.Equal(t, "10.25", res.Rows[0][3])
		require.Equal(t, "0001", res.Rows[0][2])
		require.Equal(t, GUIDWire(guid(0)), res.Rows[0][1])
	})
	t.Run("keyset next chunk", func(t *testing.T) {
		res := query(t, m, "SELECT TOP (@p1) "+cols+" FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) AND (([claim_id] > @p3) OR ([claim_id] = @p3 AND [line_id] > @p4)) ORDER BY [claim_id], [line_id]",
			pBigint(10), pVarChar("0001"), pGUID(guid(1)), pGUID(guid(2)))
		require.Equal(t, []any{GUIDWire(guid(3)), GUIDWire(guid(5))}, column(res, "line_id"), "practice 0002's line 4 is filtered out")
	})
	t.Run("timestamp cursor with overlap", func(t *testing.T) {
		res := query(t, m, "SELECT TOP (@p1) "+cols+" FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) AND [modify_timestamp] IS NOT NULL AND [modify_timestamp] > @p3 AND (([modify_timestamp] < @p4) OR ([modify_timestamp] = @p4 AND [claim_id] < @p5) OR ([modify_timestamp] = @p4 AND [claim_id] = @p5 AND [line_id] <= @p6)) ORDER BY [modify_timestamp], [claim_id], [line_id]",
			pBigint(10), pVarChar("0001"), pDateTime1(t0), pDateTime1(t0.Add(3*time.Minute)), pGUID(guid(1)), pGUID(guid(3)))
		require.Equal(t, []any{GUIDWire(guid(1)), GUIDWire(guid(2)), GUIDWire(guid(3))}, column(res, "line_id"))
	})
	t.Run("cursor maximum", func(t *testing.T) {
		res := query(t, m, "SELECT MAX([modify_timestamp]) FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p1)", pVarChar("0001"))
		require.Equal(t, t0.Add(5*time.Minute), res.Rows[0][0])
		require.Equal(t, tDatetime, res.Columns[0].Type)
		res = query(t, m, "SELECT MAX([modify_timestamp]) FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p1)", pVarChar("0009"))
		require.Equal(t, [][]any{{nil}}, res.Rows, "MAX over no rows is one NULL")
	})
	t.Run("keys only", func(t *testing.T) {
		res := query(t, m, "SELECT TOP (@p1) [claim_id], [line_id] FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) ORDER BY [claim_id], [line_id]",
			pBigint(100), pVarChar("0001"))
		require.Len(t, res.Rows, 5)
	})
	t.Run("decimal key parameter cast to the column type", func(t *testing.T) {
		res := query(t, m, "SELECT TOP (@p1) [claim_id] FROM [dbo].[claim_lines] WHERE [paid_amt] >= CAST(@p2 AS numeric(19,2)) ORDER BY [claim_id]",
			pBigint(100), pVarChar("10.25"))
		require.Len(t, res.Rows, 6)
	})
	t.Run("an unknown column is error 207", func(t *testing.T) {
		sqlErr(t, m, "ehrsync", 207, "SELECT TOP (@p1) [nope] FROM [dbo].[claim_lines] ORDER BY [claim_id]", pBigint(1))
	})
	t.Run("an unknown table is error 208", func(t *testing.T) {
		sqlErr(t, m, "ehrsync", 208, "SELECT TOP (@p1) [x] FROM [dbo].[nope] ORDER BY [x]", pBigint(1))
	})
	t.Run("a missing parameter is error 137", func(t *testing.T) {
		sqlErr(t, m, "ehrsync", 137, "SELECT TOP (@p1) [claim_id] FROM [dbo].[claim_lines] WHERE [claim_id] > @p2", pBigint(1))
	})
}

func names(res tdstest.Result) []string {
	var out []string
	for _, c := range res.Columns {
		out = append(out, c.Name)
	}
	return out
}

func TestUnknownStatementsFailLoudlyNamingTheirShape(t *testing.T) {
	m := newModel(t, Options{})
	for _, c := range []struct {
		sql, want string
	}{
		{"SELECT session_id FROM sys.dm_exec_sessions", "sys.dm_exec_sessions"},
		{"UPDATE dbo.claim_lines SET paid_amt = 0", "outside the T-SQL subset"},
		{"SELECT a FROM dbo.claim_lines x JOIN dbo.other y ON x.a = y.a", "reading dbo.claim_lines, dbo.other"},
		{"SELECT TOP (1) claim_id FROM dbo.claim_lines GROUP BY claim_id", "GROUP BY"},
	} {
		t.Run(c.sql, func(t *testing.T) {
			_, err := m.Handle(context.Background(), request("ehrsync", c.sql))
			require.Error(t, err)
			_, isSQL := err.(*tdstest.Error)
			require.False(t, isSQL, "an unknown statement is a Go error, not a SQL Server error: %v", err)
			require.Contains(t, err.Error(), c.want)
		})
	}
	st := m.Statements()
	require.Len(t, st, 4)
	require.Equal(t, "", st[0].Shape)
	require.Error(t, st[0].Err)
}

// TestRestoreKeepsRowVersions: restored rows keep their rowversion values
// (repeats included) and @@DBTS rises past them, so the next write gets a
// larger one.
func TestRestoreKeepsRowVersions(t *testing.T) {
	m := newModel(t, Options{FirstRowVersion: 0x800})
	rv := []byte{0, 0, 0, 0, 0, 0, 0x09, 0}
	row := func(n int) map[string]any {
		return map[string]any{"claim_id": GUIDWire(guid(n)), "line_id": GUIDWire(guid(1)), "practice_id": "0001", "row_timestamp": rv}
	}
	require.NoError(t, m.Restore("dbo.claim_lines", []map[string]any{row(1), row(2)}))
	rows, err := m.Rows("dbo.claim_lines")
	require.NoError(t, err)
	require.Len(t, rows, 2)
	for _, r := range rows {
		require.Equal(t, rv, r["row_timestamp"])
	}
	require.Equal(t, uint64(0x900), m.DBTS())
	insert(t, m, "dbo.claim_lines", map[string]any{"claim_id": GUIDWire(guid(3)), "line_id": GUIDWire(guid(1)), "practice_id": "0001"})
	rows, err = m.Rows("dbo.claim_lines")
	require.NoError(t, err)
	require.Len(t, rows, 3)
	require.ErrorIs(t, m.Restore("dbo.claim_lines", []map[string]any{row(1)}), ErrDuplicate)
	require.Error(t, m.Restore("dbo.claim_lines", []map[string]any{{"claim_id": GUIDWire(guid(9)), "line_id": GUIDWire(guid(1)), "practice_id": "0001"}}))
}
