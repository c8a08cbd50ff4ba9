package arrowscan

import (
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ehrsync/ehrsync/schemas"
)

// PgxResultFormats are the result formats a query read with ReadPgx asks
// for: those pgx's database/sql driver (stdlib) asks for, plus binary numeric
// and uuid, which ReadPgx decodes without text.
var PgxResultFormats = pgx.QueryResultFormatsByOID{
	pgtype.BoolOID:        pgx.BinaryFormatCode,
	pgtype.ByteaOID:       pgx.BinaryFormatCode,
	pgtype.CIDOID:         pgx.BinaryFormatCode,
	pgtype.DateOID:        pgx.BinaryFormatCode,
	pgtype.Float4OID:      pgx.BinaryFormatCode,
	pgtype.Float8OID:      pgx.BinaryFormatCode,
	pgtype.Int2OID:        pgx.BinaryFormatCode,
	pgtype.Int4OID:        pgx.BinaryFormatCode,
	pgtype.Int8OID:        pgx.BinaryFormatCode,
	pgtype.OIDOID:         pgx.BinaryFormatCode,
	pgtype.TimestampOID:   pgx.BinaryFormatCode,
	pgtype.TimestamptzOID: pgx.BinaryFormatCode,
	pgtype.XIDOID:         pgx.BinaryFormatCode,
	pgtype.NumericOID:     pgx.BinaryFormatCode,
	pgtype.UUIDOID:        pgx.BinaryFormatCode,
}

// decoder appends one non-NULL wire value to the column buffer it was made
// for and returns the bytes it added (Batch.Bytes). raw is only valid
// during the call.
type decoder func(raw []byte) (int, error)

// ReadPgx is Read for a PostgreSQL source queried through pgx directly
// (with PgxResultFormats as the query's first argument), without
// database/sql's per-value boxing: the common (column type, wire type)
// pairs are decoded from the wire bytes straight into the batch's column
// buffers; every other pair goes through the same conversion pgx's
// database/sql driver makes, so the batch is the one Read would build.
// ReadResult.Last holds that driver's values too, of the columns lim.Last
// names (every column when nil). It does not close rows,
// except to learn why a query that returned no row description failed.
func (s *Scanner) ReadPgx(rows pgx.Rows, m *pgtype.Map, b *Batch, op schemas.Op, seq *int64, lim Limits) (ReadResult, error) {
	var res ReadResult
	fds := rows.FieldDescriptions()
	if len(fds) != len(s.cols) {
		// A query that failed before its row description (a connection
		// lost mid-way) has no columns: its own error says what happened.
		rows.Close()
		if err := rows.Err(); err != nil {
			return res, err
		}
		return res, fmt.Errorf("query returned %d columns for %d", len(fds), len(s.cols))
	}
	decs := make([]decoder, len(fds))
	slow := make([]func([]byte) (any, error), len(fds))
	for i, fd := range fds {
		slow[i] = stdlibValue(m, fd)
		decs[i] = s.cols[i].pgxDecoder(fd, slow[i], b.cols[i])
	}
	// The wire bytes of the last row's kept columns (lim.Last, else every
	// column) end to end, kept for Last (RawValues are only valid until the
	// next row), and where each ends (-1: NULL). Flat, so that keeping them
	// stores no pointer per value.
	n := len(s.cols)
	keep := lim.Last
	if keep == nil {
		keep = make([]int, n)
		for i := range keep {
			keep[i] = i
		}
	}
	for _, i := range keep {
		if i < 0 || i >= n {
			return res, fmt.Errorf("kept column %d of %d", i, n)
		}
	}
	last := make([]byte, 0, 256)
	lastEnd := make([]int, len(keep))
	for {
		if res.Rows >= lim.Rows || (lim.Bytes > 0 && b.Bytes() >= lim.Bytes) {
			res.Stopped = true
			break
		}
		if !rows.Next() {
			if err := rows.Err(); err != nil {
				return res, err
			}
			break
		}
		raw := rows.RawValues()
		if len(raw) != n {
			return res, fmt.Errorf("row has %d values for %d columns", len(raw), n)
		}
		*seq++
		for i, v := range raw {
			if v == nil {
				b.cols[i].appendNull()
				continue
			}
			k, err := decs[i](v)
			if err != nil {
				return res, fmt.Errorf("column %s: %w", s.cols[i].name, err)
			}
			b.bytes += k
		}
		last = last[:0]
		for j, i := range keep {
			if raw[i] == nil {
				lastEnd[j] = -1
				continue
			}
			last = append(last, raw[i]...)
			lastEnd[j] = len(last)
		}
		b.endRow(op, *seq)
		res.Rows++
	}
	if res.Rows == 0 {
		return res, nil
	}
	res.Last = make([]any, n)
	start := 0
	for j, end := range lastEnd {
		if end < 0 {
			continue
		}
		i := keep[j]
		v, err := slow[i](last[start:end:end]) // non-nil even when empty: '' is not NULL
		start = end
		if err != nil {
			return res, fmt.Errorf("column %s: %w", s.cols[i].name, err)
		}
		res.Last[i] = v
	}
	return res, nil
}

