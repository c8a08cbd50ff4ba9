package arrowscan

import (
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// SQL Server sends a uniqueidentifier's first three groups little-endian:
// 6F9619FF-8B86-D011-B42D-00C04FC964FF travels as FF19966F 868B 11D0
// B42D 00C04FC964FF (PITFALLS.md P12).
func TestGUIDFromSQLServer(t *testing.T) {
	tests := []struct {
		name, wire, want string
	}{
		{"documented example", "ff19966f868b11d0b42d00c04fc964ff", "6f9619ff-8b86-d011-b42d-00c04fc964ff"},
		{"byte groups", "030201000504070608090a0b0c0d0e0f", "00010203-0405-0607-0809-0a0b0c0d0e0f"},
		{"zero", "00000000000000000000000000000000", "00000000-0000-0000-0000-000000000000"},
		{"last byte", "00000000000000000000000000000001", "00000000-0000-0000-0000-000000000001"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wire, err := hex.DecodeString(tc.wire)
			require.NoError(t, err)
			got, err := GUIDFromSQLServer(wire)
			require.NoError(t, err)
			require.Equal(t, tc.want, got.String())

			// Bound back as a parameter, the driver sends the same wire bytes.
			back, err := mssql.UniqueIdentifier(got).Value()
			require.NoError(t, err)
			require.Equal(t, wire, back)
		})
	}
	_, err := GUIDFromSQLServer([]byte{1, 2, 3})
	require.Error(t, err)
}

// go-mssqldb hands decimal, numeric, money and smallmoney values over as
// exact text at the column's scale (PITFALLS.md P13).
func TestParseDecimal(t *testing.T) {
	nines38 := strings.Repeat("9", 38)
	tests := []struct {
		name      string
		text      string
		prec, sc  int32
		want      string // Num.ToString(sc)
		wantError bool
	}{
		{"numeric(19,2) max", "99999999999999999.99", 19, 2, "99999999999999999.99", false},
		{"numeric(19,2) min", "-99999999999999999.99", 19, 2, "-99999999999999999.99", false},
		{"payment (negative)", "-125.40", 19, 2, "-125.40", false},
		{"zero", "0.00", 19, 2, "0.00", false},
		{"negative fraction", "-0.50", 19, 2, "-0.50", false},
		{"leading zero fraction", "0.05", 19, 2, "0.05", false},
		{"zero scale", "12345", 10, 0, "12345", false},
		{"numeric(38,0) max", nines38, 38, 0, nines38, false},
		{"numeric(38,0) min", "-" + nines38, 38, 0, "-" + nines38, false},
		{"numeric(38,38)", "0." + nines38, 38, 38, "0." + nines38, false},
		{"money max", "922337203685477.5807", 19, 4, "922337203685477.5807", false},
		{"money min", "-922337203685477.5808", 19, 4, "-922337203685477.5808", false},
		{"smallmoney min", "-214748.3648", 10, 4, "-214748.3648", false},
		{"fewer digits than scale are padded", "1.5", 19, 2, "1.50", false},
		{"trailing zeros beyond scale", "1.500", 19, 2, "1.50", false},
		{"never rounded", "1.005", 19, 2, "", true},
		{"too wide", "100000000000000000.00", 19, 2, "", true},
		{"39 digits", "1" + nines38, 38, 0, "", true},
		{"NaN", "NaN", 19, 2, "", true},
		{"empty", "", 19, 2, "", true},
		{"garbage", "1e5", 19, 2, "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, err := ParseDecimal(tc.text, tc.prec, tc.sc)
			if tc.wantError {
				require.Error(t, err)
				if tc.text != "" {
					require.NotContains(t, err.Error(), tc.text, "errors never carry values")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, n.ToString(tc.sc))
		})
	}
}

// Zone-less date-times keep their wall-clock reading whatever location the
// driver labels them with; datetime's 1/300 s ticks arrive as the
// millisecond SQL Server displays; datetime2(7)'s 100 ns digit is truncated
// as the mapping documents (PITFALLS.md P14).
func TestWallMicros(t *testing.T) {
	est := time.FixedZone("EST", -5*3600)
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"datetime min", time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC), "1753-01-01T00:00:00.000000"},
		{"datetime max", time.Date(9999, 12, 31, 23, 59, 59, 997_000_000, time.UTC), "9999-12-31T23:59:59.997000"},
		{"datetime tick .003", time.Date(2024, 2, 29, 12, 34, 56, 3_000_000, time.UTC), "2024-02-29T12:34:56.003000"},
		{"datetime tick .007", time.Date(2024, 2, 29, 12, 34, 56, 7_000_000, time.UTC), "2024-02-29T12:34:56.007000"},
		{"datetime2(7) max", time.Date(9999, 12, 31, 23, 59, 59, 999_999_900, time.UTC), "9999-12-31T23:59:59.999999"},
		{"datetime2 min", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), "0001-01-01T00:00:00.000000"},
		{"labelled with another zone", time.Date(2026, 11, 1, 1, 30, 0, 0, est), "2026-11-01T01:30:00.000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := WallMicros(tc.in)
			require.Equal(t, tc.want, WallTime(got).Format("2006-01-02T15:04:05.000000"))
		})
	}
}

