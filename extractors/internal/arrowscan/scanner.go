// Package arrowscan reads database/sql rows straight into Arrow change
// batches (schemas.ChangeSchema) for go-mssqldb and pgx stdlib sources, and
// (ReadPgx) a PostgreSQL source's pgx rows from their wire bytes, without
// database/sql's per-value boxing, into the same batches.
//
// Each column gets one converter, chosen once from the column's Arrow type
// and the source dialect; values never pass through float64 unless the
// source type is a float (PITFALLS.md P13), GUIDs are reordered from SQL
// Server's mixed-endian wire order (P12), and zone-less date-times keep their
// wall-clock reading (P14).
//
// Raw values are what database/sql hands to a *any destination:
//
//   - go-mssqldb: int64 for the integer types and bit as bool; []byte holding
//     the exact decimal text for decimal, numeric, money and smallmoney;
//     []byte(16) in wire order for uniqueidentifier; []byte(8) for
//     rowversion; time.Time for the date and time types (zone-less ones
//     labelled with the connection's location, UTC by default); string for
//     the character types and xml; float64 for float and real.
//   - pgx stdlib: int64, bool, float64, []byte (bytea, json, jsonb),
//     time.Time (date, timestamp, timestamptz), and the text form as string
//     for everything else (numeric, uuid, time, character types).
package arrowscan

import (
	"bytes"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/schemas"
)

// Scanner converts one table's rows. It is immutable and safe for concurrent
// use; its Batches are not.
type Scanner struct {
	table  *schemas.Table
	source schemas.Dialect
	schema *arrow.Schema
	cols   []column
}

type column struct {
	name   string
	typ    schemas.Type
	arrow  arrow.DataType
	append func(b colBuf, v any) (int, error)
	native func(v any) (any, error)
}

// New returns a scanner of t's rows read from a source of dialect source
// (t's own dialect names its column types; a table in the SQL Server
// dialect may be read from PostgreSQL, whose synthetic source holds the
// closest types).
func New(source schemas.Dialect, t *schemas.Table) (*Scanner, error) {
	schema, err := schemas.ChangeSchema(t)
	if err != nil {
		return nil, err
	}
	if source != schemas.SQLServer && source != schemas.Postgres {
		return nil, fmt.Errorf("unknown source dialect %q", string(source))
	}
	if source == schemas.SQLServer && t.Dialect != schemas.SQLServer {
		return nil, fmt.Errorf("table %s: a SQL Server source needs a table in the sqlserver dialect", t.QualifiedName())
	}
	s := &Scanner{table: t, source: source, schema: schema}
	for i, c := range t.Columns {
		col, err := newColumn(source, c, schema.Field(i).Type)
		if err != nil {
			return nil, fmt.Errorf("table %s: column %s: %w", t.QualifiedName(), c.Name, err)
		}
		s.cols = append(s.cols, col)
	}
	for _, f := range schema.Fields() {
		if _, err := newColBuf(f.Type, memory.DefaultAllocator); err != nil {
			return nil, fmt.Errorf("table %s: field %s: %w", t.QualifiedName(), f.Name, err)
		}
	}
	return s, nil
}

// Schema returns the change schema the scanner's batches have.
func (s *Scanner) Schema() *arrow.Schema { return s.schema }

// Table returns the table the scanner reads (do not modify it).
func (s *Scanner) Table() *schemas.Table { return s.table }

// Native converts the raw value of column i (table column order) to the
// native value the extractors keep for keys and cursors and bind as
// parameters (dialect.Param):
//
//	int64 (integers), bool, float64, string (character types, and the exact
//	text of decimals), uuid.UUID (RFC 4122 order), time.Time (date-times:
//	zone-less ones as their wall-clock reading labelled UTC, instants as
//	they are), []byte (binary, rowversion).
//
// nil stays nil.
func (s *Scanner) Native(i int, raw any) (any, error) {
	if raw == nil {
		return nil, nil
	}
	v, err := s.cols[i].native(raw)
	if err != nil {
		return nil, fmt.Errorf("column %s: %w", s.cols[i].name, err)
	}
	return v, nil
}