// pgxDecoder returns the column's decoder into cb for values of wire type
// fd. slow converts a wire value as pgx's database/sql driver does.
func (c column) pgxDecoder(fd pgconn.FieldDescription, slow func([]byte) (any, error), cb colBuf) decoder {
	fallback := func(raw []byte) (int, error) {
		v, err := slow(raw)
		if err != nil {
			return 0, err
		}
		return c.append(cb, v)
	}
	bin := fd.Format == pgx.BinaryFormatCode
	switch t := c.arrow.(type) {
	case *arrow.Int16Type, *arrow.Int32Type, *arrow.Int64Type, *arrow.Uint8Type:
		if !bin {
			break
		}
		var width int
		switch fd.DataTypeOID {
		case pgtype.Int2OID:
			width = 2
		case pgtype.Int4OID:
			width = 4
		case pgtype.Int8OID:
			width = 8
		default:
			return fallback
		}
		var lo, hi int64
		switch t.(type) {
		case *arrow.Int64Type:
			lo, hi = math.MinInt64, math.MaxInt64
		case *arrow.Int32Type:
			lo, hi = math.MinInt32, math.MaxInt32
		case *arrow.Int16Type:
			lo, hi = math.MinInt16, math.MaxInt16
		case *arrow.Uint8Type:
			lo, hi = 0, math.MaxUint8
		}
		fc := cb.(*fixedCol)
		return func(raw []byte) (int, error) {
			if len(raw) != width {
				return fallback(raw) // malformed: the fallback gives Read's error
			}
			var x int64
			switch width {
			case 2:
				x = int64(int16(binary.BigEndian.Uint16(raw)))
			case 4:
				x = int64(int32(binary.BigEndian.Uint32(raw)))
			default:
				x = int64(binary.BigEndian.Uint64(raw))
			}
			if x < lo || x > hi {
				return fallback(raw) // out of range: likewise
			}
			fc.addInt(x)
			return fc.width, nil
		}
	case *arrow.Decimal128Type:
		if !bin || fd.DataTypeOID != pgtype.NumericOID {
			break
		}
		fc := cb.(*fixedCol)
		return func(raw []byte) (int, error) {
			n, ok := numericToDecimal(raw, t.Precision, t.Scale)
			if !ok {
				return fallback(raw)
			}
			fc.addDecimal(n)
			return 16, nil
		}
	case *arrow.StringType:
		switch fd.DataTypeOID {
		case pgtype.TextOID, pgtype.VarcharOID, pgtype.BPCharOID, pgtype.NameOID:
			// Text and binary formats of these types are both the bytes of
			// the string; addVar copies them.
			vc := cb.(*varCol)
			return func(raw []byte) (int, error) {
				addVar(vc, raw)
				return len(raw), nil
			}
		}
	case *extensions.UUIDType:
		if !bin || fd.DataTypeOID != pgtype.UUIDOID {
			break
		}
		fc := cb.(*fixedCol)
		return func(raw []byte) (int, error) {
			if len(raw) != 16 {
				return fallback(raw)
			}
			fc.addBytes(raw)
			return 16, nil
		}
	case *arrow.TimestampType:
		zoned := t.TimeZone != ""
		// A timestamptz read into a zone-less column keeps the reading in
		// the driver's location: leave that to the driver's conversion.
		if !bin || t.Unit != arrow.Microsecond || !(fd.DataTypeOID == pgtype.TimestampOID || (zoned && fd.DataTypeOID == pgtype.TimestamptzOID)) {
			break
		}
		fc := cb.(*fixedCol)
		return func(raw []byte) (int, error) {
			if len(raw) != 8 {
				return fallback(raw)
			}
			us := int64(binary.BigEndian.Uint64(raw))
			if us == math.MaxInt64 || us == math.MinInt64 { // infinity
				return fallback(raw)
			}
			fc.add64(uint64(us + pgEpochMicros))
			return 8, nil
		}
	case *arrow.FixedSizeBinaryType:
		// rowversion: a PostgreSQL source keeps it as a bigint, whose
		// binary form is the big-endian bytes the column holds (the
		// conversion refuses a negative one).
		if !bin || fd.DataTypeOID != pgtype.Int8OID || t.ByteWidth != 8 {
			break
		}
		fc := cb.(*fixedCol)
		return func(raw []byte) (int, error) {
			if len(raw) != 8 || raw[0]&0x80 != 0 {
				return fallback(raw)
			}
			fc.addBytes(raw)
			return 8, nil
		}
	case *arrow.Date32Type:
		if !bin || fd.DataTypeOID != pgtype.DateOID {
			break
		}
		fc := cb.(*fixedCol)
		return func(raw []byte) (int, error) {
			if len(raw) != 4 {
				return fallback(raw)
			}
			d := int32(binary.BigEndian.Uint32(raw))
			if d == math.MaxInt32 || d == math.MinInt32 { // infinity
				return fallback(raw)
			}
			fc.add32(uint32(d + pgEpochDays))
			return 4, nil
		}
	}
	return fallback
}

