package watermarks_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// encodes canonically and decodes back to the same position. Seeds: the
// canonical examples of every kind and value type, and testdata/fuzz.
func FuzzDecode(f *testing.F) {
	t := &testing.T{}
	for _, tc := range positionCases(t) {
		f.Add([]byte(tc.json))
	}
	for _, tc := range valueCases(t) {
		b, err := watermarks.Encode(watermarks.Cursor{Column: "c", Value: tc.v})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := watermarks.Decode(in)
		if err != nil {
			require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
			return
		}
		if p == nil {
			return // null: no position
		}
		b, err := watermarks.Encode(p)
		require.NoError(t, err, "decoded position does not encode")
		again, err := watermarks.Decode(b)
		require.NoError(t, err, "canonical form does not decode: %s", b)
		require.Equal(t, p, again)
		b2, err := watermarks.Encode(again)
		require.NoError(t, err)
		require.Equal(t, string(b), string(b2), "encoding is not canonical")
		_ = p.String()
		_ = p.Detail()
	})
}

// FuzzPosition builds positions of every kind and value type from fuzzed
// parts. Whatever Validate accepts must encode, and decode back to the same
// position (Decode(Encode(p)) == p); whatever it refuses, Encode must refuse
// too, with ErrInvalidPosition, never a panic. Seeds: testdata/fuzz/FuzzPosition.
func FuzzPosition(f *testing.F) {
	f.Add(uint8(0), int64(1), int64(2), "varchar(20)", "x", []byte{1, 2, 3}, int8(2))
	f.Add(uint8(1), int64(5), int64(9), "nvarchar(max)", "\U0001F600 ünïcode", []byte{}, int8(0))
	f.Add(uint8(2), int64(-62135596800), int64(999999999), "datetime2(7)", "", []byte{0xff}, int8(38))
	f.Add(uint8(3), int64(253402300799), int64(0), "numeric(19,2)", "-9223372036854775808", []byte(nil), int8(2))
	f.Add(uint8(4), int64(0), int64(-1), "char(1)", "a\x00b", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, int8(-1))
	f.Add(uint8(5), int64(1<<62), int64(1<<40), "text", "\xff\xfe", []byte("0123456789abcdef"), int8(4))
	f.Fuzz(func(t *testing.T, kind uint8, a, b int64, sqlType, s string, raw []byte, scale int8) {
		p := fuzzPosition(kind, a, b, sqlType, s, raw, scale)
		verr := watermarks.Validate(p)
		enc, err := watermarks.Encode(p)
		if verr != nil {
			require.ErrorIs(t, verr, watermarks.ErrInvalidPosition)
			require.Error(t, err, "Encode accepted a position Validate refuses: %v", verr)
			require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
			return
		}
		require.NoError(t, err, "Encode refused a position Validate accepts")
		back, err := watermarks.Decode(enc)
		require.NoError(t, err, "the encoding does not decode: %s", enc)
		require.Equal(t, p, back, "round trip changed the position: %s", enc)
		again, err := watermarks.Encode(back)
		require.NoError(t, err)
		require.Equal(t, string(enc), string(again), "encoding is not canonical")
	})
}

// fuzzPosition builds one position from fuzzed parts; kind picks the
// position kind and the cursor's value type.
func fuzzPosition(kind uint8, a, b int64, sqlType, s string, raw []byte, scale int8) watermarks.Position {
	var lsn, seq watermarks.LSN
	copy(lsn[:], raw)
	if len(raw) > 10 {
		copy(seq[:], raw[10:])
	}
	key := watermarks.Key{watermarks.Int64(b)}
	if len(raw) > 0 && raw[0]&1 == 1 {
		key = append(key, watermarks.String(sqlType, s))
	}
	value := func(k uint8) watermarks.Value {
		var v watermarks.Value
		var err error
		switch k % 12 {
		case 0:
			v = watermarks.Null()
		case 1:
			v = watermarks.Int64(a)
		case 2:
			v = watermarks.Bool(a&1 == 1)
		case 3:
			var rv [8]byte
			copy(rv[:], raw)
			v = watermarks.RowVersion(rv)
		case 4:
			v = watermarks.String(sqlType, s)
		case 5:
			var u [16]byte
			copy(u[:], raw)
			v = watermarks.UUID(u)
		case 6:
			v = watermarks.Bytes(raw)
		case 7:
			v, err = watermarks.Decimal(s, int(scale))
		case 8:
			v, err = watermarks.Date(time.Unix(a, 0).UTC())
		case 9:
			v, err = watermarks.DateTime(time.Unix(a, b%1e9).UTC())
		case 10:
			v, err = watermarks.DateTime2(time.Unix(a, b%1e9).UTC())
		case 11:
			v, err = watermarks.DateTimeOffset(time.Unix(a, b%1e9).In(time.FixedZone("", int(scale)*15*60)))
		}
		if err != nil {
			return watermarks.Null() // refused at construction: nothing to round-trip
		}
		if sqlType != "" && k%12 != 4 && k&0x80 != 0 {
			v = v.WithSQLType(sqlType)
		}
		return v
	}
	switch kind % 5 {
	case 0:
		return watermarks.CDC{LSN: lsn, CommandID: int32(a), Seqval: seq, Op: scale, Instance: s}
	case 1:
		p := watermarks.CT{Version: a, To: b}
		if b != 0 {
			p.LastKey = key
		}
		return p
	case 2:
		p := watermarks.Cursor{Column: sqlType, Value: value(kind / 5)}
		if kind&0x40 != 0 {
			p.Key = key
		}
		return p
	case 3:
		return watermarks.Snapshot{LastKey: key, Resume: watermarks.CT{Version: a}}
	default:
		return watermarks.Snapshot{LastKey: watermarks.Key{value(kind / 5)}, Resume: watermarks.Cursor{Column: "c", Value: value(kind/5 + 1)}}
	}
}
