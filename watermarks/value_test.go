package watermarks_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// must returns a function that unwraps a constructor's (Value, error).
func must(t *testing.T) func(watermarks.Value, error) watermarks.Value {
	return func(v watermarks.Value, err error) watermarks.Value {
		t.Helper()
		require.NoError(t, err)
		return v
	}
}

// valueCases is one case per supported SQL type and its extremes: each must
// survive Text/ParseValue and the position codec unchanged.
func valueCases(t *testing.T) []struct {
	name string
	v    watermarks.Value
	text string
} {
	t.Helper()
	mv := must(t)
	utc := func(y int, m time.Month, d, h, mi, s, ns int) time.Time {
		return time.Date(y, m, d, h, mi, s, ns, time.UTC)
	}
	ist := time.FixedZone("IST", 5*3600+30*60)
	pst := time.FixedZone("PST", -8*3600)
	return []struct {
		name string
		v    watermarks.Value
		text string
	}{
		{"int zero", watermarks.Int64(0), "0"},
		{"int64 min", watermarks.Int64(-9223372036854775808).WithSQLType("bigint"), "-9223372036854775808"},
		{"int64 max", watermarks.Int64(9223372036854775807).WithSQLType("bigint"), "9223372036854775807"},
		{"int as smallint", watermarks.Int64(-32768).WithSQLType("smallint"), "-32768"},
		{"rowversion max", watermarks.RowVersion([8]byte{0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}), "0xFFFFFFFFFFFFFFFF"},
		{"rowversion", watermarks.RowVersion([8]byte{7: 0xD1, 6: 0x07}).WithSQLType("timestamp"), "0x00000000000007D1"},
		{"varchar", watermarks.String("varchar(20)", "A-100"), "A-100"},
		{"empty varchar", watermarks.String("varchar(20)", ""), ""},
		{"nvarchar unicode", watermarks.String("nvarchar(max)", "Ærøskøbing – 東京 🚑 \"q\" \\ <&>"), "Ærøskøbing – 東京 🚑 \"q\" \\ <&>"},
		{"char padded", watermarks.String("char(10)", "AB        "), "AB        "},
		{"control characters", watermarks.String("varchar(10)", "a\tb\nc\x01"), "a\tb\nc\x01"},
		{"uuid", watermarks.UUID([16]byte{0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff}), "6f9619ff-8b86-d011-b42d-00c04fc964ff"},
		{"uuid max", watermarks.UUID([16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}).WithSQLType("uniqueidentifier"), "ffffffff-ffff-ffff-ffff-ffffffffffff"},
		{"numeric(19,2) max", mv(watermarks.Decimal("9999999999999999999", 2)).WithSQLType("numeric(19,2)"), "99999999999999999.99"},
		{"numeric(19,2) min", mv(watermarks.Decimal("-9999999999999999999", 2)).WithSQLType("numeric(19,2)"), "-99999999999999999.99"},
		{"decimal(38,0) max", mv(watermarks.ParseDecimal("99999999999999999999999999999999999999")), "99999999999999999999999999999999999999"},
		{"zero scale", mv(watermarks.Decimal("12345", 0)), "12345"},
		{"zero with scale", mv(watermarks.Decimal("-0", 2)), "0.00"},
		{"small negative", mv(watermarks.Decimal("-5", 3)).WithSQLType("decimal(10,3)"), "-0.005"},
		{"money", mv(watermarks.ParseDecimal("-922337203685477.5808")).WithSQLType("money"), "-922337203685477.5808"},
		{"date min", mv(watermarks.Date(utc(1, 1, 1, 0, 0, 0, 0))), "0001-01-01"},
		{"date max", mv(watermarks.Date(utc(9999, 12, 31, 0, 0, 0, 0))), "9999-12-31"},
		{"datetime min", mv(watermarks.DateTime(utc(1753, 1, 1, 0, 0, 0, 0))), "1753-01-01T00:00:00.000"},
		{"datetime max", mv(watermarks.DateTime(utc(9999, 12, 31, 23, 59, 59, 997_000_000))), "9999-12-31T23:59:59.997"},
		{"datetime tick 1", mv(watermarks.DateTimeTicks(46_000, 1)), "2025-12-11T00:00:00.003"},
		{"datetime tick 2", mv(watermarks.DateTime(utc(2026, 11, 1, 8, 30, 0, 7_000_000))), "2026-11-01T08:30:00.007"},
		{"datetime2(7) 100ns", mv(watermarks.DateTime2(utc(2026, 11, 1, 8, 30, 0, 100))).WithSQLType("datetime2(7)"), "2026-11-01T08:30:00.0000001"},
		{"datetime2 min", mv(watermarks.DateTime2(utc(1, 1, 1, 0, 0, 0, 0))), "0001-01-01T00:00:00"},
		{"datetime2 max", mv(watermarks.DateTime2(utc(9999, 12, 31, 23, 59, 59, 999_999_900))).WithSQLType("datetime2(7)"), "9999-12-31T23:59:59.9999999"},
		{"timestamp ns", mv(watermarks.DateTime2(utc(2262, 4, 12, 0, 0, 0, 123_456_789))).WithSQLType("timestamp"), "2262-04-12T00:00:00.123456789"},
		{"datetimeoffset +05:30", mv(watermarks.DateTimeOffset(time.Date(2026, 11, 1, 8, 30, 0, 123_456_700, ist))), "2026-11-01T08:30:00.1234567+05:30"},
		{"datetimeoffset -08:00", mv(watermarks.DateTimeOffset(time.Date(2026, 11, 1, 8, 30, 0, 0, pst))), "2026-11-01T08:30:00-08:00"},
		{"datetimeoffset utc", mv(watermarks.DateTimeOffset(utc(2026, 11, 1, 8, 30, 0, 0))).WithSQLType("timestamptz"), "2026-11-01T08:30:00+00:00"},
		{"datetimeoffset max", mv(watermarks.DateTimeOffset(time.Date(9999, 12, 31, 23, 59, 59, 999_999_900, time.FixedZone("", -14*3600)).Add(-14 * time.Hour))), "9999-12-31T09:59:59.9999999-14:00"},
		{"bytes", watermarks.Bytes([]byte{0x00, 0xFF, 0x10}).WithSQLType("varbinary(16)"), "0x00FF10"},
		{"empty bytes", watermarks.Bytes(nil), "0x"},
		{"bool true", watermarks.Bool(true).WithSQLType("bit"), "true"},
		{"bool false", watermarks.Bool(false), "false"},
		{"null", watermarks.Null(), ""},
		{"typed null", watermarks.Null().WithSQLType("datetime"), ""},
	}
}

