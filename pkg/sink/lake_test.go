package sink

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

// A reconciliation's deleted keys come back from the store as pgx decodes
// them and go into the lake's batch as the key's change-batch type: every
// type a key can have.
func TestStoredKeysConvertToTheirChangeBatchTypes(t *testing.T) {
	pool := pgtest.Pool(t)
	for _, c := range []struct{ source, stored, want string }{
		{"uniqueidentifier", "'6f9619ff-8b86-d011-b42d-00c04fc964ff'::uuid", "6f9619ff-8b86-d011-b42d-00c04fc964ff"},
		{"varchar(10)", "'AB-1'::text", "AB-1"},
		{"char(4)", "'0001'::character(4)", "0001"},
		{"tinyint", "200::smallint", "200"},
		{"smallint", "-7::smallint", "-7"},
		{"int", "2147483647::integer", "2147483647"},
		{"bigint", "-9007199254740993::bigint", "-9007199254740993"},
		{"numeric(12,0)", "123456789012::numeric(12,0)", "123456789012"},
		{"numeric(19,2)", "-10.50::numeric(19,2)", "-10.5"},
		{"datetime2", "'1969-12-31 23:59:59.123456'::timestamp", "1969-12-31T23:59:59.123456"},
		{"date", "'2026-11-01'::date", "2026-11-01"},
		{"bit", "true", "true"},
		{"float", "1.25::float8", "1.25"},
		{"real", "0.5::float4", "0.5"},
		{"time", "'08:30:00.25'::time", "08:30:00.250000"},
		{"binary(4)", "'\\x0a0b0c0d'::bytea", "CgsMDQ=="}, // base64
	} {
		ty, err := schemas.ParseType(schemas.SQLServer, c.source)
		require.NoError(t, err, c.source)
		m, err := schemas.Map(schemas.SQLServer, ty)
		require.NoError(t, err, c.source)
		var v any
		rows, err := pool.Query(context.Background(), "SELECT "+c.stored)
		require.NoError(t, err)
		require.True(t, rows.Next())
		vals, err := rows.Values()
		require.NoError(t, err)
		rows.Close()
		v = vals[0]
		b := array.NewBuilder(memory.DefaultAllocator, m.Arrow)
		require.NoError(t, appendStored(b, v), c.source)
		a := b.NewArray()
		require.Contains(t, a.ValueStr(0), c.want, c.source)
		a.Release()
		b.Release()
	}
}
