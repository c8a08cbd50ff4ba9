package arrowscan

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"
)

// Conversions from driver values. None of them goes through float64 for an
// exact type, and none of their errors carries the value.

// GUIDFromSQLServer converts the 16 bytes go-mssqldb returns for a
// uniqueidentifier (SQL Server's mixed-endian wire order: the first three
// groups little-endian) to RFC 4122 order, as mssql.UniqueIdentifier's Scan
// does (PITFALLS.md P12), without boxing the bytes; any other length is
// Scan's error.
func GUIDFromSQLServer(b []byte) (uuid.UUID, error) {
	if len(b) != 16 {
		var u mssql.UniqueIdentifier
		return uuid.UUID{}, fmt.Errorf("uniqueidentifier: %w", u.Scan(b))
	}
	var u uuid.UUID
	u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
	u[4], u[5] = b[5], b[4]
	u[6], u[7] = b[7], b[6]
	copy(u[8:], b[8:])
	return u, nil
}

// ParseDecimal parses exact decimal text (go-mssqldb's decimal, numeric and
// money values; PostgreSQL's numeric output) into a decimal128 at the given
// precision and scale. Fewer fractional digits than scale are padded; more are
// an error unless the extra digits are zeros: a value is never rounded
// (PITFALLS.md P13). NaN and infinities are errors.
func ParseDecimal(text string, precision, scale int32) (decimal128.Num, error) {
	if n, ok := parseSmallDecimal(text, scale); ok {
		return fitDecimal(n, precision)
	}
	return parseDecimal(text, precision, scale)
}

// parseDecimalBytes is ParseDecimal of text held in bytes, with no copy
// when the value fits parseSmallDecimal.
func parseDecimalBytes(text []byte, precision, scale int32) (decimal128.Num, error) {
	if n, ok := parseSmallDecimal(text, scale); ok {
		return fitDecimal(n, precision)
	}
	return parseDecimal(string(text), precision, scale)
}

// fitDecimal returns n, or ParseDecimal's error when it does not fit
// precision.
func fitDecimal(n decimal128.Num, precision int32) (decimal128.Num, error) {
	if !n.FitsInPrecision(precision) {
		return decimal128.Num{}, fmt.Errorf("value does not fit precision %d", precision)
	}
	return n, nil
}

// parseSmallDecimal parses, in one pass and without allocating, the
// decimal text parseDecimal takes whose digits, aligned to scale (0..18)
// and without leading zeros, are at most 18: the value, signed, unscaled.
// ok is false for everything else (errors included), which parseDecimal
// handles.
func parseSmallDecimal[T string | []byte](text T, scale int32) (n decimal128.Num, ok bool) {
	if scale < 0 || scale > 18 {
		return n, false
	}
	i, neg := 0, false
	if len(text) > 0 && (text[0] == '-' || text[0] == '+') {
		neg, i = text[0] == '-', 1
	}
	// v holds the digits so far without leading zeros, nd of them.
	var v uint64
	nd := 0
	add := func(d byte) bool {
		if v == 0 && d == 0 {
			return true
		}
		if nd++; nd > 18 {
			return false
		}
		v = v*10 + uint64(d)
		return true
	}
	start := i
	for ; i < len(text) && text[i] != '.'; i++ {
		d := text[i] - '0'
		if d > 9 || !add(d) {
			return n, false
		}
	}
	intLen, frac := i-start, int32(0)
	if i < len(text) {
		i++ // the point
		if intLen == 0 && i == len(text) {
			return n, false // nothing but a point
		}
		for ; i < len(text); i++ {
			d := text[i] - '0'
			switch {
			case d > 9:
				return n, false
			case frac == scale:
				if d != 0 {
					return n, false // more fractional digits than scale
				}
			default:
				frac++
				if !add(d) {
					return n, false
				}
			}
		}
	} else if intLen == 0 {
		return n, false // no digits at all
	}
	for ; frac < scale; frac++ {
		if !add(0) {
			return n, false
		}
	}
	x := int64(v)
	if neg {
		x = -x
	}
	return decimal128.FromI64(x), true
}

