package cdc_test

import (
	"context"
	"database/sql/driver"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/cdc/cdcmodel"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/internal/fakesql"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path without a server: the exact T-SQL and parameter
// types each run sends, against a fake driver answering with values shaped
// as go-mssqldb returns them.

func lsnBytes(n uint64) []byte {
	l := cdcmodel.LSN(n)
	return l[:]
}

// changeRow is a claim_lines change row: __$start_lsn, __$command_id,
// __$seqval, __$operation, then the captured columns of linesTable.
func changeRow(lsn uint64, cmd int64, seq uint64, op int64, line int64) []driver.Value {
	return []driver.Value{
		lsnBytes(lsn), cmd, lsnBytes(seq), op,
		guidWire(uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")), line, "0001", []byte("-125.40"), "note",
		time.Date(2026, 11, 1, 8, 30, 0, 3_000_000, time.UTC),
	}
}

var changeColumns = []string{"__$start_lsn", "__$command_id", "__$seqval", "__$operation", "id", "line", "practice_id", "amount", "note", "modify_timestamp"}

// scripted answers the catalog queries with two capture instances (the
// second starting at v2Start, 0: only one), MaxLSN with max, MinLSN with
// 0x..64, and each change query with the next of chunks.
func scripted(v2Start, max uint64, chunks ...[][]driver.Value) fakesql.Script {
	return func(query string, _ []any) (fakesql.Result, error) {
		switch {
		case strings.HasPrefix(query, "SELECT ct.capture_instance"):
			var rows [][]driver.Value
			for _, c := range []string{"id", "line", "practice_id", "amount", "note", "modify_timestamp"} {
				rows = append(rows, []driver.Value{"claims_v1", lsnBytes(100), c})
			}
			if v2Start > 0 {
				for _, c := range []string{"id", "line", "practice_id", "amount", "note", "modify_timestamp", "status"} {
					rows = append(rows, []driver.Value{"claims_v2", lsnBytes(v2Start), c})
				}
			}
			return fakesql.Result{Columns: []string{"capture_instance", "start_lsn", "column_name"}, Rows: rows}, nil
		case strings.HasPrefix(query, "SELECT COL_LENGTH"):
			return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{int64(4)}}}, nil
		case strings.HasPrefix(query, "SELECT sys.fn_cdc_get_max_lsn()"):
			return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{lsnBytes(max)}}}, nil
		case strings.HasPrefix(query, "SELECT sys.fn_cdc_get_min_lsn"):
			return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{lsnBytes(100)}}}, nil
		case strings.HasPrefix(query, "DECLARE @n bigint"):
			if len(chunks) == 0 {
				return fakesql.Result{Columns: changeColumns}, nil
			}
			c := chunks[0]
			chunks = chunks[1:]
			cols := changeColumns
			if len(c) > 0 && len(c[0]) > len(cols) {
				cols = append(cols[:len(cols):len(cols)], "status")
			}
			// The practice filter's last column: the row is the
			// organization's.
			cols = append(cols[:len(cols):len(cols)], "ours")
			rows := make([][]driver.Value, len(c))
			for i, r := range c {
				rows[i] = append(r[:len(r):len(r)], true)
			}
			return fakesql.Result{Columns: cols, Rows: rows}, nil
		case strings.HasPrefix(query, "SELECT TOP"): // the snapshot
			return fakesql.Result{Columns: changeColumns[4:]}, nil
		}
		return fakesql.Result{}, errors.New("unexpected statement")
	}
}

type chunkSummary struct {
	rows int
	to   watermarks.Position
}

func drain(t *testing.T, ext *cdc.Extractor, pos watermarks.Position) []chunkSummary {
	t.Helper()
	out, err := extractortest.Drain(t, ext, pos, func(to watermarks.Position, batch arrow.RecordBatch) chunkSummary {
		s := chunkSummary{to: to}
		if batch != nil {
			s.rows = int(batch.NumRows())
			sp := batch.Column(batch.Schema().FieldIndices(schemas.SourcePosColumn)[0]).(*array.Binary)
			require.Len(t, sp.Value(0), cdc.SourcePosLen)
		}
		return s
	})
	require.NoError(t, err)
	return out
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	extractortest.Golden(t, *update, name, got)
}