// Batch accumulates rows into one change batch. Release it when done; a
// Batch whose Append failed holds a partial row and must be released, not
// finished.
type Batch struct {
	s   *Scanner
	mem memory.Allocator
	// cols accumulate the schema's fields but the last: the table's
	// columns, then the operation and the sequence. The last, the source
	// position, is NULL in every row: NewRecordBatch makes it whole.
	cols  []colBuf
	rows  int
	bytes int
}

// NewBatch returns an empty batch whose column buffers, and so its record
// batches' buffers, are allocated from mem (nil: memory.DefaultAllocator).
// The caller releases it.
func (s *Scanner) NewBatch(mem memory.Allocator) *Batch {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	b := &Batch{s: s, mem: mem, cols: make([]colBuf, s.schema.NumFields()-1)}
	for i, f := range s.schema.Fields()[:len(b.cols)] {
		c, err := newColBuf(f.Type, mem)
		if err != nil {
			panic(err) // New has checked every field's type
		}
		b.cols[i] = c
	}
	return b
}

// Append adds one row: raw holds the values of the table's columns in
// order, as database/sql scanned them into *any destinations.
func (b *Batch) Append(raw []any, op schemas.Op, seq int64) error {
	return appendRow(b, raw, op, seq)
}

// appendRow is Append for raw values of any interface type: any, or
// driver.Value as a driver's Rows.Next writes them.
func appendRow[V any](b *Batch, raw []V, op schemas.Op, seq int64) error {
	if len(raw) != len(b.s.cols) {
		return fmt.Errorf("row has %d values for %d columns", len(raw), len(b.s.cols))
	}
	for i, c := range b.s.cols {
		cb := b.cols[i]
		v := any(raw[i])
		if v == nil {
			cb.appendNull()
			continue
		}
		n, err := c.append(cb, v)
		if err != nil {
			return fmt.Errorf("column %s: %w", c.name, err)
		}
		b.bytes += n
	}
	b.endRow(op, seq)
	return nil
}

// endRow appends a row's operation and sequence (its source position is
// NULL).
func (b *Batch) endRow(op schemas.Op, seq int64) {
	n := len(b.s.cols)
	b.cols[n].(*fixedCol).add8(uint8(op))
	b.cols[n+1].(*fixedCol).add64(uint64(seq))
	b.bytes += 1 + 8
	b.rows++
}

// Reserve makes room for rows more rows in every column, and for data[i]
// more bytes of column i's variable-length values (data may be nil or
// shorter than the columns), so that appending them does not regrow the
// buffers.
func (b *Batch) Reserve(rows int, data []int) {
	for i, c := range b.cols {
		d := 0
		if i < len(data) {
			d = max(data[i], 0)
		}
		c.reserve(rows, d)
	}
}

// DataLens returns each column's variable-length data bytes appended since
// the last NewRecordBatch (0 for fixed-width columns): a hint for the next
// batch's Reserve.
func (b *Batch) DataLens() []int {
	out := make([]int, len(b.s.cols))
	for i := range out {
		out[i] = b.cols[i].dataLen()
	}
	return out
}

// Rows returns the number of rows appended since the last NewRecordBatch.
func (b *Batch) Rows() int { return b.rows }

// Bytes approximates the Arrow buffer bytes of the rows appended since the
// last NewRecordBatch: fixed widths plus variable-length data.
func (b *Batch) Bytes() int { return b.bytes }

// NewRecordBatch returns the rows appended so far as a record batch, which
// the caller releases, and empties the batch. The record batch shares no
// memory with the batch's later rows.
func (b *Batch) NewRecordBatch() arrow.RecordBatch {
	arrs := make([]arrow.Array, len(b.cols)+1)
	for i, c := range b.cols {
		arrs[i] = c.newArray()
		defer arrs[i].Release()
	}
	pos := len(b.cols)
	arrs[pos] = nullBinary(b.mem, b.s.schema.Field(pos).Type, b.rows)
	defer arrs[pos].Release()
	rec := array.NewRecordBatch(b.s.schema, arrs, int64(b.rows))
	b.rows, b.bytes = 0, 0
	return rec
}

