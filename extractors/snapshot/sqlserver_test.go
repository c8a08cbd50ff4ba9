package snapshot_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/internal/fakesql"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path without a server: the exact T-SQL and parameter types
// of a keyset snapshot over NextGen's reason_code_links (a four-column key
// of three uniqueidentifiers and a smallint) with a practice filter
// (PITFALLS.md P8, P12, P15).

func reasonCodeLinks(t *testing.T) *schemas.Table {
	t.Helper()
	table, ok := schemas.NextGen().Table("dbo.reason_code_links")
	require.True(t, ok)
	return table
}

func guid(t *testing.T, wireOrder string) []byte {
	t.Helper()
	return extractortest.Wire(t, wireOrder)
}

// link is a reason_code_links row as go-mssqldb returns it.
func link(t *testing.T, trans, charge, reason string, seq int64) []driver.Value {
	return []driver.Value{
		guid(t, trans), guid(t, charge), guid(t, reason), seq, "0001", "CO", []byte("-12.50"), int64(7),
		time.Date(2026, 1, 5, 8, 0, 0, 7_000_000, time.UTC),
	}
}

func TestSQLServerQueries(t *testing.T) {
	const (
		a = "ff19966f-868b-11d0-b42d-00c04fc964ff"
		b = "03020100-0504-0706-0809-0a0b0c0d0e0f"
	)
	tests := []struct {
		name   string
		opts   snapshot.Options
		chunks func(t *testing.T) [][][]driver.Value
		rows   []int // rows per chunk emitted
		last   []int // LastKey length per chunk (0: the pass is done)
	}{
		{
			name: "composite GUID keyset with practice filter",
			opts: snapshot.Options{Practices: []string{"0001", "0002"}, ChunkRows: 2},
			chunks: func(t *testing.T) [][][]driver.Value {
				return [][][]driver.Value{
					{link(t, a, b, a, 1), link(t, a, b, b, 2)},
					{link(t, b, a, a, 1)},
				}
			},
			rows: []int{2, 1},
			last: []int{4, 0},
		},
		{
			name: "keys only",
			opts: snapshot.Options{Practices: []string{"0001"}, ChunkRows: 2, KeysOnly: true},
			chunks: func(t *testing.T) [][][]driver.Value {
				row := link(t, a, b, a, 1)[:4]
				return [][][]driver.Value{{row}}
			},
			rows: []int{1},
			last: []int{0},
		},
		{
			name: "byte bound ends a chunk early",
			opts: snapshot.Options{ChunkRows: 2, ChunkBytes: 1},
			chunks: func(t *testing.T) [][][]driver.Value {
				return [][][]driver.Value{
					{link(t, a, b, a, 1), link(t, a, b, b, 2)},
					{link(t, a, b, b, 2)},
					{},
				}
			},
			rows: []int{1, 1, 0},
			last: []int{4, 4, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			chunks := tc.chunks(t)
			ncols := 9
			if tc.opts.KeysOnly {
				ncols = 4
			}
			db, fake := fakesql.Open(func(query string, _ []any) (fakesql.Result, error) {
				if !strings.HasPrefix(query, "SELECT TOP") {
					return fakesql.Result{}, errors.New("unexpected statement")
				}
				res := fakesql.Result{Columns: make([]string, ncols)}
				if len(chunks) > 0 {
					res.Rows, chunks = chunks[0], chunks[1:]
				}
				return res, nil
			})
			defer db.Close()
			opts := tc.opts
			opts.Allocator = mem
			ext, err := snapshot.New(db, schemas.SQLServer, reasonCodeLinks(t), opts)
			require.NoError(t, err)
			run, err := ext.Open(context.Background(), nil)
			require.NoError(t, err)
			var rows, last []int
			for {
				ch, err := run.Next(context.Background())
				if errors.Is(err, io.EOF) {
					break
				}
				require.NoError(t, err)
				require.Equal(t, watermarks.ReasonSnapshot, ch.Reason)
				n := 0
				if ch.Batch != nil {
					require.NoError(t, schemas.ValidateChangeBatch(ext.Table(), ch.Batch))
					n = int(ch.Batch.NumRows())
					ch.Batch.Release()
				}
				rows = append(rows, n)
				last = append(last, len(ch.To.(watermarks.Snapshot).LastKey))
			}
			require.NoError(t, run.Close())
			require.Equal(t, tc.rows, rows)
			require.Equal(t, tc.last, last)
			golden(t, "sqlserver_"+strings.ReplaceAll(tc.name, " ", "_"), fake.Transcript())
		})
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	extractortest.Golden(t, *update, name, got)
}
