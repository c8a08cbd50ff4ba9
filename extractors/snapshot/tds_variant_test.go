package snapshot_test

import (
	"testing"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestSQLVariantOverTheWire (D11): sql_variant values holding integers,
// strings and decimals are carried as their text; one holding binary or a
// uniqueidentifier, which go-mssqldb hands over as bytes indistinguishable
// from text, stops the table with an error naming the fix and no value.
func TestSQLVariantOverTheWire(t *testing.T) {
	typ := func(s string) schemas.Type {
		ty, err := schemas.ParseType(schemas.SQLServer, s)
		require.NoError(t, err)
		return ty
	}
	tests := []struct {
		name  string
		value tdstest.Variant
		want  string // "" for refused
	}{
		{"int", tdstest.Variant{Type: typ("int"), Value: int64(7)}, "7"},
		{"varchar", tdstest.Variant{Type: typ("varchar(10)"), Value: "abc"}, "abc"},
		{"decimal", tdstest.Variant{Type: typ("numeric(9,2)"), Value: "-12.50"}, "-12.50"},
		{"binary", tdstest.Variant{Type: typ("varbinary(4)"), Value: []byte{0x00, 0xff, 0x31}}, ""},
		{"uniqueidentifier", tdstest.Variant{Type: typ("uniqueidentifier"), Value: mssqlmodel.GUIDWire(uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff"))}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table := extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "notes", Dialect: schemas.SQLServer,
				Key: []string{"id"}, Shared: true}, []extractortest.Column{
				{Name: "id", Type: "int"},
				{Name: "v", Type: "sql_variant", Nullable: true},
			})
			srv := mssqltest.Start(t, mssqlmodel.Options{})
			require.NoError(t, srv.Model.CreateTable(table))
			tx := srv.Model.Begin()
			require.NoError(t, tx.Insert("dbo.notes", map[string]any{"id": int64(1), "v": tc.value}))
			require.NoError(t, tx.Commit())
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			ext, err := snapshot.New(srv.Open(t), schemas.SQLServer, table, snapshot.Options{Bounds: extractors.Bounds{Allocator: mem}})
			require.NoError(t, err)
			var pos watermarks.Position
			var got []string
			_, err = extractortest.SyncRun(t, ext, table, &pos, 0, "empty chunk", func(b arrow.RecordBatch, _ watermarks.Reason) error {
				if b != nil {
					got = append(got, b.Column(1).(*array.String).Value(0))
				}
				return nil
			})
			if tc.want == "" {
				require.ErrorContains(t, err, "sql_variant value holds binary or uniqueidentifier data")
				require.ErrorContains(t, err, "columns: allow-list")
				return
			}
			require.NoError(t, err)
			require.Equal(t, []string{tc.want}, got)
		})
	}
}