// Release frees the rows not yet made a record batch. The batch is not used
// after; record batches it made stay valid until released.
func (b *Batch) Release() {
	for _, c := range b.cols {
		c.free()
	}
	b.cols = nil
}

// Limits bound one Read and say what it keeps of the last row.
type Limits struct {
	Rows  int // stop after this many rows (> 0)
	Bytes int // stop once the batch holds this many bytes (0: no bound)
	// Last are the columns (table column order) whose values
	// ReadResult.Last keeps; nil: every column.
	Last []int
}

// ReadResult is what one Read did.
type ReadResult struct {
	Rows int // rows appended
	// Last holds raw values of the last row appended (nil when none), one
	// per column: at least those of the columns Limits.Last names (ReadPgx
	// sets no others; Read sets every column's).
	Last []any
	// Stopped is true when Read stopped at a limit before rows ended.
	Stopped bool
}

// Read scans rows into b until rows ends or a limit is reached, each row as
// op with seq taken from *seq (incremented per row). It does not close rows.
// The columns of rows must be the table's columns in order.
func (s *Scanner) Read(rows *sql.Rows, b *Batch, op schemas.Op, seq *int64, lim Limits) (ReadResult, error) {
	var res ReadResult
	vals := make([]any, len(s.cols))
	dest := make([]any, len(s.cols))
	for i := range vals {
		dest[i] = &vals[i]
	}
	for {
		if res.Rows >= lim.Rows || (lim.Bytes > 0 && b.Bytes() >= lim.Bytes) {
			res.Stopped = true
			return res, nil
		}
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return res, err
			}
			return res, nil
		}
		if err := rows.Scan(dest...); err != nil {
			return res, err
		}
		*seq++
		if err := b.Append(vals, op, *seq); err != nil {
			return res, err
		}
		res.Rows++
		// database/sql copies bytes into *any destinations, so the values
		// are ours, and nothing scans into vals after the last row.
		res.Last = vals
	}
}

// ReadDriver is Read for a driver's own rows, below database/sql: each row
// is read with rows.Next into a slice ReadDriver reuses, with none of
// database/sql's per-value copying into *any destinations. It takes the
// values as the driver hands them over, appended before the next Next:
// go-mssqldb decodes every row into values of its own (the bytes of binary
// columns copied, every other type decoded afresh). ReadResult.Last holds
// the kept columns' values, byte values copied, once per read, so that
// nothing the driver does with its dest slice after the last row reaches
// them. It does not close rows. The columns of rows must be the table's
// columns in order.
func (s *Scanner) ReadDriver(rows driver.Rows, b *Batch, op schemas.Op, seq *int64, lim Limits) (ReadResult, error) {
	var res ReadResult
	n := len(s.cols)
	if got := len(rows.Columns()); got != n {
		return res, fmt.Errorf("the query returned %d columns for %d", got, n)
	}
	// Rows alternate between the two halves: while Next writes one, the
	// other holds the row appended before it, the last row when Next ends
	// the rows, whatever a driver does with dest then.
	buf := make([]driver.Value, 2*n)
	var last []driver.Value
	for half := 0; ; half ^= 1 {
		if res.Rows >= lim.Rows || (lim.Bytes > 0 && b.Bytes() >= lim.Bytes) {
			res.Stopped = true
			break
		}
		dest := buf[half*n : (half+1)*n]
		if err := rows.Next(dest); err != nil {
			if err == io.EOF {
				break
			}
			return res, err
		}
		*seq++
		if err := appendRow(b, dest, op, *seq); err != nil {
			return res, err
		}
		res.Rows++
		last = dest
	}
	if last != nil {
		res.Last = keepLast(last, lim.Last)
	}
	return res, nil
}