func TestValueTextRoundTrip(t *testing.T) {
	for _, tc := range valueCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.v.Validate())
			require.Equal(t, tc.text, tc.v.Text())
			got, err := watermarks.ParseValue(tc.v.Type(), tc.v.SQLType(), tc.text)
			require.NoError(t, err)
			require.Equal(t, tc.v, got)
			require.True(t, watermarks.Equal(tc.v, got))
		})
	}
}

func TestValueCodecRoundTrip(t *testing.T) {
	for _, tc := range valueCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			p := watermarks.Cursor{Column: "c", Value: tc.v}
			if !tc.v.IsNull() {
				p.Key = watermarks.Key{tc.v, watermarks.Int64(1)}
			}
			b, err := watermarks.Encode(p)
			require.NoError(t, err)
			got, err := watermarks.Decode(b)
			require.NoError(t, err)
			require.Equal(t, p, got)
			again, err := watermarks.Encode(got)
			require.NoError(t, err)
			require.Equal(t, string(b), string(again))
		})
	}
}

func TestValueAccessors(t *testing.T) {
	mv := must(t)
	v := watermarks.Int64(42)
	i, ok := v.AsInt64()
	require.True(t, ok)
	require.Equal(t, int64(42), i)
	_, ok = v.AsString()
	require.False(t, ok, "an int is not a string")

	s, ok := watermarks.String("nvarchar(10)", "x").AsString()
	require.True(t, ok)
	require.Equal(t, "x", s)

	rv, ok := watermarks.RowVersion([8]byte{1, 2, 3, 4, 5, 6, 7, 8}).AsRowVersion()
	require.True(t, ok)
	require.Equal(t, [8]byte{1, 2, 3, 4, 5, 6, 7, 8}, rv)

	u, ok := watermarks.UUID([16]byte{15: 9}).AsUUID()
	require.True(t, ok)
	require.Equal(t, [16]byte{15: 9}, u)

	in := []byte{1, 2}
	bv := watermarks.Bytes(in)
	in[0] = 9
	b, ok := bv.AsBytes()
	require.True(t, ok)
	require.Equal(t, []byte{1, 2}, b, "Bytes copies its argument")

	d := mv(watermarks.ParseDecimal("-123.450"))
	unscaled, scale, ok := d.AsDecimal()
	require.True(t, ok)
	require.Equal(t, "-123450", unscaled)
	require.Equal(t, 3, scale)

	dt, ok := mv(watermarks.Date(time.Date(2026, 11, 1, 23, 0, 0, 0, time.FixedZone("", -5*3600)))).AsDate()
	require.True(t, ok)
	require.Equal(t, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), dt, "the calendar date in t's location")

	dto := mv(watermarks.DateTimeOffset(time.Date(2026, 11, 1, 8, 30, 0, 0, time.FixedZone("", 330*60))))
	off, ok := dto.OffsetMinutes()
	require.True(t, ok)
	require.Equal(t, 330, off)
	tt, ok := dto.AsDateTimeOffset()
	require.True(t, ok)
	require.True(t, tt.Equal(time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)))
	_, zoff := tt.Zone()
	require.Equal(t, 330*60, zoff)

	dt2 := mv(watermarks.DateTime2(time.Date(2026, 11, 1, 8, 30, 0, 100, time.FixedZone("", 3600))))
	wall, ok := dt2.AsDateTime2()
	require.True(t, ok)
	require.Equal(t, time.Date(2026, 11, 1, 8, 30, 0, 100, time.UTC), wall, "the wall clock in t's location, kept without zone")

	bl, ok := watermarks.Bool(true).AsBool()
	require.True(t, ok)
	require.True(t, bl)
	require.True(t, watermarks.Null().IsNull())
}

