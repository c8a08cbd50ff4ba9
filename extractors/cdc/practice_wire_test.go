package cdc_test

import (
	"testing"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// practiceChange is what one change row of a batch says: its key, its
// operation and its note (NULL: "").
type practiceChange struct {
	ID   int32
	Op   schemas.Op
	Note string
}

// TestPracticesStayApartOverTheWire: CDC reads only the
// organization's practices. Another practice's inserts and deletes are not
// read; its update after-images arrive as key-only deletes (a row that
// moved out of the organization leaves the store; a key the store never
// held is a no-op, and the change log skips it); no value of another
// practice's row but its key leaves the server.
func TestPracticesStayApartOverTheWire(t *testing.T) {
	table := extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "visits", Dialect: schemas.SQLServer,
		Key: []string{"id"}, Practice: "practice_id"}, []extractortest.Column{
		{Name: "id", Type: "int"},
		{Name: "practice_id", Type: "char(4)"},
		{Name: "note", Type: "varchar(40)", Nullable: true},
	})
	srv := mssqltest.Start(t, mssqlmodel.Options{AutoHarvest: true})
	m := srv.Model
	require.NoError(t, m.CreateTable(table))
	m.EnableCDCDatabase()
	_, err := m.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.visits", Name: "visits_v1"})
	require.NoError(t, err)
	write := func(do func(tx *mssqlmodel.Tx)) {
		tx := m.Begin()
		do(tx)
		require.NoError(t, tx.Commit())
	}
	row := func(id int, practice, note string) map[string]any {
		return map[string]any{"id": int64(id), "practice_id": practice, "note": note}
	}
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	ext, err := cdc.New(srv.Open(t), table, cdc.Options{Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: 100, Allocator: mem}})
	require.NoError(t, err)
	var pos watermarks.Position
	sync := func() []practiceChange {
		t.Helper()
		var out []practiceChange
		_, err := extractortest.SyncRun(t, ext, table, &pos, 0, "empty chunk", func(b arrow.RecordBatch, _ watermarks.Reason) error {
			if b == nil {
				return nil
			}
			ids := b.Column(0).(*array.Int32)
			notes := b.Column(2).(*array.String)
			ops := b.Column(b.Schema().FieldIndices(schemas.OpColumn)[0]).(*array.Int8)
			for i := range ids.Len() {
				c := practiceChange{ID: ids.Value(i), Op: schemas.Op(ops.Value(i))}
				if !notes.IsNull(i) {
					c.Note = notes.Value(i)
				}
				out = append(out, c)
			}
			return nil
		})
		require.NoError(t, err)
		return out
	}
	write(func(tx *mssqlmodel.Tx) {
		require.NoError(t, tx.Insert("dbo.visits", row(1, "0001", "ours")))
		require.NoError(t, tx.Insert("dbo.visits", row(2, "0002", "theirs")))
	})
	require.Equal(t, []practiceChange{{1, schemas.OpInsert, "ours"}}, sync(), "the first snapshot")
	require.Empty(t, sync(), "nothing new")

	write(func(tx *mssqlmodel.Tx) {
		require.NoError(t, tx.Insert("dbo.visits", row(3, "0002", "theirs too")))
		require.NoError(t, tx.Insert("dbo.visits", row(4, "0001", "ours too")))
	})
	require.Equal(t, []practiceChange{{4, schemas.OpInsert, "ours too"}}, sync(), "another practice's insert is not read")

	write(func(tx *mssqlmodel.Tx) {
		require.NoError(t, tx.Update("dbo.visits", row(2, "0002", "their secret")))
		require.NoError(t, tx.Update("dbo.visits", row(1, "0002", "moved out")))
		require.NoError(t, tx.Delete("dbo.visits", row(3, "0002", "")))
		require.NoError(t, tx.Update("dbo.visits", row(4, "0001", "still ours")))
	})
	require.Equal(t, []practiceChange{
		{2, schemas.OpDelete, ""}, // another practice's update: its key only
		{1, schemas.OpDelete, ""}, // ours, moved out: it leaves the store
		{4, schemas.OpUpdate, "still ours"},
	}, sync(), "another practice's delete is not read; its updates carry no value but the key")
}