// keepLast copies the values of columns cols (nil: every column) of a
// driver's row, the bytes of a []byte value included; the others are nil.
func keepLast(row []driver.Value, cols []int) []any {
	out := make([]any, len(row))
	keep := func(i int) {
		if x, ok := row[i].([]byte); ok {
			out[i] = bytes.Clone(x)
			return
		}
		out[i] = row[i]
	}
	if cols == nil {
		for i := range row {
			keep(i)
		}
	}
	for _, i := range cols {
		keep(i)
	}
	return out
}

var errUnexpected = errors.New("unexpected driver value")

// errInfinite is a PostgreSQL date or timestamp of ±infinity (pgx hands it
// over as the string "infinity"): Arrow's dates and timestamps, and the
// store's mapping of them, have no infinity.
var errInfinite = errors.New("a date or timestamp of PostgreSQL's ±infinity, which the store's mapping cannot carry: " +
	"replace it at the source (a view mapping it to NULL or a sentinel date) or leave the column out with the table's columns allow-list")

// unexpected names the Go type of a value the converter cannot take, never
// the value itself.
func unexpected(v any) error {
	if s, ok := v.(string); ok && (s == "infinity" || s == "-infinity") {
		return fmt.Errorf("%w: %w", errUnexpected, errInfinite)
	}
	return fmt.Errorf("%w of type %T", errUnexpected, v)
}