// goMSSQLDecode is how go-mssqldb turns a stored datetime into a time.Time:
// ticks rounded to the millisecond.
func goMSSQLDecode(days, ticks int32) time.Time {
	ms := (int(ticks%300)*10 + 1) / 3
	return time.Date(1900, 1, 1+int(days), 0, 0, int(ticks/300), ms*1_000_000, time.UTC)
}

// goMSSQLEncodeTicks is how go-mssqldb binds a time.Time as datetime:
// nanoseconds truncated to ticks.
func goMSSQLEncodeTicks(t time.Time) int {
	return 300*(t.Second()+t.Minute()*60+t.Hour()*3600) + t.Nanosecond()*300/1e9
}

// TestDateTimeKeepsTicks proves PITFALLS P14 for datetime: every tick of a
// second, read through the driver's millisecond rounding, becomes the exact
// stored tick, and binds back as the same tick.
func TestDateTimeKeepsTicks(t *testing.T) {
	const days = 46_326 // 2026-11-02
	for k := int32(0); k < 300; k++ {
		ticks := 8*3600*300 + k
		v, err := watermarks.DateTime(goMSSQLDecode(days, ticks))
		require.NoError(t, err)
		gotDays, gotTicks, ok := v.AsDateTimeTicks()
		require.True(t, ok)
		require.Equal(t, [2]int32{days, ticks}, [2]int32{gotDays, gotTicks}, "tick %d", k)

		inst, ok := v.AsDateTime()
		require.True(t, ok)
		require.Equal(t, int(ticks), goMSSQLEncodeTicks(inst), "tick %d binds back as another tick", k)
		again, err := watermarks.DateTime(inst)
		require.NoError(t, err)
		require.Equal(t, v, again)
	}
}

