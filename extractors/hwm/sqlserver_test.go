package hwm_test

import (
	"database/sql/driver"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/hwm"
	"github.com/ehrsync/ehrsync/extractors/internal/fakesql"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path without a server: the exact T-SQL and the exact
// parameter types each run sends (PITFALLS.md P12, P15), against a fake
// driver that answers with values shaped as go-mssqldb returns them.

// claimLines has a composite GUID key, a practice filter, a rowversion and a
// datetime modify stamp.
func claimLines(t *testing.T) *schemas.Table {
	t.Helper()
	return extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "claim_lines", Dialect: schemas.SQLServer,
		Key: []string{"claim_id", "line_id"}, RowVersion: "row_timestamp", ModifiedAt: "modify_timestamp", Practice: "practice_id"},
		[]extractortest.Column{
			{"claim_id", "uniqueidentifier", false},
			{"line_id", "uniqueidentifier", false},
			{"practice_id", "char(4)", false},
			{"paid_amt", "numeric(19,2)", true},
			{"service_date", "varchar(8)", true},
			{"modify_timestamp", "datetime", false},
			{"row_timestamp", "timestamp", false},
		},
	)
}

func wire(t *testing.T, h string) []byte {
	t.Helper()
	return extractortest.Wire(t, h)
}

// row is a claim_lines row as go-mssqldb returns it: GUIDs in wire order,
// the decimal as text, datetime as a UTC time at the displayed millisecond.
func row(t *testing.T, claim, line string, rv uint64, stamp time.Time) []driver.Value {
	return []driver.Value{
		wire(t, claim), wire(t, line), "0001", []byte("-125.40"), "20260105", stamp,
		[]byte{0, 0, 0, 0, byte(rv >> 24), byte(rv >> 16), byte(rv >> 8), byte(rv)},
	}
}

var lineColumns = []string{"claim_id", "line_id", "practice_id", "paid_amt", "service_date", "modify_timestamp", "row_timestamp"}

// scripted answers MIN_ACTIVE_ROWVERSION() with bound, MAX() with max, and
// each chunk query with the next of chunks.
func scripted(bound []byte, max any, chunks ...[][]driver.Value) fakesql.Script {
	return func(query string, _ []any) (fakesql.Result, error) {
		switch {
		case strings.HasPrefix(query, "SELECT MIN_ACTIVE_ROWVERSION()"):
			return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{bound}}}, nil
		case strings.HasPrefix(query, "SELECT MAX("):
			return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{max}}}, nil
		case strings.HasPrefix(query, "SELECT TOP"):
			if len(chunks) == 0 {
				return fakesql.Result{Columns: lineColumns}, nil
			}
			c := chunks[0]
			chunks = chunks[1:]
			return fakesql.Result{Columns: lineColumns, Rows: c}, nil
		}
		return fakesql.Result{}, errors.New("unexpected statement")
	}
}

type chunkSummary struct {
	rows int
	to   watermarks.Position
}

