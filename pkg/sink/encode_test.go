package sink

import (
	"bytes"
	"encoding/binary"
	"io"
	"math"
	"math/big"
	"sync/atomic"
	"testing"
	"testing/iotest"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"
)

// encodeCase is one (Arrow type, store type) pair with values to encode;
// nil values are NULL.
type encodeCase struct {
	name   string
	typ    string // store type, PostgreSQL's spelling
	oid    uint32
	arrow  arrow.DataType
	values []any
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func encodeCases() []encodeCase {
	dec := func(p, s int32) arrow.DataType { return &arrow.Decimal128Type{Precision: p, Scale: s} }
	tsUs, tsTz := &arrow.TimestampType{Unit: arrow.Microsecond}, &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}
	return []encodeCase{
		{"bool", "boolean", pgtype.BoolOID, arrow.FixedWidthTypes.Boolean, []any{true, false, nil}},
		{"int8", "smallint", pgtype.Int2OID, arrow.PrimitiveTypes.Int8, []any{int8(-128), int8(127), int8(0), nil}},
		{"uint8", "smallint", pgtype.Int2OID, arrow.PrimitiveTypes.Uint8, []any{uint8(0), uint8(255), nil}},
		{"int16", "smallint", pgtype.Int2OID, arrow.PrimitiveTypes.Int16, []any{int16(math.MinInt16), int16(math.MaxInt16), nil}},
		{"int32", "integer", pgtype.Int4OID, arrow.PrimitiveTypes.Int32, []any{int32(math.MinInt32), int32(7), int32(math.MaxInt32), nil}},
		{"int64", "bigint", pgtype.Int8OID, arrow.PrimitiveTypes.Int64, []any{int64(math.MinInt64), int64(-1), int64(math.MaxInt64), nil}},
		{"float32", "real", pgtype.Float4OID, arrow.PrimitiveTypes.Float32, []any{float32(1.5), float32(math.Inf(-1)), float32(math.NaN()), float32(math.Copysign(0, -1)), nil}},
		{"float64", "double precision", pgtype.Float8OID, arrow.PrimitiveTypes.Float64, []any{2.5e300, math.Inf(1), math.NaN(), -1e-300, nil}},
		{"text", "text", pgtype.TextOID, arrow.BinaryTypes.String, []any{"", "Zoë 😀 𝄞", "99991231", nil}},
		{"char", "character(4)", pgtype.BPCharOID, arrow.BinaryTypes.String, []any{"0001", "ab", nil}},
		{"varchar", "character varying(20)", pgtype.VarcharOID, arrow.BinaryTypes.String, []any{"x", nil}},
		{"large_text", "text", pgtype.TextOID, arrow.BinaryTypes.LargeString, []any{"large", nil}},
		{"binary", "bytea", pgtype.ByteaOID, arrow.BinaryTypes.Binary, []any{[]byte{}, []byte{0, 1, 0xfe, 0xff}, nil}},
		{"large_binary", "bytea", pgtype.ByteaOID, arrow.BinaryTypes.LargeBinary, []any{[]byte{9}, nil}},
		{"rowversion", "bytea", pgtype.ByteaOID, &arrow.FixedSizeBinaryType{ByteWidth: 8}, []any{[]byte{0, 0, 0, 0, 0, 0, 0x12, 0x34}, nil}},
		{"uuid", "uuid", pgtype.UUIDOID, extensions.NewUUIDType(), []any{uuid.MustParse("6f1c2a4e-8d3b-4c7a-9e21-0b5d7f3a9c10"), uuid.Nil, nil}},
		{"numeric_19_2", "numeric(19,2)", pgtype.NumericOID, dec(19, 2), []any{"0", "0.01", "0.10", "1", "100", "12345.67", "-0.5", "99999999999999999.99", "-99999999999999999.99", nil}},
		{"numeric_12_0", "numeric(12,0)", pgtype.NumericOID, dec(12, 0), []any{"0", "1", "10000", "123456789012", "-100000000", nil}},
		{"numeric_19_4", "numeric(19,4)", pgtype.NumericOID, dec(19, 4), []any{"-922337203685477.5808", "922337203685477.5807", "0.0001", nil}},
		{"numeric_5_5", "numeric(5,5)", pgtype.NumericOID, dec(5, 5), []any{"0.00001", "-0.99999", "0", nil}},
		{"numeric_38_10", "numeric(38,10)", pgtype.NumericOID, dec(38, 10), []any{"-1234567890123456789012345678.0123456789", "9999999999999999999999999999.9999999999", "0.0000000001", "1", "0", nil}},
		{"numeric_38_20", "numeric(38,20)", pgtype.NumericOID, dec(38, 20), []any{"123456789012345678.12345678901234567890", "-0.00000000000000000001", nil}},
		{"date", "date", pgtype.DateOID, arrow.FixedWidthTypes.Date32, []any{ts("0001-01-01T00:00:00Z"), ts("1969-12-31T00:00:00Z"), ts("2000-01-01T00:00:00Z"), ts("9999-12-31T00:00:00Z"), nil}},
		{"time_us", "time(3) without time zone", pgtype.TimeOID, arrow.FixedWidthTypes.Time64us, []any{13*time.Hour + 5*time.Minute + 250*time.Millisecond, time.Duration(0), 24*time.Hour - time.Microsecond, nil}},
		{"time_ns", "time without time zone", pgtype.TimeOID, arrow.FixedWidthTypes.Time64ns, []any{time.Hour + 1500*time.Nanosecond, nil}},
		{"timestamp", "timestamp(3) without time zone", pgtype.TimestampOID, tsUs, []any{ts("1753-01-01T00:00:00Z"), ts("9999-12-31T23:59:59.997Z"), ts("2026-11-23T01:02:03.123456Z"), nil}},
		{"timestamp_s", "timestamp(0) without time zone", pgtype.TimestampOID, &arrow.TimestampType{Unit: arrow.Second}, []any{ts("1900-06-01T12:00:00Z"), nil}},
		{"timestamp_ms", "timestamp without time zone", pgtype.TimestampOID, &arrow.TimestampType{Unit: arrow.Millisecond}, []any{ts("1999-12-31T23:59:59.999Z"), nil}},
		{"timestamp_ns", "timestamp(6) without time zone", pgtype.TimestampOID, &arrow.TimestampType{Unit: arrow.Nanosecond}, []any{ts("1969-12-31T23:59:59.999999999Z"), ts("2026-01-01T00:00:00.000001999Z"), nil}},
		{"timestamptz", "timestamp(3) with time zone", pgtype.TimestamptzOID, tsTz, []any{ts("2026-11-22T19:32:03.005Z"), ts("0001-01-01T00:00:00Z"), nil}},
	}
}