func TestDateTimeTickOneIsNotAMillisecond(t *testing.T) {
	v, err := watermarks.ParseValue(watermarks.TypeDateTime, "datetime", "2026-11-01T08:30:00.003")
	require.NoError(t, err)
	_, ticks, _ := v.AsDateTimeTicks()
	require.Equal(t, int32((8*3600+30*60)*300+1), ticks)
	inst, _ := v.AsDateTime()
	require.Equal(t, 3_333_334, inst.Nanosecond(), "1/300 s, rounded up to the nanosecond, not 3 ms")
	three, err := watermarks.DateTime(time.Date(2026, 11, 1, 8, 30, 0, 3_000_000, time.UTC))
	require.NoError(t, err)
	require.Equal(t, v, three.WithSQLType("datetime"), "3 ms from the driver is tick 1")
}

func TestDateTimeRounding(t *testing.T) {
	tests := []struct {
		name string
		in   time.Time
		want string
	}{
		{"rounds down", time.Date(2026, 1, 1, 0, 0, 0, 1_000_000, time.UTC), "2026-01-01T00:00:00.000"},
		{"rounds up", time.Date(2026, 1, 1, 0, 0, 0, 2_000_000, time.UTC), "2026-01-01T00:00:00.003"},
		{"carries into the next day", time.Date(2026, 1, 1, 23, 59, 59, 999_000_000, time.UTC), "2026-01-02T00:00:00.000"},
		{"wall clock of the location", time.Date(2026, 1, 1, 8, 0, 0, 0, time.FixedZone("", 3600)), "2026-01-01T08:00:00.000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := watermarks.DateTime(tc.in)
			require.NoError(t, err)
			require.Equal(t, tc.want, v.Text())
		})
	}
	_, err := watermarks.DateTime(time.Date(9999, 12, 31, 23, 59, 59, 999_000_000, time.UTC))
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition, "rounds past 9999-12-31")
	_, err = watermarks.DateTime(time.Date(1752, 12, 31, 0, 0, 0, 0, time.UTC))
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
}