// parseDecimal is ParseDecimal for every text.
func parseDecimal(text string, precision, scale int32) (decimal128.Num, error) {
	s := text
	neg := false
	switch {
	case strings.HasPrefix(s, "-"):
		neg, s = true, s[1:]
	case strings.HasPrefix(s, "+"):
		s = s[1:]
	}
	intPart, frac, _ := strings.Cut(s, ".")
	if intPart == "" && frac == "" {
		return decimal128.Num{}, errors.New("not a decimal number")
	}
	for _, part := range []string{intPart, frac} {
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return decimal128.Num{}, errors.New("not a decimal number")
			}
		}
	}
	// Align the fraction to scale without rounding.
	if len(frac) > int(scale) {
		if strings.TrimRight(frac[scale:], "0") != "" {
			return decimal128.Num{}, fmt.Errorf("value has more than %d fractional digits", scale)
		}
		frac = frac[:scale]
	}
	digits := strings.TrimLeft(intPart+frac+strings.Repeat("0", int(scale)-len(frac)), "0")
	var n decimal128.Num
	switch {
	case digits == "":
		// zero
	case len(digits) <= 18:
		v, err := strconv.ParseInt(digits, 10, 64)
		if err != nil {
			return decimal128.Num{}, errors.New("not a decimal number")
		}
		n = decimal128.FromI64(v)
	default:
		v, ok := new(big.Int).SetString(digits, 10)
		if !ok || v.BitLen() > 127 {
			return decimal128.Num{}, fmt.Errorf("value does not fit precision %d", precision)
		}
		n = decimal128.FromBigInt(v)
	}
	if neg {
		n = n.Negate()
	}
	if !n.FitsInPrecision(precision) {
		return decimal128.Num{}, fmt.Errorf("value does not fit precision %d", precision)
	}
	return n, nil
}

// WallMicros returns the wall-clock reading of t (whatever its location) as
// microseconds since 1970-01-01 00:00:00, the representation of zone-less
// date-times (schemas.LocalTimestampType). go-mssqldb labels datetime,
// datetime2 and smalldatetime values with the connection's location (UTC by
// default) and pgx labels timestamp values UTC; the reading is what the
// source stored either way (PITFALLS.md P14). Sub-microsecond digits
// (datetime2(7)) are truncated, as the type mapping documents.
func WallMicros(t time.Time) int64 {
	if t.Location() == time.UTC {
		return t.Unix()*1_000_000 + int64(t.Nanosecond()/1000)
	}
	w := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
	return w.Unix()*1_000_000 + int64(w.Nanosecond()/1000)
}

// DateTimeTick returns the instant of the SQL Server datetime tick (1/300
// s) that t reads: go-mssqldb rounds a datetime to the millisecond
// (12:00:00.003 for the tick at 12:00:00.00333...), and SQL Server itself
// reads the value as its tick (CAST to datetime2 gives .0033333), so the
// store gets the tick's microsecond (rounded, as CAST to datetime2(6)), never a value 333 µs off (PITFALLS.md
// P14). A reading between ticks goes to the nearest.
func DateTimeTick(t time.Time) time.Time {
	sec := t.Truncate(time.Second)
	tick := (int64(t.Sub(sec))*300 + 5e8) / 1e9
	// To the microsecond, rounded, as CAST(... AS datetime2(6)) reads it.
	return sec.Add(time.Duration((tick*1e6+150)/300) * time.Microsecond)
}

// dateTimeWallMicros is WallMicros(DateTimeTick(t)), in one step for a
// time labelled UTC (go-mssqldb's default for zone-less values).
func dateTimeWallMicros(t time.Time) int64 {
	if t.Location() != time.UTC {
		return WallMicros(DateTimeTick(t))
	}
	tick := (int64(t.Nanosecond())*300 + 5e8) / 1e9
	return t.Unix()*1_000_000 + (tick*1e6+150)/300
}

// WallTime is the inverse of WallMicros: the wall-clock reading as a UTC
// time.Time.
func WallTime(micros int64) time.Time {
	return time.UnixMicro(micros).UTC()
}

// Date32 returns the days between 1970-01-01 and t's wall-clock date.
func Date32(t time.Time) arrow.Date32 {
	d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	return arrow.Date32(d.Unix() / 86400) // exact: d is a UTC midnight
}

// TimeOfDayMicros returns t's wall-clock time of day in microseconds
// (truncating time(7)'s 100 ns digit).
func TimeOfDayMicros(t time.Time) arrow.Time64 {
	return arrow.Time64(int64(t.Hour())*3_600_000_000 + int64(t.Minute())*60_000_000 +
		int64(t.Second())*1_000_000 + int64(t.Nanosecond()/1000))
}

// parseTimeOfDay parses PostgreSQL's time output, HH:MM:SS[.ffffff].
func parseTimeOfDay(s string) (time.Time, error) {
	t, err := time.Parse("15:04:05.999999999", s)
	if err != nil {
		if strings.HasPrefix(s, "24:00:00") {
			return time.Date(0, 1, 1, 24, 0, 0, 0, time.UTC), nil
		}
		return time.Time{}, errors.New("not a time of day")
	}
	return t, nil
}