// build makes one column of c's values.
func (c encodeCase) build(t *testing.T, mem memory.Allocator) arrow.Array {
	t.Helper()
	b := array.NewBuilder(mem, c.arrow)
	defer b.Release()
	for _, v := range c.values {
		if v == nil {
			b.AppendNull()
			continue
		}
		switch bb := b.(type) {
		case *array.BooleanBuilder:
			bb.Append(v.(bool))
		case *array.Int8Builder:
			bb.Append(v.(int8))
		case *array.Uint8Builder:
			bb.Append(v.(uint8))
		case *array.Int16Builder:
			bb.Append(v.(int16))
		case *array.Int32Builder:
			bb.Append(v.(int32))
		case *array.Int64Builder:
			bb.Append(v.(int64))
		case *array.Float32Builder:
			bb.Append(v.(float32))
		case *array.Float64Builder:
			bb.Append(v.(float64))
		case *array.StringBuilder:
			bb.Append(v.(string))
		case *array.LargeStringBuilder:
			bb.Append(v.(string))
		case *array.BinaryBuilder:
			bb.Append(v.([]byte))
		case *array.FixedSizeBinaryBuilder:
			bb.Append(v.([]byte))
		case *extensions.UUIDBuilder:
			bb.Append(v.(uuid.UUID))
		case *array.Decimal128Builder:
			n, err := decimal128.FromString(v.(string), c.arrow.(*arrow.Decimal128Type).Precision, c.arrow.(*arrow.Decimal128Type).Scale)
			require.NoError(t, err)
			bb.Append(n)
		case *array.Date32Builder:
			bb.Append(arrow.Date32FromTime(v.(time.Time)))
		case *array.Time64Builder:
			d := v.(time.Duration)
			if c.arrow.(*arrow.Time64Type).Unit == arrow.Microsecond {
				bb.Append(arrow.Time64(d / time.Microsecond))
			} else {
				bb.Append(arrow.Time64(d))
			}
		case *array.TimestampBuilder:
			ts, err := arrow.TimestampFromTime(v.(time.Time), c.arrow.(*arrow.TimestampType).Unit)
			require.NoError(t, err)
			bb.Append(ts)
		default:
			t.Fatalf("%s: no builder case for %T", c.name, b)
		}
	}
	return b.NewArray()
}