func TestValueErrors(t *testing.T) {
	tests := []struct {
		name string
		typ  watermarks.ValueType
		sql  string
		text string
	}{
		{"datetime not a tick", watermarks.TypeDateTime, "", "2026-11-01T08:30:00.004"},
		{"datetime .999", watermarks.TypeDateTime, "", "2026-11-01T08:30:00.999"},
		{"datetime two digits", watermarks.TypeDateTime, "", "2026-11-01T08:30:00.00"},
		{"datetime before 1753", watermarks.TypeDateTime, "", "1752-12-31T00:00:00.000"},
		{"datetime with zone", watermarks.TypeDateTime, "", "2026-11-01T08:30:00.000Z"},
		{"datetime2 with zone", watermarks.TypeDateTime2, "", "2026-11-01T08:30:00+01:00"},
		{"datetimeoffset without zone", watermarks.TypeDateTimeOffset, "", "2026-11-01T08:30:00"},
		{"datetimeoffset beyond 14h", watermarks.TypeDateTimeOffset, "", "2026-11-01T08:30:00+15:00"},
		{"datetimeoffset before year 1 in UTC", watermarks.TypeDateTimeOffset, "", "0001-01-01T00:00:00+01:00"},
		{"date month 13", watermarks.TypeDate, "", "2026-13-01"},
		{"date year 0", watermarks.TypeDate, "", "0000-12-31"},
		{"rowversion 7 bytes", watermarks.TypeRowVersion, "", "0x00000000000007"},
		{"rowversion without 0x", watermarks.TypeRowVersion, "", "00000000000007D1"},
		{"bytes odd digits", watermarks.TypeBytes, "", "0x0"},
		{"uuid short", watermarks.TypeUUID, "", "6f9619ff-8b86-d011-b42d-00c04fc964f"},
		{"uuid braces", watermarks.TypeUUID, "", "{6f9619ff-8b86-d011-b42d-00c04fc964ff}"},
		{"uuid not hex", watermarks.TypeUUID, "", "6f9619ff-8b86-d011-b42d-00c04fc964fg"},
		{"decimal trailing point", watermarks.TypeDecimal, "", "1."},
		{"decimal leading point", watermarks.TypeDecimal, "", ".5"},
		{"decimal exponent", watermarks.TypeDecimal, "", "1e5"},
		{"decimal float text", watermarks.TypeDecimal, "", "NaN"},
		{"decimal double minus", watermarks.TypeDecimal, "", "--1"},
		{"decimal negative fraction", watermarks.TypeDecimal, "", "1.-5"},
		{"int overflow", watermarks.TypeInt, "", "9223372036854775808"},
		{"int fraction", watermarks.TypeInt, "", "1.0"},
		{"bool", watermarks.TypeBool, "", "TRUE"},
		{"string without sql type", watermarks.TypeString, "", "x"},
		{"string with NUL", watermarks.TypeString, "varchar(5)", "a\x00b"},
		{"string not UTF-8", watermarks.TypeString, "varchar(5)", "a\xffb"},
		{"null with text", watermarks.TypeNull, "", "x"},
		{"sql type with newline", watermarks.TypeInt, "int\n", "1"},
		{"unknown type", watermarks.ValueType("money"), "", "1"},
		{"no type", "", "", "1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := watermarks.ParseValue(tc.typ, tc.sql, tc.text)
			require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
		})
	}
	_, err := watermarks.Decimal("1", -1)
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
	_, err = watermarks.Decimal("1", watermarks.MaxDecimalScale+1)
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
	_, err = watermarks.DateTimeOffset(time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("LMT", 17*60+30)))
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition, "offsets must be whole minutes")
	_, err = watermarks.DateTimeTicks(0, 300*86400)
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
	require.ErrorIs(t, watermarks.Value{}.Validate(), watermarks.ErrInvalidPosition, "the zero Value is not valid")
}

func TestCompare(t *testing.T) {
	mv := must(t)
	dec := func(s string) watermarks.Value { return mv(watermarks.ParseDecimal(s)) }
	dto := func(s string) watermarks.Value {
		return mv(watermarks.ParseValue(watermarks.TypeDateTimeOffset, "", s))
	}
	dt := func(s string) watermarks.Value { return mv(watermarks.ParseValue(watermarks.TypeDateTime, "", s)) }
	tests := []struct {
		name string
		a, b watermarks.Value
		want int
	}{
		{"ints", watermarks.Int64(-1), watermarks.Int64(1), -1},
		{"int extremes", watermarks.Int64(9223372036854775807), watermarks.Int64(-9223372036854775808), 1},
		{"rowversion bytewise", watermarks.RowVersion([8]byte{0x80}), watermarks.RowVersion([8]byte{0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}), 1},
		{"decimal scales", dec("1.5"), dec("1.50"), 0},
		{"decimal beyond int64", dec("99999999999999999.99"), dec("100000000000000000"), -1},
		{"decimal negative", dec("-0.01"), dec("0"), -1},
		{"decimal negatives", dec("-10.5"), dec("-10.49"), -1},
		{"datetime ticks", dt("2026-11-01T08:30:00.003"), dt("2026-11-01T08:30:00.007"), -1},
		{"datetimeoffset same instant", dto("2026-11-01T08:30:00+05:30"), dto("2026-11-01T03:00:00+00:00"), 0},
		{"datetimeoffset by instant", dto("2026-11-01T08:30:00+05:30"), dto("2026-11-01T01:00:00-08:00"), -1},
		{"strings by bytes", watermarks.String("varchar(5)", "B"), watermarks.String("varchar(5)", "a"), -1},
		{"strings ignore sql type", watermarks.String("varchar(5)", "a"), watermarks.String("nvarchar(5)", "a"), 0},
		{"bools", watermarks.Bool(false), watermarks.Bool(true), -1},
		{"null first", watermarks.Null(), watermarks.Int64(-9223372036854775808), -1},
		{"null last", watermarks.Int64(0), watermarks.Null(), 1},
		{"nulls", watermarks.Null(), watermarks.Null().WithSQLType("int"), 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := watermarks.Compare(tc.a, tc.b)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			back, err := watermarks.Compare(tc.b, tc.a)
			require.NoError(t, err)
			require.Equal(t, -tc.want, back)
		})
	}
	_, err := watermarks.Compare(watermarks.Int64(1), dec("1"))
	require.Error(t, err, "different types do not compare")
	_, err = watermarks.Compare(watermarks.Value{}, watermarks.Int64(1))
	require.Error(t, err)
	require.False(t, watermarks.Equal(dec("1.5"), dec("1.50")), "equal in order, different values")
	require.False(t, watermarks.Equal(dto("2026-11-01T08:30:00+05:30"), dto("2026-11-01T03:00:00+00:00")))
}