func TestDate32AndTimeOfDay(t *testing.T) {
	require.Equal(t, arrow.Date32(0), Date32(time.Date(1970, 1, 1, 23, 0, 0, 0, time.UTC)))
	require.Equal(t, arrow.Date32(-719162), Date32(time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)))
	require.Equal(t, arrow.Date32(2932896), Date32(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)))
	require.Equal(t, arrow.Time64(86_399_999_999), TimeOfDayMicros(time.Date(1, 1, 1, 23, 59, 59, 999_999_900, time.UTC)))
	tod, err := parseTimeOfDay("12:00:00.000001")
	require.NoError(t, err)
	require.Equal(t, arrow.Time64(43_200_000_001), TimeOfDayMicros(tod))
}

// A SQL Server row as go-mssqldb hands it to database/sql lands in a change
// batch that meets the contract, exactly.
// TestDateTimeTick: every millisecond reading go-mssqldb gives a datetime
// maps back to its 1/300 s tick, to the microsecond.
func TestDateTimeTick(t *testing.T) {
	base := time.Date(2024, 2, 29, 12, 34, 56, 0, time.UTC)
	for _, tc := range []struct{ ms, want int }{
		{0, 0}, {3, 3333}, {7, 6667}, {10, 10000}, {13, 13333}, {997, 996667},
	} {
		got := DateTimeTick(base.Add(time.Duration(tc.ms) * time.Millisecond))
		require.Equal(t, base.Add(time.Duration(tc.want)*time.Microsecond), got, "%d ms", tc.ms)
	}
	// Every tick of a second survives the driver's rounding.
	for tick := range 300 {
		exact := base.Add(time.Duration(int64(tick) * 1e9 / 300))
		ms := exact.Round(time.Millisecond)
		require.Equal(t, exact.Round(time.Microsecond), DateTimeTick(ms), "tick %d", tick)
	}
}

func TestBatchSQLServerDriverValues(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	table := sqlServerTable(t)
	s, err := New(schemas.SQLServer, table)
	require.NoError(t, err)
	b := s.NewBatch(mem)
	defer b.Release()

	wireGUID, _ := hex.DecodeString("ff19966f868b11d0b42d00c04fc964ff")
	rv := []byte{0, 0, 0, 0, 0, 0, 0x07, 0xd1}
	rows := [][]any{
		{
			wireGUID, "0001", []byte("99999999999999999.99"), []byte("922337203685477.5807"), int64(255), true,
			time.Date(9999, 12, 31, 23, 59, 59, 997_000_000, time.UTC),
			time.Date(9999, 12, 31, 23, 59, 59, 999_999_900, time.UTC),
			time.Date(2024, 2, 29, 12, 34, 56, 500_000_000, time.FixedZone("", -5*3600)),
			"20241231", rv,
		},
		{
			wireGUID, "0001", []byte("-99999999999999999.99"), []byte("-922337203685477.5808"), int64(0), false,
			time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
			time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC),
			"", rv,
		},
		{wireGUID, "0001", nil, nil, nil, nil, nil, nil, nil, nil, rv},
	}
	for i, r := range rows {
		require.NoError(t, b.Append(r, schemas.OpInsert, int64(i+1)))
	}
	require.Equal(t, 3, b.Rows())
	require.Positive(t, b.Bytes())
	rec := b.NewRecordBatch()
	defer rec.Release()
	require.NoError(t, schemas.ValidateChangeBatch(table, rec))

	require.Equal(t, "6f9619ff-8b86-d011-b42d-00c04fc964ff", rec.Column(0).(*extensions.UUIDArray).Value(0).String())
	amount := rec.Column(2).(*array.Decimal128)
	require.Equal(t, "99999999999999999.99", amount.Value(0).ToString(2))
	require.Equal(t, "-99999999999999999.99", amount.Value(1).ToString(2))
	require.True(t, amount.IsNull(2))
	require.Equal(t, "-922337203685477.5808", rec.Column(3).(*array.Decimal128).Value(1).ToString(4))
	require.Equal(t, uint8(255), rec.Column(4).(*array.Uint8).Value(0))
	stamp := rec.Column(6).(*array.Timestamp)
	// go-mssqldb reads the tick 23:59:59.99666... as .997; the store gets
	// the tick (to the microsecond, as CAST to datetime2(6)).
	require.Equal(t, "9999-12-31T23:59:59.996667", WallTime(int64(stamp.Value(0))).Format("2006-01-02T15:04:05.000000"))
	require.Equal(t, "1753-01-01T00:00:00.000", WallTime(int64(stamp.Value(1))).Format("2006-01-02T15:04:05.000"))
	require.Equal(t, int64(253402300799999999), int64(rec.Column(7).(*array.Timestamp).Value(0)))
	require.Equal(t, time.Date(2024, 2, 29, 17, 34, 56, 500_000_000, time.UTC).UnixMicro(), int64(rec.Column(8).(*array.Timestamp).Value(0)))
	require.Equal(t, "", rec.Column(9).(*array.String).Value(1))
	require.False(t, rec.Column(9).IsNull(1), "an empty string is not NULL")
	require.Equal(t, rv, rec.Column(10).(*array.FixedSizeBinary).Value(0))
}