// TestCopyEncoderEqualsPgx encodes every covered (Arrow type, store type)
// pair with the direct encoder and with pgx's (the recordSource conversion
// and pgx's binary codec for the store type): the bytes are equal, and for
// numerics (pgx does not normalize) the decoded values and display scales are.
func TestCopyEncoderEqualsPgx(t *testing.T) {
	m := pgtype.NewMap()
	for _, c := range encodeCases() {
		t.Run(c.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
			defer mem.AssertSize(t, 0)
			col := c.build(t, mem)
			defer col.Release()
			direct := fieldEncoderFor(col, c.typ)
			require.NotNil(t, direct, "%s → %s has no direct encoding", c.arrow, c.typ)
			conv, err := converter(col)
			require.NoError(t, err)
			for i := range c.values {
				got := direct(nil, i)
				// A non-nil buffer: pgx returns nil only for NULL.
				want, err := m.Encode(c.oid, pgtype.BinaryFormatCode, conv(i), []byte{})
				require.NoError(t, err)
				require.Equal(t, col.IsNull(i), want == nil, "row %d: NULL", i)
				if want == nil {
					require.Equal(t, []byte{0xff, 0xff, 0xff, 0xff}, got, "row %d: NULL", i)
					continue
				}
				require.Equal(t, uint32(len(got)-4), binary.BigEndian.Uint32(got), "row %d: length prefix", i)
				got = got[4:]
				if c.oid == pgtype.NumericOID {
					require.Equal(t, want[6:8], got[6:8], "row %d (%v): display scale", i, c.values[i])
					require.Zero(t, numericRat(t, m, want).Cmp(numericRat(t, m, got)), "row %d (%v)", i, c.values[i])
					continue
				}
				require.Equal(t, want, got, "row %d (%v)", i, c.values[i])
			}
		})
	}
}

func numericRat(t *testing.T, m *pgtype.Map, b []byte) *big.Rat {
	t.Helper()
	var n pgtype.Numeric
	require.NoError(t, m.Scan(pgtype.NumericOID, pgtype.BinaryFormatCode, b, &n))
	r := new(big.Rat).SetInt(n.Int)
	e := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(max(n.Exp, -n.Exp))), nil))
	if n.Exp < 0 {
		return r.Quo(r, e)
	}
	return r.Mul(r, e)
}

// Pairs the direct encoder does not cover fall back to pgx's.
func TestCopyEncoderLeavesUncoveredPairsToPgx(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	for _, c := range []struct{ typ string }{{"numeric"}, {"jsonb"}, {"json"}, {"integer"}} {
		b := array.NewStringBuilder(mem)
		b.Append("1")
		col := b.NewArray()
		require.Nil(t, fieldEncoderFor(col, c.typ), c.typ)
		col.Release()
		b.Release()
	}
}

