package reader_test

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
)

// TestLastIsTheLastRowOverTDS: a chunk read through go-mssqldb's
// driver.Rows keeps, in Chunk.Last, the values of the last row it
// appended, not of a row read before or after it, whether the chunk stops
// at its row bound in the middle of the result or reads the result to its
// end, and with or without KeepLast.
func TestLastIsTheLastRowOverTDS(t *testing.T) {
	table := extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "lines", Dialect: schemas.SQLServer,
		Key: []string{"id"}, Shared: true}, []extractortest.Column{
		{Name: "id", Type: "uniqueidentifier"},
		{Name: "n", Type: "int"},
		{Name: "amount", Type: "numeric(19,2)"},
		{Name: "code", Type: "varchar(10)"},
		{Name: "at", Type: "datetime"},
		{Name: "rv", Type: "rowversion"},
	})
	srv := mssqltest.Start(t, mssqlmodel.Options{})
	require.NoError(t, srv.Model.CreateTable(table))
	const rows = 10
	tx := srv.Model.Begin()
	for i := range rows {
		require.NoError(t, tx.Insert("dbo.lines", mssqltest.Row(table, i+1, "")))
	}
	require.NoError(t, tx.Commit())
	db := srv.Open(t)

	for _, keep := range []bool{false, true} {
		mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
		r, err := reader.New(reader.Config{DB: db, Dialect: schemas.SQLServer, Table: table,
			Bounds: extractors.Bounds{ChunkRows: 4, Allocator: mem}})
		require.NoError(t, err)
		if keep {
			r.KeepLast(0, 5)
		}
		sel := r.Select(nil, []string{"id"})
		for _, limit := range []int{4, 7, rows, rows + 5} {
			sel.Limit = limit
			var seq int64
			ch, err := r.Read(context.Background(), sel, schemas.OpInsert, &seq)
			require.NoError(t, err)
			want := min(limit, rows)
			require.Equal(t, want, ch.Rows)
			require.Equal(t, limit > rows, ch.Exhausted)
			require.NotNil(t, ch.Batch)
			lastRow := want - 1
			require.Equal(t, ch.Batch.Column(0).(*extensions.UUIDArray).Value(lastRow), ch.Last[0], "limit %d: the last key", limit)
			require.Equal(t, ch.Batch.Column(5).(*array.FixedSizeBinary).Value(lastRow), ch.Last[5], "limit %d: the last row version", limit)
			require.Equal(t, int32(want), ch.Batch.Column(1).(*array.Int32).Value(lastRow))
			if keep {
				require.Nil(t, ch.Last[1])
				require.Nil(t, ch.Last[3])
			} else {
				require.Equal(t, int64(want), ch.Last[1])
				require.Equal(t, ch.Batch.Column(3).(*array.String).Value(lastRow), ch.Last[3])
			}
			ch.Batch.Release()
		}
		mem.AssertSize(t, 0)
	}
}
