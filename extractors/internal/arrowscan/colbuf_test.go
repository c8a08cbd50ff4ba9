package arrowscan

import (
	"bytes"
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// TestBatchEqualsBuilders appends rows to one Batch and builds the same
// rows with Arrow's builders (the oracle: what a Batch built before its
// columns were colBufs), and requires the same arrays, value and offset
// bytes included, for every Arrow type a column can have: NULLs first, in
// the middle and last, no NULL, only NULLs, no row, empty strings and
// binaries, and enough rows to outgrow Reserve. Each record batch must be
// unchanged after the batch has gone on to the next ones.
func TestBatchEqualsBuilders(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)

	dec := func(s string) decimal128.Num {
		n, err := decimal128.FromString(s, 19, 2)
		require.NoError(t, err)
		return n
	}
	// Each column's three values, as pgx's database/sql driver hands them
	// over (raw) and as the builder takes them (want).
	type value struct{ raw, want any }
	cols := []struct {
		name, typ string
		vals      [3]value
	}{
		{"tiny", "tinyint", [3]value{{int64(0), uint8(0)}, {int64(255), uint8(255)}, {int64(7), uint8(7)}}},
		{"small", "smallint", [3]value{{int64(math.MinInt16), int16(math.MinInt16)}, {int64(math.MaxInt16), int16(math.MaxInt16)}, {int64(-2), int16(-2)}}},
		{"num", "int", [3]value{{int64(math.MinInt32), int32(math.MinInt32)}, {int64(math.MaxInt32), int32(math.MaxInt32)}, {int64(1), int32(1)}}},
		{"big", "bigint", [3]value{{int64(math.MinInt64), int64(math.MinInt64)}, {int64(math.MaxInt64), int64(math.MaxInt64)}, {int64(-1), int64(-1)}}},
		{"flag", "bit", [3]value{{true, true}, {false, false}, {true, true}}},
		{"amt", "numeric(19,2)", [3]value{
			{"-99999999999999999.99", dec("-99999999999999999.99")}, {"99999999999999999.99", dec("99999999999999999.99")}, {"-125.40", dec("-125.40")}}},
		{"r", "real", [3]value{{1.5, float32(1.5)}, {-3.4e38, float32(-3.4e38)}, {0.0, float32(0)}}},
		{"f", "float", [3]value{{2.25, 2.25}, {math.MaxFloat64, math.MaxFloat64}, {5e-324, 5e-324}}},
		{"code", "varchar(8)", [3]value{{"", ""}, {"héllo", "héllo"}, {"ab", "ab"}}},
		{"guid", "uniqueidentifier", [3]value{
			{"6f9619ff-8b86-d011-b42d-00c04fc964ff", uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")},
			{"00000000-0000-0000-0000-000000000000", uuid.UUID{}},
			{"ffffffff-ffff-ffff-ffff-ffffffffffff", uuid.MustParse("ffffffff-ffff-ffff-ffff-ffffffffffff")}}},
		{"day", "date", [3]value{
			{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), arrow.Date32(0)},
			{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), arrow.Date32(-719162)},
			{time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), arrow.Date32(2932896)}}},
		{"at", "time(6)", [3]value{
			{"12:00:00.000001", arrow.Time64(43_200_000_001)},
			{time.Date(0, 1, 1, 23, 59, 59, 999_999_000, time.UTC), arrow.Time64(86_399_999_999)},
			{"00:00:00", arrow.Time64(0)}}},
		{"precise", "datetime2(6)", [3]value{
			{time.Date(1970, 1, 1, 0, 0, 0, 1000, time.UTC), arrow.Timestamp(1)},
			{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), arrow.Timestamp(-62135596800000000)},
			{time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), arrow.Timestamp(946684800000000)}}},
		{"posted", "datetimeoffset(7)", [3]value{
			{time.Date(2024, 2, 29, 12, 34, 56, 500_000_000, time.FixedZone("", -5*3600)), arrow.Timestamp(1709228096500000)},
			{time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC), arrow.Timestamp(0)},
			{time.Date(1969, 12, 31, 23, 59, 59, 999_999_000, time.UTC), arrow.Timestamp(-1)}}},
		{"blob", "varbinary(max)", [3]value{{[]byte{}, []byte{}}, {[]byte{0xde, 0xad, 0xbe, 0xef}, []byte{0xde, 0xad, 0xbe, 0xef}}, {[]byte{0}, []byte{0}}}},
		{"rv", "rowversion", [3]value{
			{int64(2001), []byte{0, 0, 0, 0, 0, 0, 0x07, 0xd1}},
			{int64(0), []byte{0, 0, 0, 0, 0, 0, 0, 0}},
			{int64(math.MaxInt64), []byte{0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}}},
	}
	table := &schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer, Key: []string{"k"}}
	for _, c := range append([]struct {
		name, typ string
		vals      [3]value
	}{{name: "k", typ: "bigint"}}, cols...) {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err, c.typ)
		table.Columns = append(table.Columns, schemas.Column{Name: c.name, Type: typ, Nullable: c.name != "k"})
	}
	require.NoError(t, table.Validate())
	s, err := New(schemas.Postgres, table)
	require.NoError(t, err)
	for i, c := range s.cols {
		if i > 0 {
			require.Equal(t, c.arrow.ID() == arrow.EXTENSION, c.name == "guid", "only guid is an extension type")
		}
	}

	// A batch's rows: -1 is a NULL in every column but k, i the i-th value.
	many := make([]int, 1000)
	for i := range many {
		many[i] = i % 3
		if i%7 == 3 {
			many[i] = -1
		}
	}
	batches := []struct {
		name    string
		reserve int // Reserve's rows (with the last batch's DataLens), when > 0
		rows    []int
	}{
		{name: "NULLs first, in the middle and last", reserve: 2, rows: []int{-1, 0, 1, -1, 2, -1}},
		{name: "no NULL", rows: []int{2, 1, 0}},
		{name: "only NULLs", rows: []int{-1, -1, -1, -1, -1, -1, -1, -1, -1}},
		{name: "no row", rows: nil},
		{name: "one empty string", rows: []int{0}},
		{name: "many rows", reserve: 10, rows: many},
		{name: "many rows reserved", reserve: 1000, rows: many},
	}
	b := s.NewBatch(mem)
	defer b.Release()
	var got, want []arrow.RecordBatch
	defer func() {
		for _, r := range append(got, want...) {
			r.Release()
		}
	}()
	var hint []int
	for bi, bt := range batches {
		if bt.reserve > 0 {
			b.Reserve(bt.reserve, hint)
		}
		rb := array.NewRecordBuilder(mem, s.Schema())
		data := make([]int, len(s.cols))
		for ri, v := range bt.rows {
			raw := []any{int64(ri)}
			appendWant(t, rb.Field(0), int64(ri))
			for ci, c := range cols {
				f := rb.Field(ci + 1)
				if v < 0 {
					raw = append(raw, nil)
					f.AppendNull()
					continue
				}
				raw = append(raw, c.vals[v].raw)
				appendWant(t, f, c.vals[v].want)
				switch w := c.vals[v].want.(type) {
				case string:
					data[ci+1] += len(w)
				case []byte:
					if s.cols[ci+1].arrow.ID() == arrow.BINARY {
						data[ci+1] += len(w)
					}
				}
			}
			require.NoError(t, b.Append(raw, schemas.OpUpdate, int64(100+ri)))
			n := len(s.cols)
			rb.Field(n).(*array.Int8Builder).Append(int8(schemas.OpUpdate))
			rb.Field(n + 1).(*array.Int64Builder).Append(int64(100 + ri))
			rb.Field(n + 2).AppendNull()
		}
		require.Equal(t, len(bt.rows), b.Rows(), bt.name)
		require.Equal(t, data, b.DataLens(), bt.name)
		hint = b.DataLens()
		got = append(got, b.NewRecordBatch())
		want = append(want, rb.NewRecordBatch())
		rb.Release()
		require.Zero(t, b.Rows())
		require.Equal(t, make([]int, len(s.cols)), b.DataLens(), "%s: NewRecordBatch empties the batch", bt.name)
		require.NoError(t, schemas.ValidateChangeBatch(table, got[bi]), bt.name)
		requireSameRecord(t, want[bi], got[bi], bt.name)
	}
	for bi, bt := range batches {
		requireSameRecord(t, want[bi], got[bi], bt.name+", after the later batches")
	}
	// Rows never made a record batch go back to the allocator with the
	// batch's (deferred) Release.
	b.Reserve(len(cols[0].vals), hint)
	for ri := range cols[0].vals {
		raw := []any{int64(ri)}
		for _, c := range cols {
			raw = append(raw, c.vals[ri].raw)
		}
		require.NoError(t, b.Append(raw, schemas.OpInsert, int64(ri)))
	}
}

