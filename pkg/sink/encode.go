package sink

import (
	"encoding/binary"
	"io"
	"math"
	"math/big"
	"strings"
	"sync"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
)

// copyEncoder writes a record batch in PostgreSQL's binary COPY format
// straight from its Arrow columns: no per-value boxing, decimals from the
// scaled integer, timestamps and UUIDs without allocation. It covers the
// (Arrow type, store type) pairs below; newCopyEncoder reports false for
// anything else and the caller uses pgx's encoder (recordSource) instead.
// Its output equals pgx's for every covered pair (encode_test.go).
//
// copyEncoder is an io.Reader over the whole COPY stream. The caller keeps
// ownership of the batch, which must outlive the reader.
type copyEncoder struct {
	fields []fieldEncoder
	rows   int
	row    int
	buf    []byte // the part of a row that did not fit the last Read's p
	off    int    // how much of buf was handed out
	maxRow int    // the longest row encoded so far
	state  int    // 0: header not written; 1: rows; 2: trailer written
}

// fieldEncoder appends row i of one column as a COPY field: its length and
// bytes, or length -1 for NULL.
type fieldEncoder func(b []byte, i int) []byte

// pgEpochMicros is 2000-01-01 (PostgreSQL's epoch) in Unix microseconds;
// pgEpochDays the same in days.
const (
	pgEpochMicros = 946_684_800_000_000
	pgEpochDays   = 10_957
)

// newCopyEncoder returns an encoder for rec whose columns go to store
// columns of the given types (PostgreSQL's format_type spelling), or false
// when some column has no direct encoding.
func newCopyEncoder(rec arrow.RecordBatch, pgTypes []string) (*copyEncoder, bool) {
	if int(rec.NumCols()) != len(pgTypes) {
		return nil, false
	}
	e := &copyEncoder{rows: int(rec.NumRows()), fields: make([]fieldEncoder, len(pgTypes))}
	for c, typ := range pgTypes {
		f := fieldEncoderFor(rec.Column(c), typ)
		if f == nil {
			return nil, false
		}
		e.fields[c] = f
	}
	return e, true
}

// Read encodes rows straight into p while they fit: it stops when the
// longest row so far might not. A row longer than any before that crosses
// the end of p, or a p shorter than a row, leaves the rest of the row in
// buf, handed out first on the next calls.
func (e *copyEncoder) Read(p []byte) (int, error) {
	if e.state == 0 {
		e.buf = append(e.buf[:0], "PGCOPY\n\xff\r\n\x00"...)
		e.buf = append(e.buf, 0, 0, 0, 0, 0, 0, 0, 0) // flags, header extension length
		e.off, e.state = 0, 1
	}
	if e.off < len(e.buf) {
		n := copy(p, e.buf[e.off:])
		e.off += n
		return n, nil
	}
	if e.state == 2 {
		return 0, io.EOF
	}
	out := p[:0:len(p)] // never past len(p), whatever p's capacity
	for e.state == 1 {
		if e.row == e.rows {
			if len(out)+2 > len(p) {
				break
			}
			out = append(out, 0xff, 0xff)
			e.state = 2
			break
		}
		if len(out)+e.maxRow > len(p) {
			break
		}
		mark := len(out)
		out = e.appendRow(out)
		e.maxRow = max(e.maxRow, len(out)-mark)
		if len(out) > len(p) {
			// out outgrew p and moved: p holds out[:mark].
			e.buf, e.off = append(e.buf[:0], out[mark:]...), 0
			if mark > 0 {
				return mark, nil
			}
			out = out[:0]
			break
		}
	}
	if len(out) > 0 {
		return len(out), nil
	}
	if e.off == len(e.buf) { // p is shorter than the next row or the trailer
		if e.row == e.rows {
			e.buf, e.state = append(e.buf[:0], 0xff, 0xff), 2
		} else {
			e.buf = e.appendRow(e.buf[:0])
		}
		e.off = 0
	}
	n := copy(p, e.buf)
	e.off = n
	return n, nil
}

// appendRow appends the next row and moves past it.
func (e *copyEncoder) appendRow(b []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.fields)))
	for _, f := range e.fields {
		b = f(b, e.row)
	}
	e.row++
	return b
}

func appendNull(b []byte) []byte { return append(b, 0xff, 0xff, 0xff, 0xff) }

func appendInt16(b []byte, v int16) []byte {
	b = append(b, 0, 0, 0, 2)
	return binary.BigEndian.AppendUint16(b, uint16(v))
}

