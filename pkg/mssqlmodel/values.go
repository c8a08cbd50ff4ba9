package mssqlmodel

import (
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// Values are held in tdstest's Go representation (handler.go): int64 for
// the integer types, bool for bit, plain decimal text for decimal, numeric,
// money and smallmoney, float64, []byte (uniqueidentifier in wire order,
// binary, varbinary, rowversion), time.Time (zone-less types in UTC,
// datetimeoffset in its offset's zone), string, tdstest.Variant; NULL is nil.
// Every value travels with its SQL Server type (schemas.Type, dialect
// sqlserver), which decides how it converts and compares.

// Types the model uses often.
var (
	tBit       = schemas.Type{Name: "bit"}
	tTinyint   = schemas.Type{Name: "tinyint"}
	tSmallint  = schemas.Type{Name: "smallint"}
	tInt       = schemas.Type{Name: "int"}
	tBigint    = schemas.Type{Name: "bigint"}
	tFloat     = schemas.Type{Name: "float", Precision: 53}
	tDatetime  = schemas.Type{Name: "datetime"}
	tDatetime2 = schemas.Type{Name: "datetime2", Precision: 7}
	tDTO       = schemas.Type{Name: "datetimeoffset", Precision: 7}
	tGUID      = schemas.Type{Name: "uniqueidentifier"}
	tSysname   = nvarchar(128)
	tVariant   = schemas.Type{Name: "sql_variant"}
	tLSN       = binaryT(10)
)

func nvarchar(n int) schemas.Type   { return schemas.Type{Name: "nvarchar", Length: n} }
func varchar(n int) schemas.Type    { return schemas.Type{Name: "varchar", Length: n} }
func nchar(n int) schemas.Type      { return schemas.Type{Name: "nchar", Length: n} }
func binaryT(n int) schemas.Type    { return schemas.Type{Name: "binary", Length: n} }
func varbinaryT(n int) schemas.Type { return schemas.Type{Name: "varbinary", Length: n} }

// family groups the types that convert and compare alike.
type family int

const (
	famOther family = iota
	famBit
	famInt
	famDecimal
	famFloat
	famString
	famBinary
	famGUID
	famDate
	famTime
	famDateTime // datetime, smalldatetime, datetime2
	famDTO
	famVariant
)

func familyOf(t schemas.Type) family {
	switch t.Name {
	case "bit":
		return famBit
	case "tinyint", "smallint", "int", "bigint":
		return famInt
	case "decimal", "numeric", "money", "smallmoney":
		return famDecimal
	case "float", "real":
		return famFloat
	case "char", "varchar", "text", "nchar", "nvarchar", "ntext", "xml":
		return famString
	case "binary", "varbinary", "image", "rowversion":
		return famBinary
	case "uniqueidentifier":
		return famGUID
	case "date":
		return famDate
	case "time":
		return famTime
	case "datetime", "smalldatetime", "datetime2":
		return famDateTime
	case "datetimeoffset":
		return famDTO
	case "sql_variant":
		return famVariant
	}
	return famOther
}

func isNumeric(f family) bool { return f == famBit || f == famInt || f == famDecimal || f == famFloat }
func isTemporal(f family) bool {
	return f == famDate || f == famTime || f == famDateTime || f == famDTO
}
func isUnicode(t schemas.Type) bool {
	return t.Name == "nchar" || t.Name == "nvarchar" || t.Name == "ntext"
}

// precedence is SQL Server's data type precedence: a lower number wins, and
// the other operand of a comparison or an operator converts to it.
var precedence = map[string]int{
	"sql_variant": 1, "xml": 2, "datetimeoffset": 3, "datetime2": 4, "datetime": 5,
	"smalldatetime": 6, "date": 7, "time": 8, "float": 9, "real": 10, "decimal": 11,
	"numeric": 11, "money": 12, "smallmoney": 13, "bigint": 14, "int": 15,
	"smallint": 16, "tinyint": 17, "bit": 18, "ntext": 19, "text": 20, "image": 21,
	"rowversion": 22, "uniqueidentifier": 23, "nvarchar": 24, "nchar": 25,
	"varchar": 26, "char": 27, "varbinary": 28, "binary": 29,
}

// higher returns the type of a and b that wins by data type precedence.
func higher(a, b schemas.Type) schemas.Type {
	pa, oka := precedence[a.Name]
	pb, okb := precedence[b.Name]
	if !oka {
		return a
	}
	if !okb || pa <= pb {
		return a
	}
	return b
}

// fraction returns the fractional-second digits of a time type.
func fraction(t schemas.Type) int {
	if t.Precision < 0 || t.Precision > 7 {
		return 7
	}
	if t.Name == "datetime2" || t.Name == "time" || t.Name == "datetimeoffset" {
		return t.Precision
	}
	return 7
}

// decimalPS returns a decimal type's precision and scale.
func decimalPS(t schemas.Type) (int, int) {
	switch t.Name {
	case "money":
		return 19, 4
	case "smallmoney":
		return 10, 4
	}
	if t.Precision <= 0 {
		return 18, 0
	}
	return t.Precision, t.Scale
}

// typeText spells t as SQL Server's messages do.
func typeText(t schemas.Type) string {
	switch t.Name {
	case "decimal", "numeric":
		return "numeric"
	}
	return t.Name
}

// sqlError builds a SQL Server error (state 1).
func sqlError(number int32, class uint8, format string, args ...any) *tdstest.Error {
	return &tdstest.Error{Number: number, State: 1, Class: class, Message: fmt.Sprintf(format, args...)}
}

func overflow(t schemas.Type) error {
	return sqlError(8115, 16, "Arithmetic overflow error converting expression to data type %s.", typeText(t))
}

func conversionFailed(from, to schemas.Type) error {
	switch familyOf(to) {
	case famGUID:
		return sqlError(8169, 16, "Conversion failed when converting from a character string to uniqueidentifier.")
	case famDate, famTime, famDateTime, famDTO:
		return sqlError(241, 16, "Conversion failed when converting date and/or time from character string.")
	case famDecimal, famFloat:
		return sqlError(8114, 16, "Error converting data type %s to %s.", typeText(from), typeText(to))
	}
	// SQL Server quotes the value here; the model never puts values in
	// messages.
	return sqlError(245, 16, "Conversion failed when converting the %s value to data type %s.", typeText(from), typeText(to))
}

func clash(from, to schemas.Type, explicit bool) error {
	if explicit {
		return sqlError(529, 16, "Explicit conversion from data type %s to %s is not allowed.", typeText(from), typeText(to))
	}
	return sqlError(206, 16, "Operand type clash: %s is incompatible with %s", typeText(from), typeText(to))
}

// intRange returns the range of an integer type.
func intRange(t schemas.Type) (int64, int64) {
	switch t.Name {
	case "tinyint":
		return 0, 255
	case "smallint":
		return math.MinInt16, math.MaxInt16
	case "int":
		return math.MinInt32, math.MaxInt32
	}
	return math.MinInt64, math.MaxInt64
}

func intSize(t schemas.Type) int {
	switch t.Name {
	case "tinyint":
		return 1
	case "smallint":
		return 2
	case "int":
		return 4
	}
	return 8
}

// ratOf returns a numeric value as an exact rational (floats exactly as
// their binary value).
func ratOf(v any, t schemas.Type) (*big.Rat, error) {
	switch x := v.(type) {
	case bool:
		if x {
			return big.NewRat(1, 1), nil
		}
		return new(big.Rat), nil
	case int64:
		return new(big.Rat).SetInt64(x), nil
	case string:
		r, ok := parseDecimal(x)
		if !ok {
			return nil, conversionFailed(varchar(0), t)
		}
		return r, nil
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return nil, overflow(t)
		}
		return new(big.Rat).SetFloat64(x), nil
	}
	return nil, fmt.Errorf("mssqlmodel: %T is not a numeric value", v)
}

// parseDecimal reads plain decimal text ("-12.50", " 3 ", ".5").
func parseDecimal(s string) (*big.Rat, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, false
	}
	body := strings.TrimLeft(s, "+-")
	if len(s)-len(body) > 1 || body == "" || body == "." {
		return nil, false
	}
	dot := false
	for _, c := range body {
		switch {
		case c == '.' && !dot:
			dot = true
		case c >= '0' && c <= '9':
		default:
			return nil, false
		}
	}
	r, ok := new(big.Rat).SetString(strings.TrimPrefix(s, "+"))
	return r, ok
}

var ten = big.NewInt(10)

// roundRat rounds r to scale digits, half away from zero, as SQL Server
// rounds a decimal assigned to a smaller scale.
func roundRat(r *big.Rat, scale int) *big.Rat {
	m := new(big.Int).Exp(ten, big.NewInt(int64(scale)), nil)
	x := new(big.Rat).Mul(r, new(big.Rat).SetInt(m))
	num, den := x.Num(), x.Denom()
	q, rem := new(big.Int).QuoRem(num, den, new(big.Int))
	// |rem|*2 >= den: round away from zero.
	if new(big.Int).Mul(new(big.Int).Abs(rem), big.NewInt(2)).Cmp(den) >= 0 {
		if num.Sign() < 0 {
			q.Sub(q, big.NewInt(1))
		} else {
			q.Add(q, big.NewInt(1))
		}
	}
	return new(big.Rat).SetFrac(q, m)
}

// formatRat writes r (already at scale digits) as plain decimal text.
func formatRat(r *big.Rat, scale int) string {
	return r.FloatString(scale)
}

// truncRat truncates r toward zero to an integer.
func truncRat(r *big.Rat) *big.Int {
	return new(big.Int).Quo(r.Num(), r.Denom())
}

// toDecimal converts a rational to decimal(p,s) text, with SQL Server's
// overflow error.
func toDecimal(r *big.Rat, t schemas.Type) (string, error) {
	p, s := decimalPS(t)
	r = roundRat(r, s)
	limit := new(big.Rat).SetInt(new(big.Int).Exp(ten, big.NewInt(int64(p-s)), nil))
	if new(big.Rat).Abs(r).Cmp(limit) >= 0 {
		return "", overflow(t)
	}
	return formatRat(r, s), nil
}

// convert converts v of type from to type to, as CAST (explicit) or an
// implicit conversion does.
func convert(v any, from, to schemas.Type, explicit bool) (any, error) {
	if v == nil {
		return nil, nil
	}
	if x, ok := v.(tdstest.Variant); ok && to.Name != "sql_variant" {
		return convert(x.Value, x.Type, to, explicit)
	}
	ff, ft := familyOf(from), familyOf(to)
	switch ft {
	case famVariant:
		if x, ok := v.(tdstest.Variant); ok {
			return x, nil
		}
		return tdstest.Variant{Type: from, Value: v}, nil
	case famBit:
		switch ff {
		case famBit:
			return v, nil
		case famInt, famDecimal, famFloat:
			r, err := ratOf(v, from)
			if err != nil {
				return nil, err
			}
			return r.Sign() != 0, nil
		case famString:
			s := strings.TrimSpace(v.(string))
			switch strings.ToLower(s) {
			case "true":
				return true, nil
			case "false":
				return false, nil
			}
			r, ok := parseDecimal(s)
			if !ok {
				return nil, conversionFailed(from, to)
			}
			return r.Sign() != 0, nil
		}
	case famInt:
		var r *big.Rat
		switch ff {
		case famBit, famInt, famDecimal, famFloat:
			var err error
			if r, err = ratOf(v, from); err != nil {
				return nil, err
			}
		case famString:
			s := strings.TrimSpace(v.(string))
			n, err := strconv.ParseInt(strings.TrimPrefix(s, "+"), 10, 64)
			if err != nil {
				if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
					return nil, overflow(to)
				}
				return nil, conversionFailed(from, to)
			}
			r = new(big.Rat).SetInt64(n)
		case famBinary:
			b := v.([]byte)
			size := intSize(to)
			if len(b) > size {
				b = b[len(b)-size:]
			}
			var u uint64
			for _, c := range b {
				u = u<<8 | uint64(c)
			}
			n := int64(u)
			switch size {
			case 1:
				n = int64(uint8(u))
			case 2:
				n = int64(int16(u))
			case 4:
				n = int64(int32(u))
			}
			return n, nil
		default:
			return nil, clash(from, to, explicit)
		}
		i := truncRat(r)
		lo, hi := intRange(to)
		if !i.IsInt64() || i.Int64() < lo || i.Int64() > hi {
			return nil, overflow(to)
		}
		return i.Int64(), nil
	case famDecimal:
		switch ff {
		case famBit, famInt, famDecimal, famFloat:
			r, err := ratOf(v, from)
			if err != nil {
				return nil, err
			}
			return toDecimal(r, to)
		case famString:
			r, ok := parseDecimal(v.(string))
			if !ok {
				return nil, conversionFailed(from, to)
			}
			return toDecimal(r, to)
		}
	case famFloat:
		var f float64
		switch ff {
		case famBit, famInt, famDecimal:
			r, err := ratOf(v, from)
			if err != nil {
				return nil, err
			}
			f, _ = r.Float64()
		case famFloat:
			f = v.(float64)
		case famString:
			x, err := strconv.ParseFloat(strings.TrimSpace(v.(string)), 64)
			if err != nil {
				return nil, conversionFailed(from, to)
			}
			f = x
		default:
			return nil, clash(from, to, explicit)
		}
		if to.Name == "real" || (to.Precision >= 1 && to.Precision <= 24) {
			f = float64(float32(f))
		}
		return f, nil
	case famString:
		s, err := toText(v, from, to)
		if err != nil {
			return nil, err
		}
		if !isUnicode(to) {
			s = toCP1252Repertoire(s)
		}
		if n := to.Length; n > 0 {
			if r := []rune(s); len(r) > n {
				s = string(r[:n])
			}
			if to.Name == "char" || to.Name == "nchar" {
				if k := n - len([]rune(s)); k > 0 {
					s += strings.Repeat(" ", k)
				}
			}
		}
		return s, nil
	case famBinary:
		var b []byte
		switch ff {
		case famBinary, famGUID:
			b = v.([]byte)
		case famInt:
			b = make([]byte, 8)
			binary.BigEndian.PutUint64(b, uint64(v.(int64)))
			b = b[8-intSize(from):]
		case famBit:
			if v.(bool) {
				b = []byte{1}
			} else {
				b = []byte{0}
			}
		case famString:
			if isUnicode(from) {
				for _, u := range utf16.Encode([]rune(v.(string))) {
					b = append(b, byte(u), byte(u>>8))
				}
			} else {
				b, _ = encodeCP1252(v.(string))
			}
		default:
			return nil, clash(from, to, explicit)
		}
		return fitBinary(b, to, ff == famInt), nil
	case famGUID:
		switch ff {
		case famGUID:
			return v, nil
		case famBinary:
			b := v.([]byte)
			if len(b) < 16 {
				b = append(append([]byte(nil), b...), make([]byte, 16-len(b))...)
			}
			return append([]byte(nil), b[:16]...), nil
		case famString:
			g, ok := parseGUID(v.(string))
			if !ok {
				return nil, conversionFailed(from, to)
			}
			return g, nil
		}
	case famDate, famTime, famDateTime, famDTO:
		var t time.Time
		switch ff {
		case famDate, famTime, famDateTime, famDTO:
			t = v.(time.Time)
			if ff == famTime && ft != famTime {
				t = time.Date(1900, 1, 1, t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
			}
			if ff == famDTO && ft != famDTO {
				t = wallUTC(t) // the wall clock in its own offset
			}
		case famString:
			x, ok := parseTime(strings.TrimSpace(v.(string)), ft == famDTO)
			if !ok {
				return nil, conversionFailed(from, to)
			}
			t = x
		case famInt, famDecimal, famFloat:
			if ft != famDateTime || to.Name == "datetime2" {
				return nil, clash(from, to, explicit)
			}
			r, err := ratOf(v, from)
			if err != nil {
				return nil, err
			}
			days, _ := r.Float64()
			t = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(days * 24 * float64(time.Hour)))
		default:
			return nil, clash(from, to, explicit)
		}
		return fitTime(t, to)
	}
	if ff == ft && from.Name == to.Name {
		return v, nil
	}
	return nil, clash(from, to, explicit)
}