func newColumn(source schemas.Dialect, c schemas.Column, dt arrow.DataType) (column, error) {
	col := column{name: c.Name, typ: c.Type, arrow: dt, native: nativeAsIs}
	switch t := dt.(type) {
	case *arrow.BooleanType:
		col.append = func(b colBuf, v any) (int, error) {
			switch x := v.(type) {
			case bool:
				b.(*boolCol).add(x)
			case int64:
				b.(*boolCol).add(x != 0)
			default:
				return 0, unexpected(v)
			}
			return 1, nil
		}
	case *arrow.Uint8Type:
		col.append = func(b colBuf, v any) (int, error) {
			x, err := integer(v, 0, math.MaxUint8)
			if err != nil {
				return 0, err
			}
			b.(*fixedCol).add8(uint8(x))
			return 1, nil
		}
		col.native = nativeInteger
	case *arrow.Int16Type:
		col.append = func(b colBuf, v any) (int, error) {
			x, err := integer(v, math.MinInt16, math.MaxInt16)
			if err != nil {
				return 0, err
			}
			b.(*fixedCol).add16(uint16(x))
			return 2, nil
		}
		col.native = nativeInteger
	case *arrow.Int32Type:
		col.append = func(b colBuf, v any) (int, error) {
			x, err := integer(v, math.MinInt32, math.MaxInt32)
			if err != nil {
				return 0, err
			}
			b.(*fixedCol).add32(uint32(x))
			return 4, nil
		}
		col.native = nativeInteger
	case *arrow.Int64Type:
		col.append = func(b colBuf, v any) (int, error) {
			x, err := integer(v, math.MinInt64, math.MaxInt64)
			if err != nil {
				return 0, err
			}
			b.(*fixedCol).add64(uint64(x))
			return 8, nil
		}
		col.native = nativeInteger
	case *arrow.Float32Type:
		col.append = func(b colBuf, v any) (int, error) {
			switch x := v.(type) {
			case float64:
				b.(*fixedCol).add32(math.Float32bits(float32(x))) // the source value is a float32
			case float32:
				b.(*fixedCol).add32(math.Float32bits(x))
			default:
				return 0, unexpected(v)
			}
			return 4, nil
		}
	case *arrow.Float64Type:
		col.append = func(b colBuf, v any) (int, error) {
			switch x := v.(type) {
			case float64:
				b.(*fixedCol).add64(math.Float64bits(x))
			case float32:
				b.(*fixedCol).add64(math.Float64bits(float64(x)))
			default:
				return 0, unexpected(v)
			}
			return 8, nil
		}
	case *arrow.Decimal128Type:
		col.append = func(b colBuf, v any) (int, error) {
			var n decimal128.Num
			var err error
			switch x := v.(type) {
			case []byte:
				n, err = parseDecimalBytes(x, t.Precision, t.Scale)
			case string:
				n, err = ParseDecimal(x, t.Precision, t.Scale)
			default:
				return 0, unexpected(v)
			}
			if err != nil {
				return 0, err
			}
			b.(*fixedCol).addDecimal(n)
			return 16, nil
		}
		col.native = func(v any) (any, error) {
			text, ok := asText(v)
			if !ok {
				return nil, unexpected(v)
			}
			return text, nil
		}
	case *arrow.StringType:
		render := text
		if source == schemas.SQLServer && c.Type.Name == "sql_variant" {
			render = variantText
		}
		col.append = func(b colBuf, v any) (int, error) {
			s, err := render(v)
			if err != nil {
				return 0, err
			}
			addVar(b.(*varCol), s)
			return len(s), nil
		}
		col.native = func(v any) (any, error) { return render(v) }
	case *extensions.UUIDType:
		conv := uuidConverter(source)
		col.append = func(b colBuf, v any) (int, error) {
			u, err := conv(v)
			if err != nil {
				return 0, err
			}
			b.(*fixedCol).addBytes(u[:])
			return 16, nil
		}
		col.native = func(v any) (any, error) { return conv(v) }
	case *arrow.Date32Type:
		col.append = func(b colBuf, v any) (int, error) {
			x, ok := v.(time.Time)
			if !ok {
				return 0, unexpected(v)
			}
			b.(*fixedCol).add32(uint32(Date32(x)))
			return 4, nil
		}
		col.native = nativeWall
	case *arrow.Time64Type:
		col.append = func(b colBuf, v any) (int, error) {
			var x time.Time
			switch y := v.(type) {
			case time.Time:
				x = y
			case string:
				var err error
				if x, err = parseTimeOfDay(y); err != nil {
					return 0, err
				}
			default:
				return 0, unexpected(v)
			}
			b.(*fixedCol).add64(uint64(TimeOfDayMicros(x)))
			return 8, nil
		}
	case *arrow.TimestampType:
		zoned := t.TimeZone != ""
		ticks := source == schemas.SQLServer && c.Type.Name == "datetime"
		col.append = func(b colBuf, v any) (int, error) {
			x, ok := v.(time.Time)
			if !ok {
				return 0, unexpected(v)
			}
			switch {
			case ticks && !zoned:
				b.(*fixedCol).add64(uint64(dateTimeWallMicros(x)))
				return 8, nil
			case ticks:
				x = DateTimeTick(x)
			}
			if zoned {
				b.(*fixedCol).add64(uint64(x.UnixMicro()))
			} else {
				b.(*fixedCol).add64(uint64(WallMicros(x)))
			}
			return 8, nil
		}
		if !zoned {
			col.native = nativeWall
		}
	case *arrow.FixedSizeBinaryType:
		width := t.ByteWidth
		col.append = func(b colBuf, v any) (int, error) {
			x, err := fixedBytes(v, width)
			if err != nil {
				return 0, err
			}
			b.(*fixedCol).addBytes(x)
			return width, nil
		}
	case *arrow.BinaryType:
		col.append = func(b colBuf, v any) (int, error) {
			switch x := v.(type) {
			case []byte:
				addVar(b.(*varCol), x)
				return len(x), nil
			case string:
				addVar(b.(*varCol), x)
				return len(x), nil
			}
			return 0, unexpected(v)
		}
	default:
		return column{}, fmt.Errorf("no converter for Arrow type %s", dt)
	}
	return col, nil
}

func nativeAsIs(v any) (any, error) { return v, nil }

func nativeInteger(v any) (any, error) {
	return integer(v, math.MinInt64, math.MaxInt64)
}

// nativeWall keeps a zone-less date-time as its wall-clock reading labelled
// UTC.
func nativeWall(v any) (any, error) {
	x, ok := v.(time.Time)
	if !ok {
		return nil, unexpected(v)
	}
	return time.Date(x.Year(), x.Month(), x.Day(), x.Hour(), x.Minute(), x.Second(), x.Nanosecond(), time.UTC), nil
}