func appendInt32(b []byte, v int32) []byte {
	b = append(b, 0, 0, 0, 4)
	return binary.BigEndian.AppendUint32(b, uint32(v))
}

func appendInt64(b []byte, v int64) []byte {
	b = append(b, 0, 0, 0, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func appendBytes[T string | []byte](b []byte, v T) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
	return append(b, v...)
}

// nullable wraps f with the column's validity.
func nullable(col arrow.Array, f fieldEncoder) fieldEncoder {
	if col.NullN() == 0 {
		return f
	}
	return func(b []byte, i int) []byte {
		if col.IsNull(i) {
			return appendNull(b)
		}
		return f(b, i)
	}
}

// fieldEncoderFor returns the encoder of col into a store column of type
// typ, or nil when the pair is not covered.
func fieldEncoderFor(col arrow.Array, typ string) fieldEncoder {
	var f fieldEncoder
	switch a := col.(type) {
	case *array.Boolean:
		if typ == "boolean" {
			f = func(b []byte, i int) []byte {
				if a.Value(i) {
					return append(b, 0, 0, 0, 1, 1)
				}
				return append(b, 0, 0, 0, 1, 0)
			}
		}
	case *array.Int8:
		if typ == "smallint" {
			f = func(b []byte, i int) []byte { return appendInt16(b, int16(a.Value(i))) }
		}
	case *array.Uint8:
		if typ == "smallint" {
			f = func(b []byte, i int) []byte { return appendInt16(b, int16(a.Value(i))) }
		}
	case *array.Int16:
		if typ == "smallint" {
			f = func(b []byte, i int) []byte { return appendInt16(b, a.Value(i)) }
		}
	case *array.Int32:
		if typ == "integer" {
			f = func(b []byte, i int) []byte { return appendInt32(b, a.Value(i)) }
		}
	case *array.Int64:
		if typ == "bigint" {
			f = func(b []byte, i int) []byte { return appendInt64(b, a.Value(i)) }
		}
	case *array.Float32:
		if typ == "real" {
			f = func(b []byte, i int) []byte { return appendInt32(b, int32(math.Float32bits(a.Value(i)))) }
		}
	case *array.Float64:
		if typ == "double precision" {
			f = func(b []byte, i int) []byte { return appendInt64(b, int64(math.Float64bits(a.Value(i)))) }
		}
	case *array.String:
		if isTextType(typ) {
			f = func(b []byte, i int) []byte { return appendBytes(b, a.Value(i)) }
		}
	case *array.LargeString:
		if isTextType(typ) {
			f = func(b []byte, i int) []byte { return appendBytes(b, a.Value(i)) }
		}
	case *array.Binary:
		if typ == "bytea" {
			f = func(b []byte, i int) []byte { return appendBytes(b, a.Value(i)) }
		}
	case *array.LargeBinary:
		if typ == "bytea" {
			f = func(b []byte, i int) []byte { return appendBytes(b, a.Value(i)) }
		}
	case *array.FixedSizeBinary:
		if typ == "bytea" {
			f = func(b []byte, i int) []byte { return appendBytes(b, a.Value(i)) }
		}
	case *extensions.UUIDArray:
		if typ == "uuid" {
			storage := a.Storage().(*array.FixedSizeBinary)
			f = func(b []byte, i int) []byte { return appendBytes(b, storage.Value(i)) }
		}
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		if strings.HasPrefix(typ, "numeric(") && scale >= 0 {
			f = func(b []byte, i int) []byte { return appendNumeric(b, a.Value(i), scale) }
		}
	case *array.Date32:
		if typ == "date" {
			f = func(b []byte, i int) []byte { return appendInt32(b, int32(a.Value(i))-pgEpochDays) }
		}
	case *array.Time64:
		if isTimeType(typ) {
			div := int64(1)
			if a.DataType().(*arrow.Time64Type).Unit == arrow.Nanosecond {
				div = 1000
			}
			f = func(b []byte, i int) []byte { return appendInt64(b, int64(a.Value(i))/div) }
		}
	case *array.Timestamp:
		tt := a.DataType().(*arrow.TimestampType)
		want := "without time zone"
		if tt.TimeZone != "" {
			want = "with time zone"
		}
		if strings.HasPrefix(typ, "timestamp") && strings.HasSuffix(typ, " "+want) {
			toMicros := timestampMicros(tt.Unit)
			f = func(b []byte, i int) []byte { return appendInt64(b, toMicros(int64(a.Value(i)))-pgEpochMicros) }
		}
	}
	if f == nil {
		return nil
	}
	return nullable(col, f)
}

// isTextType says whether typ is stored from a string as its bytes.
func isTextType(typ string) bool {
	return typ == "text" || typ == "character varying" || strings.HasPrefix(typ, "character(") ||
		strings.HasPrefix(typ, "character varying(")
}

func isTimeType(typ string) bool {
	return (typ == "time" || strings.HasPrefix(typ, "time(") || strings.HasPrefix(typ, "time ")) &&
		strings.HasSuffix(typ, "without time zone")
}

// timestampMicros converts a timestamp in unit to Unix microseconds,
// flooring finer units as pgx does (time.Time's nanoseconds are never negative).
func timestampMicros(unit arrow.TimeUnit) func(int64) int64 {
	switch unit {
	case arrow.Second:
		return func(v int64) int64 { return v * 1_000_000 }
	case arrow.Millisecond:
		return func(v int64) int64 { return v * 1000 }
	case arrow.Nanosecond:
		return func(v int64) int64 {
			q := v / 1000
			if v%1000 < 0 {
				q--
			}
			return q
		}
	}
	return func(v int64) int64 { return v }
}

// appendNumeric appends the binary numeric of n × 10^-scale with display
// scale scale, in PostgreSQL's normalized form (no leading or trailing zero
// base-10000 digits). Values that fit in 64 bits with scale ≤ 15 take the
// integer path; the rest go through math/big.
func appendNumeric(b []byte, n decimal128.Num, scale int32) []byte {
	neg := n.Sign() < 0
	if neg {
		n = n.Negate()
	}
	var groups [12]uint16 // base-10000 digits, least significant first
	var count, weight int
	if n.HighBits() == 0 && scale <= 15 {
		u := n.LowBits()
		fracGroups := int((scale + 3) / 4)
		pow := uint64(1)
		for range scale {
			pow *= 10
		}
		ip, frac := u/pow, u%pow
		for range int32(fracGroups*4) - scale {
			frac *= 10 // pad the fraction to whole groups
		}
		for range fracGroups {
			groups[count] = uint16(frac % 10000)
			frac /= 10000
			count++
		}
		for ; ip > 0; ip /= 10000 {
			groups[count] = uint16(ip % 10000)
			count++
		}
		weight = count - fracGroups - 1
		return appendNumericGroups(b, groups[:count], weight, neg, scale)
	}
	return appendNumericBig(b, n.BigInt(), neg, scale)
}

// appendNumericBig is appendNumeric for any non-negative magnitude m.
func appendNumericBig(b []byte, m *big.Int, neg bool, scale int32) []byte {
	fracGroups := int((scale + 3) / 4)
	m = new(big.Int).Mul(m, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(int32(fracGroups*4)-scale)), nil))
	var groups []uint16
	tenK, r := big.NewInt(10000), new(big.Int)
	for m.Sign() > 0 || len(groups) < fracGroups {
		m.QuoRem(m, tenK, r)
		groups = append(groups, uint16(r.Int64()))
	}
	return appendNumericGroups(b, groups, len(groups)-fracGroups-1, neg, scale)
}