// PostgreSQL's wire epoch, 2000-01-01, from the Unix epoch.
const (
	pgEpochDays   = 10957
	pgEpochMicros = pgEpochDays * 86400 * 1_000_000
)

var pow10 = [...]uint64{1, 10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 100_000_000,
	1_000_000_000, 10_000_000_000, 100_000_000_000, 1_000_000_000_000, 10_000_000_000_000,
	100_000_000_000_000, 1_000_000_000_000_000, 10_000_000_000_000_000, 100_000_000_000_000_000,
	1_000_000_000_000_000_000, 10_000_000_000_000_000_000}

// numericToDecimal converts a binary numeric to a decimal128 at scale when
// that is exact and the scaled value fits 64 bits and precision. ok is false
// for anything else (NaN, infinities, digits beyond scale, larger values,
// malformed input): the caller then takes the text path, which converts
// what can be converted and reports the rest.
func numericToDecimal(raw []byte, precision, scale int32) (decimal128.Num, bool) {
	if len(raw) < 8 {
		return decimal128.Num{}, false
	}
	ndigits := int(int16(binary.BigEndian.Uint16(raw[0:])))
	weight := int(int16(binary.BigEndian.Uint16(raw[2:])))
	sign := binary.BigEndian.Uint16(raw[4:])
	if ndigits < 0 || len(raw) != 8+2*ndigits || (sign != 0 && sign != 0x4000) {
		return decimal128.Num{}, false
	}
	// value = digits (base 10000) × 10000^(weight-ndigits+1); scaled by
	// 10^scale that is digits × 10^k.
	var acc uint64
	for i := 0; i < ndigits; i++ {
		d := uint64(binary.BigEndian.Uint16(raw[8+2*i:]))
		// A constant bound (no division per digit), a little below the
		// exact one: the few values between take the caller's text path.
		if d >= 10000 || acc > (math.MaxUint64-9999)/10000 {
			return decimal128.Num{}, false
		}
		acc = acc*10000 + d
	}
	k := 4*(weight-ndigits+1) + int(scale)
	switch {
	case acc == 0:
	case k >= 0:
		if k >= len(pow10) || acc > math.MaxUint64/pow10[k] {
			return decimal128.Num{}, false
		}
		acc *= pow10[k]
	default:
		var q uint64
		switch -k { // constant divisors compile to multiplications
		case 1:
			q = acc / 10
		case 2:
			q = acc / 100
		case 3:
			q = acc / 1000
		default:
			if -k >= len(pow10) {
				return decimal128.Num{}, false
			}
			q = acc / pow10[-k]
		}
		if q*pow10[-k] != acc {
			return decimal128.Num{}, false
		}
		acc = q
	}
	// |n| < 10^precision, and n fits int64.
	if acc > math.MaxInt64 || (int(precision) < len(pow10) && acc >= pow10[precision]) {
		return decimal128.Num{}, false
	}
	n := decimal128.FromI64(int64(acc))
	if sign == 0x4000 {
		n = n.Negate()
	}
	return n, true
}