// appendWant appends v, of the Go type b's Append takes, to b.
func appendWant(t *testing.T, b array.Builder, v any) {
	t.Helper()
	switch b := b.(type) {
	case *array.Uint8Builder:
		b.Append(v.(uint8))
	case *array.Int16Builder:
		b.Append(v.(int16))
	case *array.Int32Builder:
		b.Append(v.(int32))
	case *array.Int64Builder:
		b.Append(v.(int64))
	case *array.BooleanBuilder:
		b.Append(v.(bool))
	case *array.Decimal128Builder:
		b.Append(v.(decimal128.Num))
	case *array.Float32Builder:
		b.Append(v.(float32))
	case *array.Float64Builder:
		b.Append(v.(float64))
	case *array.StringBuilder:
		b.Append(v.(string))
	case *extensions.UUIDBuilder:
		b.Append(v.(uuid.UUID))
	case *array.Date32Builder:
		b.Append(v.(arrow.Date32))
	case *array.Time64Builder:
		b.Append(v.(arrow.Time64))
	case *array.TimestampBuilder:
		b.Append(v.(arrow.Timestamp))
	case *array.BinaryBuilder:
		b.Append(v.([]byte))
	case *array.FixedSizeBinaryBuilder:
		b.Append(v.([]byte))
	default:
		t.Fatalf("no oracle for %T", b)
	}
}

