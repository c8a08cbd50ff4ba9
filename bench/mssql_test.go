package bench

import (
	"bytes"
	"database/sql"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// sqlServerLess orders uniqueidentifiers (wire order) as SQL Server does:
// bytes 10-15, then 8-9, 6-7, 4-5 and 0-3, each group bytewise.
func sqlServerLess(a, b [16]byte) bool {
	for _, g := range [][2]int{{10, 16}, {8, 10}, {6, 8}, {4, 6}, {0, 4}} {
		if c := bytes.Compare(a[g[0]:g[1]], b[g[0]:g[1]]); c != 0 {
			return c < 0
		}
	}
	return false
}

// Both sources serve the rows in the same order: the keys sort by row
// index in PostgreSQL's uuid order and in SQL Server's uniqueidentifier
// order.
func TestKeysSortByIndexInBothServersOrders(t *testing.T) {
	idx := []int{0, 1, 2, 254, 255, 256, 4095, 4096, 65535, 65536, 999_999, 1_000_000, 4_999_999, 1 << 24, 1<<32 + 5}
	for k := 1; k < len(idx); k++ {
		a, b := genID(idx[k-1]), genID(idx[k])
		require.Negative(t, bytes.Compare(a[:], b[:]), "PostgreSQL order of rows %d and %d", idx[k-1], idx[k])
		require.True(t, sqlServerLess(wireGUID(a), wireGUID(b)), "SQL Server order of rows %d and %d", idx[k-1], idx[k])
		require.Equal(t, byte(0x40), a[6]&0xf0, "version 4")
		require.Equal(t, byte(0x80), a[8]&0xc0, "RFC 4122 variant")
	}
}

func TestDecimal2(t *testing.T) {
	for v, want := range map[int64]string{0: "0.00", 5: "0.05", 100: "1.00", 12345: "123.45", -7: "-0.07", -1205: "-12.05"} {
		require.Equal(t, want, decimal2(v))
	}
}

func startCharges(t testing.TB, rows int) (*tdsSource, *sql.DB) {
	h, err := newChargesServer(rows, 777)
	require.NoError(t, err)
	src, err := startTDS(h, tdstest.EncryptOff)
	require.NoError(t, err)
	t.Cleanup(src.close)
	db, err := sql.Open("sqlserver", src.srv.URL(mssqlUser, src.password, "database", mssqlDatabase))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return src, db
}

// chunk reads a chunk query's rows: each row's key (RFC 4122 order) and
// created_by (the row index).
func chunk(t *testing.T, db *sql.DB, q string, args ...any) (keys [][16]byte, index []int64) {
	t.Helper()
	rows, err := db.Query(q, args...)
	require.NoError(t, err)
	defer rows.Close()
	vals := make([]any, len(Columns))
	dest := make([]any, len(Columns))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for rows.Next() {
		require.NoError(t, rows.Scan(dest...))
		var u mssql.UniqueIdentifier
		require.NoError(t, u.Scan(vals[0]))
		keys = append(keys, u)
		index = append(index, vals[12].(int64))
	}
	require.NoError(t, rows.Err())
	return keys, index
}

// The stand-in answers the statements of an hwm first load through
// go-mssqldb: the generator's rows in key order, chunk after chunk, with
// the generator's values; anything else fails loudly, naming the
// statement.
func TestChargesServerAnswersAnHwmFirstLoadOnly(t *testing.T) {
	src, db := startCharges(t, 5)
	h := src.h

	require.NoError(t, db.Ping())
	var bound []byte
	require.NoError(t, db.QueryRow("SELECT MIN_ACTIVE_ROWVERSION()").Scan(&bound))
	require.Equal(t, []byte{0, 0, 0, 0, 0, 0, 3, 10}, bound, "777 + 1")

	keys, index := chunk(t, db, h.first, int64(2))
	require.Equal(t, []int64{0, 1}, index)
	require.Equal(t, [][16]byte{genID(0), genID(1)}, keys)
	keys, index = chunk(t, db, h.next, int64(2), mssql.UniqueIdentifier(keys[1]))
	require.Equal(t, []int64{2, 3}, index)
	keys, index = chunk(t, db, h.next, int64(10), mssql.UniqueIdentifier(keys[1]))
	require.Equal(t, []int64{4}, index)
	_, index = chunk(t, db, h.next, int64(10), mssql.UniqueIdentifier(keys[0]))
	require.Empty(t, index, "after the last key")
	require.NoError(t, src.failure())

	// Every value as the generator made it.
	rows, err := db.Query(h.first, int64(1))
	require.NoError(t, err)
	require.True(t, rows.Next())
	vals := make([]any, len(Columns))
	dest := make([]any, len(Columns))
	for i := range vals {
		dest[i] = &vals[i]
	}
	require.NoError(t, rows.Scan(dest...))
	require.NoError(t, rows.Close())
	r := genRow(0, 0)
	key, person := wireGUID(r.id), wireGUID(r.person)
	want := []any{key[:], r.practice, person[:], r.serviceItem, r.cpt4, []byte(decimal2(r.quantity)), []byte(decimal2(r.unitPrice)),
		[]byte(decimal2(r.amt)), []byte(decimal2(r.patAmt)), r.beginDOS, r.endDOS, r.status, int64(r.createdBy),
		pgEpoch.Add(time.Duration(r.createTS) * time.Microsecond), int64(r.modifiedBy),
		pgEpoch.Add(time.Duration(r.modifyTS) * time.Microsecond), []byte{0, 0, 0, 0, 0, 0, 3, 9}}
	for i := range want {
		if tm, ok := vals[i].(time.Time); ok {
			vals[i] = tm.UTC()
		}
	}
	require.Equal(t, want, vals)
	require.Equal(t, map[string]int{stmtPing: 1, stmtBound: 1, stmtFirstChunk: 2, stmtNextChunk: 3}, h.Answered())

	// A statement it does not know, and a key it never served.
	_, err = db.Exec("SELECT COUNT(*) FROM [dbo].[charges]")
	require.ErrorContains(t, err, "does not answer")
	require.ErrorContains(t, src.failure(), `"SELECT COUNT(*) FROM [dbo].[charges]"`)
	other := genID(3)
	other[15]++
	_, err = db.Exec(h.next, int64(1), mssql.UniqueIdentifier(other))
	require.ErrorContains(t, err, "not a key the bench served")
	_, err = db.Exec(h.next, int64(1), "not a key")
	require.ErrorContains(t, err, "not @p2 uniqueidentifier")
	require.NotContains(t, src.failure().Error(), "not a key\"", "no parameter value in the error")
}