// stdlibValue converts a wire value of fd as pgx's database/sql driver
// (stdlib.Rows.Next) does, so that the values match what Read receives.
func stdlibValue(m *pgtype.Map, fd pgconn.FieldDescription) func([]byte) (any, error) {
	oid, format := fd.DataTypeOID, fd.Format
	scan := func(dst any, val func() (any, error)) func([]byte) (any, error) {
		plan := m.PlanScan(oid, format, dst)
		return func(src []byte) (any, error) {
			if err := plan.Scan(src, dst); err != nil {
				return nil, err
			}
			return val()
		}
	}
	valuer := func(v driver.Valuer) func() (any, error) { return func() (any, error) { return v.Value() } }
	switch oid {
	case pgtype.BoolOID:
		var d bool
		return scan(&d, func() (any, error) { return d, nil })
	case pgtype.ByteaOID, pgtype.JSONOID, pgtype.JSONBOID, pgtype.XMLOID:
		return func(src []byte) (any, error) {
			var d []byte
			if err := m.PlanScan(oid, format, &d).Scan(src, &d); err != nil {
				return nil, err
			}
			out := make([]byte, len(d)) // ours (and non-nil), as database/sql's copy is
			copy(out, d)
			return out, nil
		}
	case pgtype.CIDOID, pgtype.OIDOID, pgtype.XIDOID:
		var d pgtype.Uint32
		return scan(&d, valuer(&d))
	case pgtype.DateOID:
		var d pgtype.Date
		return scan(&d, valuer(&d))
	case pgtype.Float4OID:
		var d float32
		return scan(&d, func() (any, error) { return float64(d), nil })
	case pgtype.Float8OID:
		var d float64
		return scan(&d, func() (any, error) { return d, nil })
	case pgtype.Int2OID:
		var d int16
		return scan(&d, func() (any, error) { return int64(d), nil })
	case pgtype.Int4OID:
		var d int32
		return scan(&d, func() (any, error) { return int64(d), nil })
	case pgtype.Int8OID:
		var d int64
		return scan(&d, func() (any, error) { return d, nil })
	case pgtype.TimestampOID:
		var d pgtype.Timestamp
		return scan(&d, valuer(&d))
	case pgtype.TimestamptzOID:
		var d pgtype.Timestamptz
		return scan(&d, valuer(&d))
	case pgtype.NumericOID:
		if format == pgx.BinaryFormatCode {
			// The driver would have asked for text; pgx renders binary
			// numerics differently ("0" for 0.00), so render as the server.
			return func(src []byte) (any, error) {
				text, ok := numericText(src)
				if !ok {
					return nil, errors.New("malformed binary numeric")
				}
				return text, nil
			}
		}
	}
	var d string
	return scan(&d, func() (any, error) { return d, nil })
}

// numericText renders a binary numeric as PostgreSQL's numeric_out does:
// exactly dscale fractional digits, NaN and ±Infinity spelled out.
func numericText(raw []byte) (string, bool) {
	if len(raw) < 8 {
		return "", false
	}
	ndigits := int(int16(binary.BigEndian.Uint16(raw[0:])))
	weight := int(int16(binary.BigEndian.Uint16(raw[2:])))
	sign := binary.BigEndian.Uint16(raw[4:])
	dscale := int(binary.BigEndian.Uint16(raw[6:]) & 0x3fff)
	if ndigits < 0 || len(raw) != 8+2*ndigits {
		return "", false
	}
	switch sign {
	case 0xc000:
		return "NaN", true
	case 0xd000:
		return "Infinity", true
	case 0xf000:
		return "-Infinity", true
	case 0, 0x4000:
	default:
		return "", false
	}
	digit := func(i int) int {
		if i < 0 || i >= ndigits {
			return 0
		}
		return int(binary.BigEndian.Uint16(raw[8+2*i:]))
	}
	b := make([]byte, 0, 4*(ndigits+2)+dscale)
	if sign == 0x4000 {
		b = append(b, '-')
	}
	if weight < 0 {
		b = append(b, '0')
	}
	for i := 0; i <= weight; i++ {
		d := digit(i)
		if i == 0 {
			b = strconv.AppendInt(b, int64(d), 10)
			continue
		}
		b = append(b, byte('0'+d/1000), byte('0'+d/100%10), byte('0'+d/10%10), byte('0'+d%10))
	}
	if dscale > 0 {
		b = append(b, '.')
		for j, n := 1, 0; n < dscale; j++ {
			d := digit(weight + j)
			for _, c := range [4]byte{byte('0' + d/1000), byte('0' + d/100%10), byte('0' + d/10%10), byte('0' + d%10)} {
				if n < dscale {
					b = append(b, c)
					n++
				}
			}
		}
	}
	return string(b), true
}