// The COPY stream has the header, every row, and the trailer, whatever the
// reader's buffer size.
func TestCopyEncoderStream(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.DefaultAllocator)
	defer mem.AssertSize(t, 0)
	const rows = 20000
	ib := array.NewInt64Builder(mem)
	defer ib.Release()
	sb := array.NewStringBuilder(mem)
	defer sb.Release()
	for i := range rows {
		ib.Append(int64(i))
		sb.Append("row")
	}
	ic, sc := ib.NewArray(), sb.NewArray()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "i", Type: ic.DataType()}, {Name: "s", Type: sc.DataType()}}, nil), []arrow.Array{ic, sc}, rows)
	defer rec.Release()
	ic.Release()
	sc.Release()

	enc, ok := newCopyEncoder(rec, []string{"bigint", "text"})
	require.True(t, ok)
	all, err := io.ReadAll(enc)
	require.NoError(t, err)
	const header, row = 19, 2 + 4 + 8 + 4 + 3
	require.Len(t, all, header+rows*row+2)
	require.True(t, bytes.HasPrefix(all, []byte("PGCOPY\n\xff\r\n\x00")))
	require.True(t, bytes.HasSuffix(all, []byte{0xff, 0xff}))

	enc, _ = newCopyEncoder(rec, []string{"bigint", "text"})
	small, err := io.ReadAll(iotest.OneByteReader(enc))
	require.NoError(t, err)
	require.Equal(t, all, small)
	// Reads of any size: rows are encoded straight into the caller's
	// buffer, and a row that does not fit is handed out in pieces.
	for _, size := range []int{2, 7, row - 1, row, row + 1, 3*row + 5, 4096, 1 << 16} {
		enc, _ = newCopyEncoder(rec, []string{"bigint", "text"})
		var got []byte
		p := make([]byte, size)
		for {
			n, err := enc.Read(p)
			got = append(got, p[:n]...)
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			require.Positive(t, n, "read of %d bytes", size)
		}
		require.Equal(t, all, got, "reads of %d bytes", size)
	}

	// Reading into the driver's 64 KB buffer allocates nothing per read:
	// rows go straight into it, and none crosses its end.
	const runs = 5
	encs := make([]*copyEncoder, runs+1)
	for i := range encs {
		encs[i], _ = newCopyEncoder(rec, []string{"bigint", "text"})
		encs[i].buf = make([]byte, 0, 64) // the header
	}
	p := make([]byte, 1<<16)
	next := 0
	allocs := testing.AllocsPerRun(runs, func() {
		enc := encs[next]
		next++
		for {
			if _, err := enc.Read(p); err != nil {
				break
			}
		}
	})
	require.Zero(t, allocs, "allocations per pass over %d bytes", len(all))

	_, ok = newCopyEncoder(rec, []string{"bigint", "jsonb"})
	require.False(t, ok, "an uncovered column sends the batch through pgx")
}

// TestGuardedReaderStopsReadsAtClose: after close, a read in flight has
// finished and no later read reaches the Arrow memory.
func TestGuardedReaderStopsReadsAtClose(t *testing.T) {
	inRead, release := make(chan struct{}), make(chan struct{})
	var reads atomic.Int32
	g := &guardedReader{r: readerFunc(func(p []byte) (int, error) {
		if reads.Add(1) == 1 {
			close(inRead)
			<-release
		}
		return len(p), nil
	})}
	go func() { _, _ = g.Read(make([]byte, 8)) }()
	<-inRead
	closed := make(chan struct{})
	go func() { g.close(); close(closed) }()
	require.Never(t, func() bool {
		select {
		case <-closed:
			return true
		default:
			return false
		}
	}, 50*time.Millisecond, 5*time.Millisecond, "close returned while a read was in flight")
	close(release)
	<-closed
	n, err := g.Read(make([]byte, 8))
	require.ErrorIs(t, err, io.ErrClosedPipe)
	require.Zero(t, n)
	require.Equal(t, int32(1), reads.Load(), "a read reached the reader after close")
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }
