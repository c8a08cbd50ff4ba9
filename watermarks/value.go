package watermarks

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ValueType is the family of a Value's SQL type. It decides the Value's Go
// representation, its text form and how it compares; the exact source type
// (varchar(20) or nvarchar(20), int or bigint) is the Value's SQLType.
type ValueType string

// The value types. A Value of each type is made by the constructor of the
// same name (Int64 for TypeInt).
const (
	TypeNull           ValueType = "null"           // SQL NULL, of any column type
	TypeInt            ValueType = "int"            // tinyint, smallint, int, bigint; PostgreSQL int2, int4, int8
	TypeRowVersion     ValueType = "rowversion"     // rowversion/timestamp, binary(8) ordered bytewise
	TypeString         ValueType = "string"         // char, varchar, nchar, nvarchar; PostgreSQL text, varchar, bpchar
	TypeUUID           ValueType = "uuid"           // uniqueidentifier, uuid; 16 bytes in RFC 4122 order
	TypeDecimal        ValueType = "decimal"        // decimal, numeric, money, smallmoney: exact, unscaled integer and scale
	TypeDate           ValueType = "date"           // date, 0001-01-01 to 9999-12-31
	TypeDateTime       ValueType = "datetime"       // SQL Server datetime: 1/300 s ticks, 1753-01-01 to 9999-12-31
	TypeDateTime2      ValueType = "datetime2"      // datetime2(n), smalldatetime; PostgreSQL timestamp: wall clock to the nanosecond, no zone
	TypeDateTimeOffset ValueType = "datetimeoffset" // datetimeoffset; PostgreSQL timestamptz: instant and offset in minutes
	TypeBytes          ValueType = "bytes"          // binary, varbinary; PostgreSQL bytea
	TypeBool           ValueType = "bool"           // bit; PostgreSQL boolean
)

func (t ValueType) known() bool {
	switch t {
	case TypeNull, TypeInt, TypeRowVersion, TypeString, TypeUUID, TypeDecimal, TypeDate,
		TypeDateTime, TypeDateTime2, TypeDateTimeOffset, TypeBytes, TypeBool:
		return true
	}
	return false
}

// Limits of the value types.
const (
	MaxDecimalDigits = 1000 // digits of a decimal's unscaled integer
	MaxDecimalScale  = 1000
	MaxSQLTypeLen    = 128
	maxOffsetMinutes = 14 * 60
	ticksPerSecond   = 300
	ticksPerDay      = ticksPerSecond * 86400
	secondsPerDay    = 86400
)

var (
	minDay         = unixDay(1, time.January, 1)
	maxDay         = unixDay(9999, time.December, 31)
	minDateTimeDay = unixDay(1753, time.January, 1)
	day1900        = unixDay(1900, time.January, 1)
)

func unixDay(y int, m time.Month, d int) int64 {
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC).Unix() / secondsPerDay
}

// Value is one typed SQL value: a cursor value or a key column's value. It
// keeps its value exactly (no float, no rounding of time) and its SQL type,
// so that an extractor can bind it back as a parameter of the column's exact
// type (PITFALLS P15).
//
// The zero Value is not valid: make Values with the constructors. Values are
// comparable with ==, which is the same as Equal.
type Value struct {
	typ ValueType
	sql string
	// By type:
	//   int, bool:          i (bool 0 or 1)
	//   date:               i days since 1970-01-01
	//   datetime:           i days since 1970-01-01, n ticks since midnight
	//   datetime2:          i seconds since 1970-01-01T00:00:00 of the wall clock, n nanoseconds
	//   datetimeoffset:     i Unix seconds of the instant, n nanoseconds, off minutes east of UTC
	//   decimal:            s canonical unscaled integer, n scale
	//   string:             s
	//   rowversion, uuid, bytes: s the bytes
	i   int64
	n   int64
	off int32
	s   string
}

// Null is SQL NULL. It sorts before every other value (Compare).
func Null() Value { return Value{typ: TypeNull} }

// Int64 is an integer of any width.
func Int64(v int64) Value { return Value{typ: TypeInt, i: v} }

// Bool is a bit or boolean.
func Bool(b bool) Value {
	v := Value{typ: TypeBool}
	if b {
		v.i = 1
	}
	return v
}

// RowVersion is a SQL Server rowversion, as its 8 bytes.
func RowVersion(b [8]byte) Value { return Value{typ: TypeRowVersion, s: string(b[:])} }

// String is a character string. sqlType is the column's type as the source
// spells it (varchar(20), nvarchar(max), char(10), text): it decides whether
// the extractor binds the value as varchar or nvarchar (PITFALLS P15), so it
// is required. s must be valid UTF-8 without NUL characters (PostgreSQL jsonb
// cannot hold NUL); Encode checks.
func String(sqlType, s string) Value { return Value{typ: TypeString, sql: sqlType, s: s} }

// UUID is a uniqueidentifier or uuid in RFC 4122 byte order (the order of its
// text form). go-mssqldb's mssql.UniqueIdentifier already converts from SQL
// Server's mixed-endian wire order (PITFALLS P12).
func UUID(u [16]byte) Value { return Value{typ: TypeUUID, s: string(u[:])} }

// Bytes is a binary, varbinary or bytea value. It copies b. Bytes(nil) is the
// empty binary value, not NULL.
func Bytes(b []byte) Value { return Value{typ: TypeBytes, s: string(b)} }

// Decimal is the exact decimal unscaled × 10^-scale: Decimal("-12345", 2) is
// -123.45. unscaled is a base-10 integer with an optional minus sign; scale
// is 0 to MaxDecimalScale. The scale is kept: 1.50 (scale 2) is a different
// Value from 1.5, though they compare equal.
func Decimal(unscaled string, scale int) (Value, error) {
	u, err := canonicalInteger(unscaled)
	if err != nil {
		return Value{}, err
	}
	if scale < 0 || scale > MaxDecimalScale {
		return Value{}, invalidf("", "decimal scale %d out of range 0..%d", scale, MaxDecimalScale)
	}
	return Value{typ: TypeDecimal, s: u, n: int64(scale)}, nil
}

// ParseDecimal parses a decimal written as SQL Server and PostgreSQL print
// it: -123.45, 0.005, 42. The number of digits after the point is the scale.
func ParseDecimal(text string) (Value, error) {
	intPart, frac, hasPoint := strings.Cut(text, ".")
	if hasPoint && frac == "" {
		return Value{}, invalidf("", "decimal has no digits after the point")
	}
	if strings.HasPrefix(frac, "-") || strings.HasPrefix(frac, "+") {
		return Value{}, invalidf("", "decimal is not a base-10 number")
	}
	digits := strings.TrimPrefix(intPart, "-")
	if digits == "" {
		return Value{}, invalidf("", "decimal has no digits before the point")
	}
	return Decimal(intPart+frac, len(frac))
}

func canonicalInteger(s string) (string, error) {
	d, neg := strings.CutPrefix(s, "-")
	if d == "" {
		return "", invalidf("", "decimal has no digits")
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return "", invalidf("", "decimal is not a base-10 number")
		}
	}
	d = strings.TrimLeft(d, "0")
	if d == "" {
		return "0", nil
	}
	if len(d) > MaxDecimalDigits {
		return "", invalidf("", "decimal has %d digits, more than %d", len(d), MaxDecimalDigits)
	}
	if neg {
		return "-" + d, nil
	}
	return d, nil
}

// Date is the calendar date of t in t's location, 0001-01-01 to 9999-12-31.
func Date(t time.Time) (Value, error) {
	y, m, d := t.Date()
	if y < 1 || y > 9999 {
		return Value{}, invalidf("", "date year %d out of range 1..9999", y)
	}
	return Value{typ: TypeDate, i: unixDay(y, m, d)}, nil
}

// DateTime is a SQL Server datetime: t's wall clock in t's location, rounded
// to the nearest 1/300 second tick as SQL Server rounds. go-mssqldb returns
// datetime values rounded to the millisecond; that rounding is undone here,
// so DateTime of a value read from the driver is exactly the stored value
// (PITFALLS P14). 1753-01-01 to 9999-12-31 23:59:59.997.
func DateTime(t time.Time) (Value, error) {
	y, mo, d := t.Date()
	if y < 1753 || y > 9999 {
		return Value{}, invalidf("", "datetime year %d out of range 1753..9999", y)
	}
	h, mi, s := t.Clock()
	ns := int64(h*3600+mi*60+s)*1e9 + int64(t.Nanosecond())
	ticks := (ns*3 + 5_000_000) / 10_000_000 // round(ns × 300 / 1e9)
	day := unixDay(y, mo, d)
	if ticks == ticksPerDay {
		day, ticks = day+1, 0
	}
	if day > maxDay {
		return Value{}, invalidf("", "datetime after 9999-12-31 23:59:59.997")
	}
	return Value{typ: TypeDateTime, i: day, n: ticks}, nil
}

// DateTimeTicks is a SQL Server datetime from its stored parts: days since
// 1900-01-01 (negative before) and 1/300 s ticks since midnight.
func DateTimeTicks(days, ticks int32) (Value, error) {
	day := day1900 + int64(days)
	if day < minDateTimeDay || day > maxDay {
		return Value{}, invalidf("", "datetime day %d out of range 1753-01-01..9999-12-31", days)
	}
	if ticks < 0 || ticks >= ticksPerDay {
		return Value{}, invalidf("", "datetime ticks %d out of range 0..%d", ticks, ticksPerDay-1)
	}
	return Value{typ: TypeDateTime, i: day, n: int64(ticks)}, nil
}

// DateTime2 is a datetime2(n), smalldatetime or PostgreSQL timestamp: t's
// wall clock in t's location to the nanosecond, without a zone.
// go-mssqldb and pgx return these as UTC times. 0001-01-01 to 9999-12-31.
func DateTime2(t time.Time) (Value, error) {
	y, mo, d := t.Date()
	if y < 1 || y > 9999 {
		return Value{}, invalidf("", "datetime2 year %d out of range 1..9999", y)
	}
	h, mi, s := t.Clock()
	sec := time.Date(y, mo, d, h, mi, s, 0, time.UTC).Unix()
	return Value{typ: TypeDateTime2, i: sec, n: int64(t.Nanosecond())}, nil
}

// DateTimeOffset is a datetimeoffset or PostgreSQL timestamptz: t's instant
// and t's offset from UTC, which must be whole minutes within ±14:00. The
// instant must fall in 0001-01-01..9999-12-31 UTC, and so must its wall
// clock at its offset. For timestamptz, whose
// offset is only the session's, pass t.UTC().
func DateTimeOffset(t time.Time) (Value, error) {
	_, off := t.Zone()
	if off%60 != 0 {
		return Value{}, invalidf("", "datetimeoffset offset of %d seconds is not whole minutes", off)
	}
	if off < -maxOffsetMinutes*60 || off > maxOffsetMinutes*60 {
		return Value{}, invalidf("", "datetimeoffset offset of %d minutes out of range ±14:00", off/60)
	}
	u := t.UTC()
	if y := u.Year(); y < 1 || y > 9999 {
		return Value{}, invalidf("", "datetimeoffset year %d (UTC) out of range 1..9999", y)
	}
	// The text form carries the local wall clock, which must be in range
	// too: 9999-12-31T23:59Z at +00:30 would be written as year 10000 and
	// not decode again (found by FuzzPosition).
	if y := t.Year(); y < 1 || y > 9999 {
		return Value{}, invalidf("", "datetimeoffset year %d (at its offset) out of range 1..9999", y)
	}
	return Value{typ: TypeDateTimeOffset, i: u.Unix(), n: int64(u.Nanosecond()), off: int32(off / 60)}, nil
}

// WithSQLType returns v with its SQL type set: the column's type as the
// source spells it (int, bigint, numeric(19,2), datetime2(3), varchar(20)).
// It is required for strings and optional otherwise, where the ValueType
// already says how to bind the value.
func (v Value) WithSQLType(sqlType string) Value {
	v.sql = sqlType
	return v
}

// Type is v's value type.
func (v Value) Type() ValueType { return v.typ }

// SQLType is v's source column type, or "" when it was not given.
func (v Value) SQLType() string { return v.sql }

// IsNull reports whether v is SQL NULL.
func (v Value) IsNull() bool { return v.typ == TypeNull }

// AsInt64 returns an int value.
func (v Value) AsInt64() (int64, bool) { return v.i, v.typ == TypeInt }

// AsBool returns a bool value.
func (v Value) AsBool() (bool, bool) { return v.i == 1, v.typ == TypeBool }

// AsRowVersion returns a rowversion's bytes.
func (v Value) AsRowVersion() ([8]byte, bool) {
	var b [8]byte
	if v.typ != TypeRowVersion {
		return b, false
	}
	copy(b[:], v.s)
	return b, true
}

// AsString returns a string value.
func (v Value) AsString() (string, bool) {
	if v.typ != TypeString {
		return "", false
	}
	return v.s, true
}

// AsUUID returns a uuid's bytes in RFC 4122 order.
func (v Value) AsUUID() ([16]byte, bool) {
	var b [16]byte
	if v.typ != TypeUUID {
		return b, false
	}
	copy(b[:], v.s)
	return b, true
}

// AsBytes returns a copy of a binary value.
func (v Value) AsBytes() ([]byte, bool) {
	if v.typ != TypeBytes {
		return nil, false
	}
	return []byte(v.s), true
}

// AsDecimal returns a decimal's unscaled integer (base 10, canonical: no
// leading zeros, "-" for negatives, "0" for zero) and its scale.
func (v Value) AsDecimal() (unscaled string, scale int, ok bool) {
	if v.typ != TypeDecimal {
		return "", 0, false
	}
	return v.s, int(v.n), true
}

// AsDate returns a date as midnight UTC.
func (v Value) AsDate() (time.Time, bool) {
	if v.typ != TypeDate {
		return time.Time{}, false
	}
	return time.Unix(v.i*secondsPerDay, 0).UTC(), true
}

// AsDateTime returns a datetime as a UTC time. A tick is 3⅓ ms, which a
// nanosecond time cannot hold exactly: the time is rounded up to the next
// nanosecond, so that DateTime of it, and drivers that truncate to ticks
// (go-mssqldb binding a time.Time as datetime), give back the same tick.
// Never round it to milliseconds (PITFALLS P14).
func (v Value) AsDateTime() (time.Time, bool) {
	if v.typ != TypeDateTime {
		return time.Time{}, false
	}
	k := v.n % ticksPerSecond
	ns := (k*1_000_000_000 + ticksPerSecond - 1) / ticksPerSecond
	return time.Unix(v.i*secondsPerDay+v.n/ticksPerSecond, ns).UTC(), true
}

// AsDateTimeTicks returns a datetime's stored parts: days since 1900-01-01
// and 1/300 s ticks since midnight.
func (v Value) AsDateTimeTicks() (days, ticks int32, ok bool) {
	if v.typ != TypeDateTime {
		return 0, 0, false
	}
	return int32(v.i - day1900), int32(v.n), true
}

// AsDateTime2 returns a datetime2 or timestamp's wall clock as a UTC time.
func (v Value) AsDateTime2() (time.Time, bool) {
	if v.typ != TypeDateTime2 {
		return time.Time{}, false
	}
	return time.Unix(v.i, v.n).UTC(), true
}

// AsDateTimeOffset returns a datetimeoffset's instant in a fixed zone of its
// offset.
func (v Value) AsDateTimeOffset() (time.Time, bool) {
	if v.typ != TypeDateTimeOffset {
		return time.Time{}, false
	}
	return time.Unix(v.i, v.n).In(time.FixedZone("", int(v.off)*60)), true
}

// OffsetMinutes returns a datetimeoffset's offset east of UTC in minutes.
func (v Value) OffsetMinutes() (int, bool) { return int(v.off), v.typ == TypeDateTimeOffset }

// Text is v's canonical text, the "v" of its JSON form, which ParseValue
// reads back. It is the value itself: never log it (see the package doc).
// NULL's text is "".
//
//	int             -9223372036854775808
//	rowversion      0x00000000000007D1
//	string          the string
//	uuid            6f9619ff-8b86-d011-b42d-00c04fc964ff
//	decimal         -123.45 (as many fraction digits as the scale)
//	date            2026-11-01
//	datetime        2026-11-01T08:30:00.003 (SQL Server's rendering of a tick: .000 .003 .007 .010 ...)
//	datetime2       2026-11-01T08:30:00.1234567 (trailing zeros dropped)
//	datetimeoffset  2026-11-01T08:30:00.5+05:30
//	bytes           0x0102FF
//	bool            true
func (v Value) Text() string {
	switch v.typ {
	case TypeInt:
		return strconv.FormatInt(v.i, 10)
	case TypeBool:
		return strconv.FormatBool(v.i == 1)
	case TypeString:
		return v.s
	case TypeRowVersion, TypeBytes:
		return "0x" + strings.ToUpper(hex.EncodeToString([]byte(v.s)))
	case TypeUUID:
		h := hex.EncodeToString([]byte(v.s))
		if len(h) != 32 {
			return h
		}
		return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
	case TypeDecimal:
		return decimalText(v.s, int(v.n))
	case TypeDate:
		t, _ := v.AsDate()
		return t.Format(dateLayout)
	case TypeDateTime:
		d := time.Unix(v.i*secondsPerDay, 0).UTC()
		sec := v.n / ticksPerSecond
		ms := (v.n%ticksPerSecond*10 + 1) / 3 // SQL Server's rendering: round(k × 10/3)
		return fmt.Sprintf("%sT%02d:%02d:%02d.%03d", d.Format(dateLayout), sec/3600, sec/60%60, sec%60, ms)
	case TypeDateTime2:
		t, _ := v.AsDateTime2()
		return t.Format(dateTime2Layout)
	case TypeDateTimeOffset:
		t, _ := v.AsDateTimeOffset()
		return t.Format(dateTimeOffsetLayout)
	}
	return ""
}

const (
	dateLayout           = "2006-01-02"
	dateTimeLayout       = "2006-01-02T15:04:05.000"
	dateTime2Layout      = "2006-01-02T15:04:05.999999999"
	dateTimeOffsetLayout = "2006-01-02T15:04:05.999999999-07:00"
)

func decimalText(unscaled string, scale int) string {
	if scale == 0 {
		return unscaled
	}
	d, neg := strings.CutPrefix(unscaled, "-")
	if len(d) <= scale {
		d = strings.Repeat("0", scale-len(d)+1) + d
	}
	s := d[:len(d)-scale] + "." + d[len(d)-scale:]
	if neg {
		return "-" + s
	}
	return s
}

// ParseValue reads a value of type t from its canonical text (Text). It is
// how an operator's rewind and the codec make Values.
func ParseValue(t ValueType, sqlType, text string) (Value, error) {
	v, err := parseValue(t, text)
	if err != nil {
		return Value{}, err
	}
	v.sql = sqlType
	return v, v.Validate()
}

func parseValue(t ValueType, text string) (Value, error) {
	switch t {
	case TypeNull:
		if text != "" {
			return Value{}, invalidf("", "null has no text")
		}
		return Null(), nil
	case TypeInt:
		i, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return Value{}, invalidf("", "int is not a base-10 64-bit integer")
		}
		return Int64(i), nil
	case TypeBool:
		switch text {
		case "true":
			return Bool(true), nil
		case "false":
			return Bool(false), nil
		}
		return Value{}, invalidf("", "bool is not true or false")
	case TypeString:
		return Value{typ: TypeString, s: text}, nil
	case TypeRowVersion:
		b, err := parseHex(text)
		if err != nil {
			return Value{}, invalidf("", "rowversion: %s", err)
		}
		if len(b) != 8 {
			return Value{}, invalidf("", "rowversion has %d bytes, want 8", len(b))
		}
		return RowVersion([8]byte(b)), nil
	case TypeBytes:
		b, err := parseHex(text)
		if err != nil {
			return Value{}, invalidf("", "bytes: %s", err)
		}
		return Bytes(b), nil
	case TypeUUID:
		u, err := parseUUID(text)
		if err != nil {
			return Value{}, err
		}
		return UUID(u), nil
	case TypeDecimal:
		return ParseDecimal(text)
	case TypeDate:
		d, err := time.Parse(dateLayout, text)
		if err != nil {
			return Value{}, invalidf("", "date is not YYYY-MM-DD")
		}
		return Date(d)
	case TypeDateTime:
		d, err := time.Parse(dateTimeLayout, text)
		if err != nil {
			return Value{}, invalidf("", "datetime is not YYYY-MM-DDThh:mm:ss.fff")
		}
		ms := int64(d.Nanosecond() / 1e6)
		if k := (ms*3 + 5) / 10; (k*10+1)/3 != ms {
			return Value{}, invalidf("", "datetime milliseconds .%03d are not a 1/300 s tick (.000, .003, .007, .010, ...)", ms)
		}
		return DateTime(d)
	case TypeDateTime2:
		d, err := time.Parse(dateTime2Layout, text)
		if err != nil {
			return Value{}, invalidf("", "datetime2 is not YYYY-MM-DDThh:mm:ss[.fffffffff]")
		}
		return DateTime2(d)
	case TypeDateTimeOffset:
		d, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return Value{}, invalidf("", "datetimeoffset is not YYYY-MM-DDThh:mm:ss[.fffffffff]±hh:mm")
		}
		return DateTimeOffset(d)
	case "":
		return Value{}, invalidf("", "value has no type")
	}
	return Value{}, invalidf("", "unknown value type %q", string(t))
}

func parseHex(s string) ([]byte, error) {
	h, ok := strings.CutPrefix(s, "0x")
	if !ok {
		if h, ok = strings.CutPrefix(s, "0X"); !ok {
			return nil, fmt.Errorf("want 0x and hex digits")
		}
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		return nil, fmt.Errorf("not hexadecimal")
	}
	return b, nil
}

