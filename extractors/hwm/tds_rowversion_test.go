package hwm_test

import (
	"encoding/binary"
	"testing"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/hwm"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestRepeatedRowVersionsOverTheWire (D14): SQL Server promises unique
// rowversion values only for those it assigns; restored, replicated or
// SELECT INTO rows can repeat one. Five rows sharing a row version, read
// two per chunk, each arrive exactly once: row versions page by (version,
// key). Paging by the version alone resumed with version > v after the
// first chunk and lost the other three.
func TestRepeatedRowVersionsOverTheWire(t *testing.T) {
	table := extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "restored", Dialect: schemas.SQLServer,
		Key: []string{"id"}, RowVersion: "row_timestamp"}, []extractortest.Column{
		{Name: "id", Type: "int"},
		{Name: "note", Type: "varchar(20)", Nullable: true},
		{Name: "row_timestamp", Type: "rowversion"},
	})
	srv := mssqltest.Start(t, mssqlmodel.Options{FirstRowVersion: 0x800})
	require.NoError(t, srv.Model.CreateTable(table))
	same := binary.BigEndian.AppendUint64(nil, 0x900)
	var rows []map[string]any
	for id := range 5 {
		rows = append(rows, map[string]any{"id": int64(id + 1), "note": "restored", "row_timestamp": same})
	}
	require.NoError(t, srv.Model.Restore("dbo.restored", rows))

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ext, err := hwm.New(srv.Open(t), schemas.SQLServer, table, hwm.Options{Bounds: extractors.Bounds{ChunkRows: 2, Allocator: mem}})
	require.NoError(t, err)
	var pos watermarks.Position = watermarks.Cursor{Column: "row_timestamp",
		Value: watermarks.RowVersion([8]byte(binary.BigEndian.AppendUint64(nil, 0x800))).WithSQLType("rowversion")}
	seen := map[int32]int{}
	for run := 0; run < 5; run++ { // each run from the saved position, as the engine does
		_, err := extractortest.SyncRun(t, ext, table, &pos, 0, "empty chunk", func(b arrow.RecordBatch, _ watermarks.Reason) error {
			if b == nil {
				return nil
			}
			ids := b.Column(0).(*array.Int32)
			for i := range ids.Len() {
				seen[ids.Value(i)]++
			}
			return nil
		})
		require.NoError(t, err)
	}
	require.Equal(t, map[int32]int{1: 1, 2: 1, 3: 1, 4: 1, 5: 1}, seen, "every restored row exactly once")
}
