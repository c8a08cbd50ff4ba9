package synth

import (
	"encoding/hex"
	"strconv"
	"time"
)

// UUID is a uniqueidentifier value, its 16 bytes in RFC 4122 (string) order.
type UUID [16]byte

// String returns the canonical lower-case form, 8-4-4-4-12.
func (u UUID) String() string {
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:], u[10:])
	return string(b[:])
}

// Amount is an exact money amount in hundredths (numeric(19,2)).
type Amount int64

// String returns the amount as a decimal, e.g. "-12.05".
func (a Amount) String() string {
	neg := a < 0
	v := int64(a)
	if neg {
		v = -v
	}
	s := strconv.FormatInt(v/100, 10) + "." + strconv.FormatInt(100+v%100, 10)[1:]
	if neg {
		return "-" + s
	}
	return s
}

// dollars returns d whole dollars as an Amount.
func dollars(d int64) Amount { return Amount(d * 100) }

// pct returns a*p/100, rounded to the cent.
func (a Amount) pct(p float64) Amount {
	return Amount(float64(a)*p/100 + 0.5*sign(float64(a)))
}

func sign(f float64) float64 {
	if f < 0 {
		return -1
	}
	return 1
}

// ymd formats t as a NextGen business date, varchar(8) YYYYMMDD.
func ymd(t time.Time) string { return t.Format("20060102") }

// tick rounds t down to SQL Server datetime's resolution, 1/300 s, to the
// millisecond SQL Server shows for it (.000, .003, .007, ...), which both
// datetime and PostgreSQL timestamp(3) hold exactly.
func tick(t time.Time) time.Time {
	sec := t.Truncate(time.Second)
	ticks := int64(t.Sub(sec)) * 300 / int64(time.Second)
	ms := (ticks*10 + 1) / 3 // round(ticks * 10/3)
	return sec.Add(time.Duration(ms) * time.Millisecond)
}