func integer(v any, lo, hi int64) (int64, error) {
	var x int64
	switch y := v.(type) {
	case int64:
		x = y
	case int32:
		x = int64(y)
	case int16:
		x = int64(y)
	case uint8:
		x = int64(y)
	case uint32:
		x = int64(y)
	case string: // pgx: types it has no Go mapping for arrive as text
		var err error
		if x, err = strconv.ParseInt(y, 10, 64); err != nil {
			return 0, errors.New("not an integer")
		}
	default:
		return 0, unexpected(v)
	}
	if x < lo || x > hi {
		return 0, fmt.Errorf("integer out of range %d..%d", lo, hi)
	}
	return x, nil
}

func asText(v any) (string, bool) {
	switch x := v.(type) {
	case []byte:
		return string(x), true
	case string:
		return x, true
	}
	return "", false
}

// text renders a value for a string column. Character data arrives as
// string (json and jsonb as []byte); sql_variant values arrive as their base
// type and are carried as text (the mapping's documented loss).
func text(v any) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case bool:
		return strconv.FormatBool(x), nil
	case time.Time:
		return x.Format(time.RFC3339Nano), nil
	}
	return "", unexpected(v)
}

// errVariantBytes is a sql_variant value the driver hands over as bytes
// that are not a decimal's text: a binary or uniqueidentifier base type,
// which database/sql does not tell apart from text.
var errVariantBytes = errors.New("a sql_variant value holds binary or uniqueidentifier data, which ehrsync cannot carry as text " +
	"(the driver does not say which): convert the column at the source (a view with CONVERT(nvarchar(4000), ...)) " +
	"or leave it out with the table's columns: allow-list")

// variantText renders a SQL Server sql_variant value as text. go-mssqldb
// hands over its base type's value: decimal, numeric and money as their
// text in bytes, binary and uniqueidentifier as raw bytes. Only the first
// can be told apart; the others are refused rather than stored as garbage.
func variantText(v any) (string, error) {
	if b, ok := v.([]byte); ok {
		if !isDecimalText(b) {
			return "", errVariantBytes
		}
		return string(b), nil
	}
	return text(v)
}

// isDecimalText reports whether b is a decimal's text as go-mssqldb writes
// it: an optional sign, digits, at most one point.
func isDecimalText(b []byte) bool {
	digits, point := 0, false
	for i, c := range b {
		switch {
		case c == '-' && i == 0:
		case c == '.' && !point:
			point = true
		case c >= '0' && c <= '9':
			digits++
		default:
			return false
		}
	}
	return digits > 0
}

func uuidConverter(source schemas.Dialect) func(v any) (uuid.UUID, error) {
	return func(v any) (uuid.UUID, error) {
		switch x := v.(type) {
		case []byte:
			if source == schemas.SQLServer {
				return GUIDFromSQLServer(x)
			}
			if len(x) == 16 {
				return uuid.UUID(x), nil
			}
			u, err := uuid.ParseBytes(x)
			if err != nil {
				return uuid.UUID{}, errors.New("not a UUID")
			}
			return u, nil
		case string:
			u, err := uuid.Parse(x)
			if err != nil {
				return uuid.UUID{}, errors.New("not a UUID")
			}
			return u, nil
		case [16]byte:
			return x, nil
		case uuid.UUID:
			return x, nil
		}
		return uuid.UUID{}, unexpected(v)
	}
}

// fixedBytes returns v as exactly width bytes. A row version read from a
// PostgreSQL bigint becomes its big-endian bytes, so that bytewise order is
// numeric order as for SQL Server's rowversion.
func fixedBytes(v any, width int) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		if len(x) != width {
			return nil, fmt.Errorf("binary value of %d bytes, want %d", len(x), width)
		}
		return x, nil
	case int64:
		if width != 8 {
			return nil, unexpected(v)
		}
		if x < 0 {
			return nil, errors.New("negative row version")
		}
		return binary.BigEndian.AppendUint64(nil, uint64(x)), nil
	}
	return nil, unexpected(v)
}