// fitBinary pads or truncates b for binary(n) and varbinary(n).
func fitBinary(b []byte, to schemas.Type, fromInt bool) []byte {
	n := to.Length
	if to.Name == "rowversion" {
		n = 8
	}
	out := append([]byte(nil), b...)
	if n <= 0 {
		return out
	}
	if len(out) > n {
		if fromInt {
			out = out[len(out)-n:]
		} else {
			out = out[:n]
		}
	}
	if (to.Name == "binary" || to.Name == "rowversion") && len(out) < n {
		if fromInt {
			out = append(make([]byte, n-len(out)), out...)
		} else {
			out = append(out, make([]byte, n-len(out))...)
		}
	}
	return out
}

// toText renders a value as CAST(... AS varchar/nvarchar) does (ISO forms
// for dates and times).
func toText(v any, from, to schemas.Type) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case int64:
		return strconv.FormatInt(x, 10), nil
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64), nil
	case []byte:
		switch familyOf(from) {
		case famGUID:
			return guidText(x), nil
		}
		if isUnicode(to) {
			u := make([]uint16, len(x)/2)
			for i := range u {
				u[i] = uint16(x[2*i]) | uint16(x[2*i+1])<<8
			}
			return string(utf16.Decode(u)), nil
		}
		return DecodeCP1252(x), nil
	case time.Time:
		switch from.Name {
		case "date":
			return x.Format("2006-01-02"), nil
		case "time":
			return x.Format("15:04:05") + fracText(x, fraction(from)), nil
		case "datetime":
			return x.Format("2006-01-02 15:04:05") + fracText(x, 3), nil
		case "smalldatetime":
			return x.Format("2006-01-02 15:04:05"), nil
		case "datetimeoffset":
			return x.Format("2006-01-02 15:04:05") + fracText(x, fraction(from)) + x.Format(" -07:00"), nil
		}
		return x.Format("2006-01-02 15:04:05") + fracText(x, fraction(from)), nil
	}
	return "", clash(from, to, true)
}