// requireSameRecord requires got to hold what want holds: the same types,
// lengths, NULLs and values, and the same value (and offset) bytes.
func requireSameRecord(t *testing.T, want, got arrow.RecordBatch, name string) {
	t.Helper()
	require.True(t, want.Schema().Equal(got.Schema()), name)
	require.Equal(t, want.NumRows(), got.NumRows(), name)
	for c := 0; c < int(want.NumCols()); c++ {
		w, g := want.Column(c), got.Column(c)
		msg := fmt.Sprintf("%s: column %s", name, want.ColumnName(c))
		require.True(t, arrow.TypeEqual(w.DataType(), g.DataType()), msg)
		require.Equal(t, w.Len(), g.Len(), msg)
		require.Equal(t, w.NullN(), g.NullN(), msg)
		require.Zero(t, g.Data().Offset(), msg)
		require.True(t, array.Equal(w, g), "%s:\n%v\n%v", msg, w, g)
		for i := 0; i < w.Len(); i++ {
			require.Equal(t, w.IsNull(i), g.IsNull(i), "%s: row %d", msg, i)
		}
		if v, ok := g.(interface{ ValidateFull() error }); ok {
			require.NoError(t, v.ValidateFull(), msg)
		}
		require.Len(t, g.Data().Buffers(), len(w.Data().Buffers()), msg)
		var wb, gb [][]byte // nil for a buffer left out (a builder's of no value, a colBuf's validity without NULLs)
		for i := range w.Data().Buffers() {
			wb, gb = append(wb, bufBytes(w.Data().Buffers()[i])), append(gb, bufBytes(g.Data().Buffers()[i]))
		}
		switch dt := g.DataType().(type) {
		case *arrow.BooleanType:
			for i := 0; i < w.Len(); i++ {
				if w.IsValid(i) {
					require.Equal(t, w.(*array.Boolean).Value(i), g.(*array.Boolean).Value(i), "%s: row %d", msg, i)
				}
			}
		case *arrow.StringType, *arrow.BinaryType:
			wo, go_ := arrow.Int32Traits.CastFromBytes(wb[1])[:w.Len()+1], arrow.Int32Traits.CastFromBytes(gb[1])
			require.Equal(t, wo, go_, "%s: offsets", msg)
			require.True(t, bytes.Equal(wb[2][:wo[w.Len()]], gb[2]), "%s: data", msg)
		default:
			width := 16 // the UUID extension's storage
			if fw, ok := dt.(arrow.FixedWidthDataType); ok {
				width = fw.BitWidth() / 8
			}
			n := w.Len() * width
			require.Len(t, gb[1], n, msg)
			require.True(t, bytes.Equal(wb[1][:n], gb[1]), "%s: values\n%x\n%x", msg, wb[1][:n], gb[1])
		}
	}
}

func bufBytes(b *memory.Buffer) []byte {
	if b == nil {
		return nil
	}
	return b.Bytes()
}
