package snapshot_test

import (
	"testing"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestVarcharKeysOverTheWire (D3): a keyset snapshot over non-ASCII
// varchar keys in a CP1252 database, one row per chunk, reads every row
// exactly once. go-mssqldb sends an mssql.VarChar parameter as its UTF-8
// bytes, which the server reads in its code page: O’Brien arrived as
// the mojibake Oâ€™Brien, compared as another value, and resume skipped or
// repeated rows. ehrsync binds such keys as nvarchar cast to the column's
// type, so the server compares the real value.
func TestVarcharKeysOverTheWire(t *testing.T) {
	names := []string{"O'Brien", "O’Brien", "O’Connor", "OBrien", "José", "Jose", "Zoë", "obrien2"}
	table := extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "patients", Dialect: schemas.SQLServer,
		Key: []string{"last_name"}, Practice: "practice_id"}, []extractortest.Column{
		{Name: "last_name", Type: "varchar(40)"},
		{Name: "practice_id", Type: "char(4)"},
		{Name: "visits", Type: "int", Nullable: true},
	})
	srv := mssqltest.Start(t, mssqlmodel.Options{})
	require.NoError(t, srv.Model.CreateTable(table))
	tx := srv.Model.Begin()
	for i, n := range names {
		require.NoError(t, tx.Insert("dbo.patients", map[string]any{"last_name": n, "practice_id": "0001", "visits": int64(i)}))
	}
	require.NoError(t, tx.Commit())

	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ext, err := snapshot.New(srv.Open(t), schemas.SQLServer, table, snapshot.Options{
		Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: 1, Allocator: mem},
	})
	require.NoError(t, err)
	var pos watermarks.Position
	seen := map[string]int{}
	// Bounded: a resume that goes backwards would loop.
	chunks, err := extractortest.SyncRun(t, ext, table, &pos, 3*len(names), "empty chunk", func(b arrow.RecordBatch, _ watermarks.Reason) error {
		if b == nil {
			return nil
		}
		col := b.Column(0).(*array.String)
		for i := range col.Len() {
			seen[col.Value(i)]++
		}
		return nil
	})
	require.NoError(t, err)
	require.Less(t, chunks, 3*len(names), "the snapshot did not end")
	want := map[string]int{}
	for _, n := range names {
		want[n] = 1
	}
	require.Equal(t, want, seen, "every key exactly once")
}