func fracText(t time.Time, digits int) string {
	if digits <= 0 {
		return ""
	}
	ns := fmt.Sprintf("%09d", t.Nanosecond())
	return "." + ns[:digits]
}

// wallUTC returns t's wall clock as a zone-less (UTC) value.
func wallUTC(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// fitTime rounds t to the precision of the date/time type to, as SQL Server
// does when it assigns or converts: datetime to its 1/300 s tick,
// smalldatetime to the minute, datetime2/time/datetimeoffset(n) to n
// digits, date to the day.
func fitTime(t time.Time, to schemas.Type) (time.Time, error) {
	switch to.Name {
	case "datetimeoffset":
		return roundFraction(t, fraction(to)), nil
	}
	t = wallUTC(t)
	switch to.Name {
	case "date":
		return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC), nil
	case "datetime":
		r := roundDatetime(t)
		if r.Year() < 1753 || r.Year() > 9999 {
			return time.Time{}, sqlError(242, 16, "The conversion of a date/time value to a datetime data type resulted in an out-of-range value.")
		}
		return r, nil
	case "smalldatetime":
		r := roundSmalldatetime(t)
		if r.Year() < 1900 || r.After(time.Date(2079, 6, 6, 23, 59, 0, 0, time.UTC)) {
			return time.Time{}, sqlError(242, 16, "The conversion of a date/time value to a smalldatetime data type resulted in an out-of-range value.")
		}
		return r, nil
	case "time":
		r := roundFraction(t, fraction(to))
		return time.Date(1, 1, 1, r.Hour(), r.Minute(), r.Second(), r.Nanosecond(), time.UTC), nil
	}
	return roundFraction(t, fraction(to)), nil
}