func TestNative(t *testing.T) {
	table := sqlServerTable(t)
	s, err := New(schemas.SQLServer, table)
	require.NoError(t, err)
	wireGUID, _ := hex.DecodeString("ff19966f868b11d0b42d00c04fc964ff")
	est := time.FixedZone("EST", -5*3600)
	tests := []struct {
		name string
		col  int
		raw  any
		want any
	}{
		{"guid in RFC order", 0, wireGUID, uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")},
		{"varchar", 1, "0001", "0001"},
		{"decimal text", 2, []byte("-0.50"), "-0.50"},
		{"tinyint", 4, int64(7), int64(7)},
		{"datetime wall clock", 6, time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, est), time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, time.UTC)},
		{"rowversion", 10, []byte{1, 2, 3, 4, 5, 6, 7, 8}, []byte{1, 2, 3, 4, 5, 6, 7, 8}},
		{"null", 2, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Native(tc.col, tc.raw)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
	_, err = s.Native(4, "4x2-secret")
	require.Error(t, err)
	require.NotContains(t, err.Error(), "4x2-secret", "errors never carry values")
}

// A row version read from the synthetic PostgreSQL source's bigint becomes
// its big-endian bytes; PostgreSQL's text forms of uuid, numeric and time
// convert exactly.
func TestBatchPostgresDriverValues(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	table := sqlServerTable(t)
	s, err := New(schemas.Postgres, table)
	require.NoError(t, err)
	b := s.NewBatch(mem)
	defer b.Release()
	require.NoError(t, b.Append([]any{
		"6f9619ff-8b86-d011-b42d-00c04fc964ff", "0001", "-125.40", "12.3400", int64(3), true,
		time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, time.UTC),
		time.Date(2026, 1, 5, 8, 0, 0, 123_456_000, time.UTC),
		time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC),
		"YYYYMMDD", int64(2001),
	}, schemas.OpUpdate, 1))
	rec := b.NewRecordBatch()
	defer rec.Release()
	require.NoError(t, schemas.ValidateChangeBatch(table, rec))
	require.Equal(t, "6f9619ff-8b86-d011-b42d-00c04fc964ff", rec.Column(0).(*extensions.UUIDArray).Value(0).String())
	require.Equal(t, "-125.40", rec.Column(2).(*array.Decimal128).Value(0).ToString(2))
	require.Equal(t, []byte{0, 0, 0, 0, 0, 0, 0x07, 0xd1}, rec.Column(10).(*array.FixedSizeBinary).Value(0))
}

func sqlServerTable(t *testing.T) *schemas.Table {
	t.Helper()
	cols := []struct{ name, typ string }{
		{"id", "uniqueidentifier"},
		{"practice_id", "char(4)"},
		{"amount", "numeric(19,2)"},
		{"fee", "money"},
		{"count", "tinyint"},
		{"flag", "bit"},
		{"modify_timestamp", "datetime"},
		{"precise", "datetime2(7)"},
		{"posted", "datetimeoffset(7)"},
		{"service_date", "varchar(8)"},
		{"row_timestamp", "rowversion"},
	}
	table := &schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer, Key: []string{"id"},
		RowVersion: "row_timestamp", ModifiedAt: "modify_timestamp", Practice: "practice_id"}
	for _, c := range cols {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err)
		table.Columns = append(table.Columns, schemas.Column{Name: c.name, Type: typ, Nullable: c.name != "id" && c.name != "row_timestamp"})
	}
	require.NoError(t, table.Validate())
	return table
}