func TestCompareKeys(t *testing.T) {
	k := func(vs ...int64) watermarks.Key {
		var key watermarks.Key
		for _, v := range vs {
			key = append(key, watermarks.Int64(v))
		}
		return key
	}
	tests := []struct {
		name string
		a, b watermarks.Key
		want int
	}{
		{"first column decides", k(1, 9), k(2, 0), -1},
		{"tie on the first", k(1, 2), k(1, 1), 1},
		{"equal", k(1, 2), k(1, 2), 0},
		{"empty", nil, watermarks.Key{}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := watermarks.CompareKeys(tc.a, tc.b)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			require.Equal(t, tc.want == 0, watermarks.EqualKeys(tc.a, tc.b))
		})
	}
	_, err := watermarks.CompareKeys(k(1), k(1, 2))
	require.Error(t, err)
}

func TestValueStringHidesTheValue(t *testing.T) {
	v := watermarks.String("varchar(20)", "MRN-0042-SECRET")
	require.Equal(t, "<string varchar(20)>", v.String())
	require.Equal(t, "<int>", watermarks.Int64(7).String())
	key := watermarks.Key{v, watermarks.Int64(7)}
	for _, s := range []string{fmt.Sprint(v), fmt.Sprintf("%v %s", key, key), fmt.Sprint([]watermarks.Value{v})} {
		require.NotContains(t, s, "SECRET")
	}
	require.Equal(t, `("MRN-0042-SECRET", 7)`, key.Text())
}

// TestCursorCoversIsTieSafe: with many rows sharing a cursor value, a cursor
// saved in the middle of the run covers exactly the rows up to its key
// (PITFALLS P9), and one without a key covers the whole run.
func TestCursorCoversIsTieSafe(t *testing.T) {
	ts := watermarks.Int64(50)
	mid := watermarks.Cursor{Column: "modified", Value: ts, Key: watermarks.Key{watermarks.Int64(3)}}
	whole := watermarks.Cursor{Column: "modified", Value: ts}
	tests := []struct {
		name       string
		v          watermarks.Value
		k          int64
		mid, whole bool
	}{
		{"earlier value", watermarks.Int64(49), 9, true, true},
		{"same value, lower key", ts, 2, true, true},
		{"same value, the key", ts, 3, true, true},
		{"same value, higher key", ts, 4, false, true},
		{"later value", watermarks.Int64(51), 1, false, false},
		{"null cursor", watermarks.Null(), 1, true, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := mid.Covers(tc.v, watermarks.Key{watermarks.Int64(tc.k)})
			require.NoError(t, err)
			require.Equal(t, tc.mid, got)
			got, err = whole.Covers(tc.v, watermarks.Key{watermarks.Int64(tc.k)})
			require.NoError(t, err)
			require.Equal(t, tc.whole, got)
		})
	}
	_, err := mid.Covers(watermarks.String("varchar(5)", "x"), nil)
	require.Error(t, err, "a value of another type")
	_, err = mid.Covers(ts, watermarks.Key{watermarks.Int64(1), watermarks.Int64(2)})
	require.Error(t, err, "a key of other columns")
}