// roundFraction rounds t to digits fractional-second digits (half up).
func roundFraction(t time.Time, digits int) time.Time {
	unit := time.Duration(math.Pow10(9 - digits))
	ns := time.Duration(t.Nanosecond())
	r := (ns + unit/2) / unit * unit
	return t.Add(r - ns)
}

// ticksPerDay is the number of datetime ticks (1/300 s) in a day.
const ticksPerDay = 300 * 86400

// datetimeTicks returns t's datetime tick of its day, rounded as SQL Server
// rounds (.001 to .000, .002 to .003, .005 to .007 ...), and whether the
// rounding reached the next day.
func datetimeTicks(t time.Time) (int64, bool) {
	ns := int64(t.Hour())*int64(time.Hour) + int64(t.Minute())*int64(time.Minute) +
		int64(t.Second())*int64(time.Second) + int64(t.Nanosecond())
	ticks := int64(math.Floor(float64(ns)*300/1e9 + 0.5))
	if ticks >= ticksPerDay {
		return 0, true
	}
	return ticks, false
}

// roundDatetime rounds t to its datetime tick. The result's nanoseconds are
// the tick's exact time rounded to the nanosecond (tick 1 is 3.333333 ms).
func roundDatetime(t time.Time) time.Time {
	ticks, next := datetimeTicks(t)
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	if next {
		return day.AddDate(0, 0, 1)
	}
	return day.Add(time.Duration(math.Round(float64(ticks) * 1e7 / 3)))
}

// roundSmalldatetime rounds to the minute: 29.998 seconds and less round
// down, 29.999 and more up.
func roundSmalldatetime(t time.Time) time.Time {
	m := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), 0, 0, time.UTC)
	if t.Sub(m) >= 29999*time.Millisecond {
		m = m.Add(time.Minute)
	}
	return m
}

// parseTime reads the ISO date/time spellings SQL Server accepts.
func parseTime(s string, offset bool) (time.Time, bool) {
	layouts := []string{"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02 15:04:05.999999999 -07:00",
		"2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04", "2006-01-02 15:04", "2006-01-02", "20060102", "20060102 15:04:05.999999999",
		"15:04:05.999999999", "15:04"}
	for _, l := range layouts {
		if t, err := time.Parse(l, s); err == nil {
			if !offset {
				t = wallUTC(t)
			}
			if t.Year() == 0 {
				t = t.AddDate(1900, 0, 0)
			}
			return t, true
		}
	}
	return time.Time{}, false
}

// guidText renders wire-order GUID bytes as SQL Server spells them.
func guidText(b []byte) string {
	if len(b) != 16 {
		return strings.ToUpper(hex.EncodeToString(b))
	}
	u := rfcFromWire(b)
	return strings.ToUpper(u.String())
}

// rfcFromWire turns SQL Server's wire (storage) order into RFC 4122 order:
// the first three groups are little-endian on the wire.
func rfcFromWire(b []byte) uuid.UUID {
	var u uuid.UUID
	copy(u[:], b)
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	return u
}

// GUIDWire returns u in SQL Server's wire (storage) order, as go-mssqldb
// returns a uniqueidentifier and as the model holds it.
func GUIDWire(u uuid.UUID) []byte {
	b := u
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	return b[:]
}

func parseGUID(s string) ([]byte, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "{"), "}")
	if len(s) != 36 {
		return nil, false
	}
	u, err := uuid.Parse(s)
	if err != nil {
		return nil, false
	}
	return GUIDWire(u), true
}