func drain(t *testing.T, ext *hwm.Extractor, pos watermarks.Position) []chunkSummary {
	t.Helper()
	out, err := extractortest.Drain(t, ext, pos, func(to watermarks.Position, batch arrow.RecordBatch) chunkSummary {
		s := chunkSummary{to: to}
		if batch != nil {
			s.rows = int(batch.NumRows())
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

func rv(n uint64) watermarks.Value {
	var b [8]byte
	for i := range 8 {
		b[7-i] = byte(n >> (8 * i))
	}
	return watermarks.RowVersion(b).WithSQLType("rowversion")
}

const (
	claimA = "ff19966f-868b-11d0-b42d-00c04fc964ff" // wire order of 6f9619ff-8b86-d011-b42d-00c04fc964ff
	lineA  = "03020100-0504-0706-0809-0a0b0c0d0e0f" // wire order of 00010203-0405-0607-0809-0a0b0c0d0e0f
	claimB = "00000000-0000-0000-0000-000000000001"
)

func TestSQLServerQueries(t *testing.T) {
	stamp := time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, time.UTC) // datetime tick 1, as the driver shows it
	tests := []struct {
		name   string
		opts   hwm.Options
		pos    watermarks.Position
		script func(t *testing.T) fakesql.Script
		want   []chunkSummary
	}{
		{
			name: "first run records the bound then snapshots",
			opts: hwm.Options{Practices: []string{"0001", "0002"}, ChunkRows: 2},
			script: func(t *testing.T) fakesql.Script {
				return scripted(rv8(0x7D1), nil,
					[][]driver.Value{row(t, claimA, lineA, 0x7C0, stamp), row(t, claimB, lineA, 0x7C1, stamp)},
					[][]driver.Value{row(t, claimB, claimB, 0x7C2, stamp)})
			},
			want: []chunkSummary{
				{2, watermarks.Snapshot{
					LastKey: watermarks.Key{
						watermarks.UUID(uuid.MustParse("00000000-0000-0000-0000-000000000001")).WithSQLType("uniqueidentifier"),
						watermarks.UUID(uuid.MustParse("00010203-0405-0607-0809-0a0b0c0d0e0f")).WithSQLType("uniqueidentifier"),
					},
					Resume: watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7D0)},
				}},
				{1, watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7D0)}},
			},
		},
		{
			name: "row version window then heartbeat",
			opts: hwm.Options{Practices: []string{"0001"}, ChunkRows: 2},
			pos:  watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7D0)},
			script: func(t *testing.T) fakesql.Script {
				return scripted(rv8(0x800), nil,
					[][]driver.Value{row(t, claimA, lineA, 0x7D5, stamp), row(t, claimB, lineA, 0x7D9, stamp)})
			},
			want: []chunkSummary{
				// Row versions page by (version, key) (D14).
				{2, watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7D9), Key: watermarks.Key{
					watermarks.UUID(uuid.MustParse("00000000-0000-0000-0000-000000000001")).WithSQLType("uniqueidentifier"),
					watermarks.UUID(uuid.MustParse("00010203-0405-0607-0809-0a0b0c0d0e0f")).WithSQLType("uniqueidentifier"),
				}}},
				{0, watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7FF)}},
			},
		},
		{
			name: "idle row version at the bound reads nothing",
			opts: hwm.Options{Practices: []string{"0001"}, ChunkRows: 2},
			pos:  watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7FF)},
			script: func(*testing.T) fakesql.Script {
				return scripted(rv8(0x800), nil)
			},
		},
		{
			name: "timestamp cursor overlap then rows after the saved position",
			opts: hwm.Options{Practices: []string{"0001"}, ChunkRows: 2, Cursor: "modify_timestamp", LookBack: 10 * time.Minute},
			pos: watermarks.Cursor{Column: "modify_timestamp", Value: dateTime(t, stamp), Key: watermarks.Key{
				watermarks.UUID(uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")).WithSQLType("uniqueidentifier"),
				watermarks.UUID(uuid.MustParse("00010203-0405-0607-0809-0a0b0c0d0e0f")).WithSQLType("uniqueidentifier"),
			}},
			script: func(t *testing.T) fakesql.Script {
				return scripted(nil, nil,
					[][]driver.Value{row(t, claimA, lineA, 0x7C0, stamp)},
					[][]driver.Value{row(t, claimB, lineA, 0x7C1, stamp.Add(time.Second))})
			},
			want: []chunkSummary{
				{1, watermarks.Cursor{Column: "modify_timestamp", Value: dateTime(t, stamp), Key: watermarks.Key{
					watermarks.UUID(uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")).WithSQLType("uniqueidentifier"),
					watermarks.UUID(uuid.MustParse("00010203-0405-0607-0809-0a0b0c0d0e0f")).WithSQLType("uniqueidentifier"),
				}}},
				{1, watermarks.Cursor{Column: "modify_timestamp", Value: dateTime(t, stamp.Add(time.Second)), Key: watermarks.Key{
					watermarks.UUID(uuid.MustParse("00000000-0000-0000-0000-000000000001")).WithSQLType("uniqueidentifier"),
					watermarks.UUID(uuid.MustParse("00010203-0405-0607-0809-0a0b0c0d0e0f")).WithSQLType("uniqueidentifier"),
				}}},
			},
		},
		{
			name: "timestamp cursor first run records MAX before the snapshot",
			opts: hwm.Options{Practices: []string{"0001"}, ChunkRows: 2, Cursor: "modify_timestamp"},
			script: func(t *testing.T) fakesql.Script {
				return scripted(nil, time.Date(9999, 12, 31, 23, 59, 59, 997_000_000, time.UTC))
			},
			want: []chunkSummary{
				{0, watermarks.Cursor{Column: "modify_timestamp", Value: dateTime(t, time.Date(9999, 12, 31, 23, 59, 59, 997_000_000, time.UTC))}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			db, fake := fakesql.Open(tc.script(t))
			defer db.Close()
			opts := tc.opts
			opts.Allocator = mem
			ext, err := hwm.New(db, schemas.SQLServer, claimLines(t), opts)
			require.NoError(t, err)
			got := drain(t, ext, tc.pos)
			require.Equal(t, len(tc.want), len(got))
			for i := range got {
				require.Equal(t, tc.want[i].rows, got[i].rows, "chunk %d rows", i)
				require.Equal(t, encode(t, tc.want[i].to), encode(t, got[i].to), "chunk %d position", i)
			}
			golden(t, "sqlserver_"+strings.ReplaceAll(tc.name, " ", "_"), fake.Transcript())
			// Every key and cursor parameter is typed (P15): no Go string
			// (nvarchar) and GUIDs as mssql.UniqueIdentifier (P12).
			for _, c := range fake.Calls() {
				for _, a := range c.Args {
					_, isString := a.(string)
					require.False(t, isString, "a Go string parameter goes as nvarchar")
				}
			}
		})
	}
}

// A GUID key read from the wire is bound back as the same uniqueidentifier
// (the driver converts it to the same wire bytes), so the server compares
// it in its own order (PITFALLS.md P12).
func TestSQLServerGUIDKeyRoundTrip(t *testing.T) {
	db, fake := fakesql.Open(scripted(rv8(0x900), nil,
		[][]driver.Value{row(t, claimA, lineA, 0x801, time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC))}))
	defer db.Close()
	ext, err := hwm.New(db, schemas.SQLServer, claimLines(t), hwm.Options{ChunkRows: 1})
	require.NoError(t, err)
	got := drain(t, ext, watermarks.Snapshot{Resume: watermarks.Cursor{Column: "row_timestamp", Value: rv(0x800)}})
	require.Len(t, got, 2)
	calls := fake.Calls()
	require.Len(t, calls, 2)
	var bound [][]byte
	for _, a := range calls[1].Args {
		if u, ok := a.(mssql.UniqueIdentifier); ok {
			b, err := u.Value()
			require.NoError(t, err)
			bound = append(bound, b.([]byte))
		}
	}
	require.Equal(t, [][]byte{wire(t, claimA), wire(t, lineA)}, bound)
}

func rv8(n uint64) []byte {
	b, _ := rv(n).AsRowVersion()
	return b[:]
}

func dateTime(t *testing.T, at time.Time) watermarks.Value {
	t.Helper()
	v, err := watermarks.DateTime(at)
	require.NoError(t, err)
	return v.WithSQLType("datetime")
}

func encode(t *testing.T, p watermarks.Position) string {
	t.Helper()
	b, err := watermarks.Encode(p)
	require.NoError(t, err)
	return string(b)
}