// appendNumericGroups writes digits (least significant first) whose most
// significant one has the given weight, after trimming zero digits.
func appendNumericGroups(b []byte, groups []uint16, weight int, neg bool, scale int32) []byte {
	lo, hi := 0, len(groups)
	for lo < hi && groups[lo] == 0 {
		lo++
	}
	for hi > lo && groups[hi-1] == 0 {
		hi--
		weight--
	}
	var sign uint16
	if lo == hi {
		weight = 0
	} else if neg {
		sign = 0x4000
	}
	b = binary.BigEndian.AppendUint32(b, uint32(8+2*(hi-lo)))
	b = binary.BigEndian.AppendUint16(b, uint16(hi-lo))
	b = binary.BigEndian.AppendUint16(b, uint16(int16(weight)))
	b = binary.BigEndian.AppendUint16(b, sign)
	b = binary.BigEndian.AppendUint16(b, uint16(scale))
	for g := hi - 1; g >= lo; g-- {
		b = binary.BigEndian.AppendUint16(b, groups[g])
	}
	return b
}

// guardedReader lets reads through until close; close waits for a read in
// flight, and every read after it fails. It keeps a reader of Arrow memory
// from running after the memory's owner released it.
type guardedReader struct {
	mu     sync.Mutex
	r      io.Reader
	closed bool
}

func (g *guardedReader) Read(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, io.ErrClosedPipe
	}
	return g.r.Read(p)
}

func (g *guardedReader) close() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}