// guidOrder is the order SQL Server compares a uniqueidentifier's bytes in,
// as indexes into its storage (wire) order: the last six bytes first, then
// bytes 8-9, 6-7, 4-5 and 0-3 (System.Data.SqlTypes.SqlGuid, which Microsoft
// documents as SQL Server's comparison; "How are GUIDs compared in SQL
// Server 2005?").
var guidOrder = [16]int{10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3}

// CompareGUID compares two uniqueidentifier values (16 bytes each, wire
// order) as SQL Server orders them.
func CompareGUID(a, b []byte) int {
	for _, i := range guidOrder {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

// compareBinary compares binary values as SQL Server does: the shorter one
// is padded with zero bytes on the right.
func compareBinary(a, b []byte) int {
	n := max(len(a), len(b))
	for i := range n {
		var x, y byte
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if c := cmp.Compare(x, y); c != 0 {
			return c
		}
	}
	return 0
}

// compareValues compares two non-NULL values as SQL Server compares them
// in its own order: numbers exactly, strings in the database collation,
// binary bytewise, uniqueidentifier by byte groups, dates and times after
// converting the lower type to the higher by data type precedence.
func compareValues(a any, ta schemas.Type, b any, tb schemas.Type) (int, error) {
	if x, ok := a.(tdstest.Variant); ok {
		return compareValues(x.Value, x.Type, b, tb)
	}
	if x, ok := b.(tdstest.Variant); ok {
		return compareValues(a, ta, x.Value, x.Type)
	}
	fa, fb := familyOf(ta), familyOf(tb)
	switch {
	case isNumeric(fa) && isNumeric(fb):
		if fa == famFloat || fb == famFloat {
			x, err := convert(a, ta, tFloat, false)
			if err != nil {
				return 0, err
			}
			y, err := convert(b, tb, tFloat, false)
			if err != nil {
				return 0, err
			}
			return cmp.Compare(x.(float64), y.(float64)), nil
		}
		x, err := ratOf(a, ta)
		if err != nil {
			return 0, err
		}
		y, err := ratOf(b, tb)
		if err != nil {
			return 0, err
		}
		return x.Cmp(y), nil
	case fa == famString && fb == famString:
		return Collate(a.(string), b.(string)), nil
	case fa == famBinary && fb == famBinary:
		return compareBinary(a.([]byte), b.([]byte)), nil
	case fa == famGUID && fb == famGUID:
		return CompareGUID(a.([]byte), b.([]byte)), nil
	case isTemporal(fa) && isTemporal(fb):
		h := higher(ta, tb)
		if fa == famDTO || fb == famDTO {
			x, err := convert(a, ta, h, false)
			if err != nil {
				return 0, err
			}
			y, err := convert(b, tb, h, false)
			if err != nil {
				return 0, err
			}
			return x.(time.Time).Compare(y.(time.Time)), nil
		}
		if h.Name == "datetime2" || h.Name == "datetime" || h.Name == "smalldatetime" {
			h = tDatetime2 // compare at datetime2(7) precision, as the wider type
		}
		x, err := convert(a, ta, h, false)
		if err != nil {
			return 0, err
		}
		y, err := convert(b, tb, h, false)
		if err != nil {
			return 0, err
		}
		return x.(time.Time).Compare(y.(time.Time)), nil
	}
	if fa == fb {
		return 0, clash(tb, ta, false)
	}
	if higher(ta, tb) == ta {
		y, err := convert(b, tb, ta, false)
		if err != nil {
			return 0, err
		}
		return compareValues(a, ta, y, ta)
	}
	x, err := convert(a, ta, tb, false)
	if err != nil {
		return 0, err
	}
	return compareValues(x, tb, b, tb)
}

// valueText is a value as tests and keys print it.
func valueText(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		return "0x" + strings.ToUpper(hex.EncodeToString(x))
	case time.Time:
		return x.Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}
