package reader

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Key and cursor values survive the trip driver value -> watermarks.Value
// -> saved position -> parameter exactly (PITFALLS.md P14): the value bound
// on resume is the value read.
func TestValueRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		source   schemas.Dialect
		typ      string
		native   any
		wantType watermarks.ValueType
		check    func(t *testing.T, v watermarks.Value)
	}{
		{"datetime max tick", schemas.SQLServer, "datetime", time.Date(9999, 12, 31, 23, 59, 59, 997_000_000, time.UTC), watermarks.TypeDateTime,
			func(t *testing.T, v watermarks.Value) {
				_, ticks, _ := v.AsDateTimeTicks()
				require.EqualValues(t, 86399*300+299, ticks)
			}},
		{"datetime min", schemas.SQLServer, "datetime", time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC), watermarks.TypeDateTime, nil},
		{"datetime tick .003", schemas.SQLServer, "datetime", time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, time.UTC), watermarks.TypeDateTime,
			func(t *testing.T, v watermarks.Value) {
				_, ticks, _ := v.AsDateTimeTicks()
				require.EqualValues(t, 8*3600*300+1, ticks)
			}},
		{"datetime on a PostgreSQL source is its timestamp(3)", schemas.Postgres, "datetime", time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, time.UTC), watermarks.TypeDateTime2, nil},
		{"datetime2(7)", schemas.SQLServer, "datetime2(7)", time.Date(9999, 12, 31, 23, 59, 59, 999_999_900, time.UTC), watermarks.TypeDateTime2, nil},
		{"datetimeoffset", schemas.SQLServer, "datetimeoffset(7)", time.Date(2026, 1, 5, 8, 0, 0, 500, time.FixedZone("", -5*3600)), watermarks.TypeDateTimeOffset, nil},
		{"uniqueidentifier", schemas.SQLServer, "uniqueidentifier", uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff"), watermarks.TypeUUID, nil},
		{"numeric(19,2)", schemas.SQLServer, "numeric(19,2)", "-99999999999999999.99", watermarks.TypeDecimal, nil},
		{"varchar", schemas.SQLServer, "varchar(8)", "20261231", watermarks.TypeString, nil},
		{"int", schemas.SQLServer, "int", int64(-7), watermarks.TypeInt, nil},
		{"rowversion", schemas.SQLServer, "rowversion", []byte{0, 0, 0, 0, 0, 0, 7, 0xd1}, watermarks.TypeRowVersion, nil},
		{"xid row version", schemas.Postgres, "rowversion", int64(2001), watermarks.TypeInt, nil},
		{"date", schemas.SQLServer, "date", time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), watermarks.TypeDate, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			typ, err := schemas.ParseType(schemas.SQLServer, tc.typ)
			require.NoError(t, err)
			col := schemas.Column{Name: "c", Type: typ}
			v, err := toValue(tc.source, col, tc.native)
			require.NoError(t, err)
			require.Equal(t, tc.wantType, v.Type())
			require.Equal(t, tc.typ, v.SQLType())

			b, err := watermarks.Encode(watermarks.Cursor{Column: "c", Value: v})
			require.NoError(t, err)
			p, err := watermarks.Decode(b)
			require.NoError(t, err)
			saved := p.(watermarks.Cursor).Value
			require.True(t, watermarks.Equal(v, saved))

			n, err := Native(saved)
			require.NoError(t, err)
			again, err := toValue(tc.source, col, n)
			require.NoError(t, err)
			require.True(t, watermarks.Equal(v, again), "the value bound on resume is the value read")
			if tc.check != nil {
				tc.check(t, saved)
			}
		})
	}
}

func TestValueErrors(t *testing.T) {
	typ, err := schemas.ParseType(schemas.SQLServer, "float")
	require.NoError(t, err)
	_, err = toValue(schemas.SQLServer, schemas.Column{Name: "c", Type: typ}, 1.5)
	require.Error(t, err, "floats are never keys or cursors")
	_, err = Native(watermarks.Null())
	require.Error(t, err)
}