func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return u, invalidf("", "uuid is not xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx")
	}
	h := s[:8] + s[9:13] + s[14:18] + s[19:23] + s[24:]
	if _, err := hex.Decode(u[:], []byte(h)); err != nil {
		return u, invalidf("", "uuid is not hexadecimal")
	}
	return u, nil
}

// Validate checks that v is a value the codec can encode: a known type, a
// string with its SQL type, valid UTF-8 without NUL, values within their
// type's range.
func (v Value) Validate() error {
	if v.typ == "" {
		return invalidf("", "value has no type")
	}
	if !v.typ.known() {
		return invalidf("", "unknown value type %q", string(v.typ))
	}
	if len(v.sql) > MaxSQLTypeLen {
		return invalidf("", "sql type longer than %d bytes", MaxSQLTypeLen)
	}
	for i := 0; i < len(v.sql); i++ {
		if v.sql[i] < 0x20 || v.sql[i] > 0x7e {
			return invalidf("", "sql type has a character that is not printable ASCII")
		}
	}
	switch v.typ {
	case TypeString:
		if v.sql == "" {
			return invalidf("", "string has no sql type (varchar or nvarchar decides how it is bound)")
		}
		if !utf8.ValidString(v.s) {
			return invalidf("", "string is not valid UTF-8")
		}
		if strings.IndexByte(v.s, 0) >= 0 {
			return invalidf("", "string has a NUL character, which PostgreSQL jsonb cannot store")
		}
	case TypeBool:
		if v.i != 0 && v.i != 1 {
			return invalidf("", "bool is not 0 or 1")
		}
	case TypeRowVersion:
		if len(v.s) != 8 {
			return invalidf("", "rowversion has %d bytes, want 8", len(v.s))
		}
	case TypeUUID:
		if len(v.s) != 16 {
			return invalidf("", "uuid has %d bytes, want 16", len(v.s))
		}
	case TypeDecimal:
		if c, err := canonicalInteger(v.s); err != nil {
			return err
		} else if c != v.s {
			return invalidf("", "decimal unscaled integer is not canonical")
		}
		if v.n < 0 || v.n > MaxDecimalScale {
			return invalidf("", "decimal scale %d out of range 0..%d", v.n, MaxDecimalScale)
		}
	case TypeDate:
		if v.i < minDay || v.i > maxDay {
			return invalidf("", "date out of range 0001-01-01..9999-12-31")
		}
	case TypeDateTime:
		if v.i < minDateTimeDay || v.i > maxDay {
			return invalidf("", "datetime out of range 1753-01-01..9999-12-31")
		}
		if v.n < 0 || v.n >= ticksPerDay {
			return invalidf("", "datetime ticks out of range 0..%d", ticksPerDay-1)
		}
	case TypeDateTime2, TypeDateTimeOffset:
		if v.i < minDay*secondsPerDay || v.i >= (maxDay+1)*secondsPerDay || v.n < 0 || v.n >= 1e9 {
			return invalidf("", "%s out of range 0001-01-01..9999-12-31", v.typ)
		}
		if v.off < -maxOffsetMinutes || v.off > maxOffsetMinutes || (v.typ == TypeDateTime2 && v.off != 0) {
			return invalidf("", "%s offset out of range ±14:00", v.typ)
		}
	}
	return nil
}

// String names v's type and SQL type, never its value: "<int>",
// "<string varchar(20)>". Values are row data (see the package doc); Text
// gives the value.
func (v Value) String() string {
	t := string(v.typ)
	if t == "" {
		t = "invalid"
	}
	if v.sql != "" {
		return "<" + t + " " + v.sql + ">"
	}
	return "<" + t + ">"
}

// LogValue logs v as String does, without its value.
func (v Value) LogValue() slog.Value { return slog.StringValue(v.String()) }

// Key is the values of a row's key columns, in the key's column order.
type Key []Value

// String counts the key's values, never showing them.
func (k Key) String() string {
	if len(k) == 1 {
		return "<key of 1 value>"
	}
	return fmt.Sprintf("<key of %d values>", len(k))
}

// LogValue logs k as String does, without its values.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Text is the key's values as text, "(v1, v2)": row data, never log it.
func (k Key) Text() string {
	parts := make([]string, len(k))
	for i, v := range k {
		switch v.typ {
		case TypeNull:
			parts[i] = "NULL"
		case TypeString:
			parts[i] = strconv.Quote(v.s)
		default:
			parts[i] = v.Text()
		}
	}
	return "(" + strings.Join(parts, ", ") + ")"
}
