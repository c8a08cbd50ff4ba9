package snapshot_test

import (
	"context"
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path through go-mssqldb: the exact T-SQL and the
// parameter types the server receives for a keyset snapshot over NextGen's
// reason_code_links (a four-column key of three uniqueidentifiers and a
// smallint) with a practice filter (PITFALLS.md P8, P12, P15), read from
// SQL Server's semantics held in a model and served over TDS.

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

// link is a reason_code_links row of practice as the model holds it.
func link(t *testing.T, practice, trans, charge, reason string, seq int64) map[string]any {
	return map[string]any{
		"trans_id": guid(t, trans), "charge_id": guid(t, charge), "reason_code_id": guid(t, reason), "seq_nbr": seq,
		"practice_id": practice, "group_code": "CO", "adj_amt": "-12.50", "created_by": int64(7),
		"create_timestamp": time.Date(2026, 1, 5, 8, 0, 0, 7_000_000, time.UTC),
	}
}

func TestSQLServerQueries(t *testing.T) {
	const (
		a = "ff19966f-868b-11d0-b42d-00c04fc964ff" // wire order; SQL Server sorts it before b (bytes 10-15 first)
		b = "03020100-0504-0706-0809-0a0b0c0d0e0f"
	)
	tests := []struct {
		name string
		opts snapshot.Options
		rows func(t *testing.T) []map[string]any
		want []int // rows per chunk emitted
		last []int // LastKey length per chunk (0: the pass is done)
	}{
		{
			name: "composite GUID keyset with practice filter",
			opts: snapshot.Options{Bounds: extractors.Bounds{Practices: []string{"0001", "0002"}, ChunkRows: 2}},
			rows: func(t *testing.T) []map[string]any {
				return []map[string]any{
					link(t, "0001", a, b, a, 1), link(t, "0002", a, b, b, 2),
					link(t, "0003", a, b, b, 3), // another practice: filtered out by the server
					link(t, "0001", b, a, a, 1),
				}
			},
			want: []int{2, 1},
			last: []int{4, 0},
		},
		{
			name: "keys only",
			opts: snapshot.Options{Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: 2}, KeysOnly: true},
			rows: func(t *testing.T) []map[string]any {
				return []map[string]any{link(t, "0001", a, b, a, 1), link(t, "0002", a, b, b, 2)}
			},
			want: []int{1},
			last: []int{0},
		},
		{
			name: "byte bound ends a chunk early",
			opts: snapshot.Options{Bounds: extractors.Bounds{ChunkRows: 2, ChunkBytes: 1}},
			rows: func(t *testing.T) []map[string]any {
				return []map[string]any{link(t, "0001", a, b, a, 1), link(t, "0001", a, b, b, 2)}
			},
			want: []int{1, 1, 0},
			last: []int{4, 4, 0},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			table := reasonCodeLinks(t)
			srv, rec := mssqltest.ServeRecorded(t, mssqlmodel.New(mssqlmodel.Options{}))
			require.NoError(t, srv.Model.CreateTable(table))
			tx := srv.Model.Begin()
			for _, r := range tc.rows(t) {
				require.NoError(t, tx.Insert(table.QualifiedName(), r))
			}
			require.NoError(t, tx.Commit())
			db := srv.Open(t)
			rec.Reset()

			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			opts := tc.opts
			opts.Allocator = mem
			ext, err := snapshot.New(db, schemas.SQLServer, table, opts)
			require.NoError(t, err)
			run, err := ext.Open(context.Background(), nil)
			require.NoError(t, err)
			var rows, last []int
			for {
				require.Less(t, len(rows), 20, "the pass does not end") // a resume that does not move on would loop
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
			require.Equal(t, tc.want, rows)
			require.Equal(t, tc.last, last)
			golden(t, "sqlserver_"+strings.ReplaceAll(tc.name, " ", "_"), rec.Transcript())
			requireTypedParams(t, table, rec.Statements())
		})
	}
}

// requireTypedParams: every key and practice parameter reaches the server
// with its column's type (PITFALLS.md P12, P15): GUID keys as
// uniqueidentifier, other keys with their exact type, and no parameter as
// a plain nvarchar (a varchar column sought with an nvarchar scans).
func requireTypedParams(t *testing.T, table *schemas.Table, stmts []mssqltest.Event) {
	t.Helper()
	for i, st := range stmts {
		require.Empty(t, st.PlainNVarChar(), "statement %d: an nvarchar parameter without a cast", i+1)
		for col, params := range st.Bound() {
			c, ok := table.Column(col)
			require.True(t, ok, "statement %d compares %s", i+1, col)
			for _, p := range params {
				switch c.Type.Name {
				case "char", "varchar":
					require.True(t, strings.HasPrefix(p.Type, "varchar("), "statement %d: %s %s bound to %s", i+1, p.Name, p.Type, col)
				default:
					require.Equal(t, c.Type.String(), p.Type, "statement %d: %s bound to %s", i+1, p.Name, col)
				}
			}
		}
	}
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	extractortest.Golden(t, *update, name, got)
}