func TestSQLServerGolden(t *testing.T) {
	inTx := watermarks.CDC{LSN: cdcmodel.LSN(120), CommandID: 3, Seqval: cdcmodel.LSN(115), Op: 2, Instance: "claims_v1"}
	tests := []struct {
		name  string
		v2    uint64
		max   uint64
		pos   watermarks.Position
		rows  int
		chunk [][][]driver.Value
		want  []chunkSummary
	}{
		{
			name: "P8 first run records the max LSN then snapshots", max: 150,
			want: []chunkSummary{{to: watermarks.CDC{LSN: cdcmodel.LSN(150), Instance: "claims_v1"}}},
		},
		{
			name: "P4 resume inside a transaction then a boundary then the bound", max: 150, pos: inTx, rows: 2,
			chunk: [][][]driver.Value{
				{changeRow(120, 4, 116, 2, 1), changeRow(120, 5, 117, 4, 2), changeRow(130, 1, 125, 1, 3)},
				{changeRow(130, 1, 125, 1, 3)},
			},
			want: []chunkSummary{
				{rows: 2, to: watermarks.CDC{LSN: cdcmodel.LSN(120), Instance: "claims_v1"}},
				{rows: 1, to: watermarks.CDC{LSN: cdcmodel.LSN(150), Instance: "claims_v1"}},
			},
		},
		{
			name: "P7 read the old instance to the new instance start then switch", v2: 140, max: 150,
			pos: watermarks.CDC{LSN: cdcmodel.LSN(130), Instance: "claims_v1"}, rows: 10,
			chunk: [][][]driver.Value{
				{changeRow(135, 1, 131, 2, 1)},
				{append(changeRow(145, 1, 141, 4, 1), "PAID")},
			},
			want: []chunkSummary{
				{rows: 1, to: watermarks.CDC{LSN: cdcmodel.LSN(140), Instance: "claims_v2"}},
				{rows: 1, to: watermarks.CDC{LSN: cdcmodel.LSN(150), Instance: "claims_v2"}},
			},
		},
		{
			name: "P3 idle heartbeat", max: 150, pos: watermarks.CDC{LSN: cdcmodel.LSN(130), Instance: "claims_v1"},
			want: []chunkSummary{{to: watermarks.CDC{LSN: cdcmodel.LSN(150), Instance: "claims_v1"}}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, rec := fakesql.Open(scripted(tc.v2, tc.max, tc.chunk...))
			defer db.Close()
			table := linesTable(t)
			if tc.v2 > 0 {
				table = mustTable(t, "claim_lines", table.Key, []colSpec{
					{"id", "uniqueidentifier"}, {"line", "int"}, {"practice_id", "char(4)"},
					{"amount", "numeric(19,2)"}, {"note", "varchar(40)"}, {"modify_timestamp", "datetime"}, {"status", "varchar(8)"},
				})
			}
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			ext, err := cdc.New(db, table, cdc.Options{Practices: []string{"0001"}, ChunkRows: tc.rows, Allocator: mem})
			require.NoError(t, err)
			got := drain(t, ext, tc.pos)
			if tc.pos == nil {
				require.Len(t, got, 1)
				snap, ok := got[0].to.(watermarks.CDC)
				require.True(t, ok, "an empty snapshot ends at its resume position: %v", got[0].to)
				got[0].to = snap
			}
			require.Equal(t, tc.want, got)
			golden(t, "sqlserver_"+strings.ReplaceAll(tc.name, " ", "_"), rec.Transcript())
		})
	}
}

// TestSQLServerP1Expired: a saved LSN below fn_cdc_get_min_lsn of its
// instance is ErrExpired.
func TestSQLServerP1Expired(t *testing.T) {
	script := scripted(0, 150)
	db, rec := fakesql.Open(func(query string, args []any) (fakesql.Result, error) {
		if strings.HasPrefix(query, "SELECT sys.fn_cdc_get_min_lsn") {
			return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{lsnBytes(110)}}}, nil
		}
		return script(query, args)
	})
	defer db.Close()
	ext, err := cdc.New(db, linesTable(t), cdc.Options{})
	require.NoError(t, err)
	_, err = ext.Open(context.Background(), watermarks.CDC{LSN: cdcmodel.LSN(105)})
	require.ErrorIs(t, err, engine.ErrExpired)
	require.ErrorContains(t, err, "claims_v1's minimum 0x0000000000000000006E")
	for _, c := range rec.Calls() {
		require.False(t, strings.HasPrefix(c.Query, "DECLARE"), "no change table read after an expired check")
	}
}
