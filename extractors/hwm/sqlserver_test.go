package hwm_test

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/hwm"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path through go-mssqldb: the exact T-SQL and the exact
// parameter types the server receives on each run (PITFALLS.md P12, P15),
// read from SQL Server's semantics held in a model (rowversion from
// @@DBTS, MIN_ACTIVE_ROWVERSION() held by open transactions, datetime at
// 1/300 s, GUIDs in SQL Server's order) and served over TDS.

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

// row is a claim_lines row of practice as the model holds it (the model
// gives it its row version when it is written).
func row(t *testing.T, practice, claim, line string, stamp time.Time) map[string]any {
	return map[string]any{
		"claim_id": wire(t, claim), "line_id": wire(t, line), "practice_id": practice,
		"paid_amt": "-125.40", "service_date": "20260105", "modify_timestamp": stamp,
	}
}

// source is a claim_lines table served over TDS, its every request
// recorded.
type source struct {
	t     *testing.T
	table *schemas.Table
	srv   *mssqltest.Server
	rec   *mssqltest.Recorder
}

// newSource serves a database whose @@DBTS starts at dbts.
func newSource(t *testing.T, dbts uint64) *source {
	t.Helper()
	s := &source{t: t, table: claimLines(t)}
	s.srv, s.rec = mssqltest.ServeRecorded(t, mssqlmodel.New(mssqlmodel.Options{FirstRowVersion: dbts}))
	require.NoError(t, s.srv.Model.CreateTable(s.table))
	return s
}

// insert commits rows, each in its own transaction (each takes the next
// row version).
func (s *source) insert(rows ...map[string]any) {
	s.t.Helper()
	for _, r := range rows {
		tx := s.srv.Model.Begin()
		require.NoError(s.t, tx.Insert(s.table.QualifiedName(), r))
		require.NoError(s.t, tx.Commit())
	}
}

// touchTo commits writes elsewhere until @@DBTS is dbts.
func (s *source) touchTo(dbts uint64) {
	s.t.Helper()
	for s.srv.Model.DBTS() < dbts {
		s.srv.Model.Touch()
	}
	require.Equal(s.t, dbts, s.srv.Model.DBTS())
}

// extractor opens the source connection (its opening ping left out of the
// recording) and builds the extractor on it.
func (s *source) extractor(opts hwm.Options) *hwm.Extractor {
	s.t.Helper()
	db := s.srv.Open(s.t)
	s.rec.Reset()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	s.t.Cleanup(func() { mem.AssertSize(s.t, 0) })
	opts.Allocator = mem
	ext, err := hwm.New(db, schemas.SQLServer, s.table, opts)
	require.NoError(s.t, err)
	return ext
}

// maxChunks bounds a run: a resume that does not move on would loop.
const maxChunks = 20

type chunkSummary struct {
	rows int
	to   watermarks.Position
}

func drain(t *testing.T, ext *hwm.Extractor, pos watermarks.Position) []chunkSummary {
	t.Helper()
	chunks := 0
	out, err := extractortest.Drain(t, ext, pos, func(to watermarks.Position, batch arrow.RecordBatch) chunkSummary {
		chunks++
		require.Less(t, chunks, maxChunks, "the run does not end")
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
	claimB = "00000000-0000-0000-0000-000000000001" // sorts before claimA and lineA in SQL Server (bytes 10-15 first)
	claimC = "00000000-0000-0000-0000-0000000000c0"
)

func TestSQLServerQueries(t *testing.T) {
	stamp := time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, time.UTC) // datetime tick 1, as the driver shows it
	maxStamp := time.Date(9999, 12, 31, 23, 59, 59, 997_000_000, time.UTC)
	tests := []struct {
		name  string
		opts  hwm.Options
		pos   watermarks.Position
		setup func(t *testing.T) *source
		want  []chunkSummary
	}{
		{
			name: "first run records the bound then snapshots",
			opts: hwm.Options{Bounds: extractors.Bounds{Practices: []string{"0001", "0002"}, ChunkRows: 2}},
			setup: func(t *testing.T) *source {
				// Row versions 0x7CE..0x7D0: MIN_ACTIVE_ROWVERSION() is 0x7D1.
				s := newSource(t, 0x7CD)
				s.insert(row(t, "0001", claimA, lineA, stamp), row(t, "0002", claimB, lineA, stamp), row(t, "0001", claimB, claimB, stamp))
				return s
			},
			want: []chunkSummary{
				// In SQL Server's GUID order: (B, B), (B, lineA), then (A, lineA).
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
			opts: hwm.Options{Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: 2}},
			pos:  watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7D0)},
			setup: func(t *testing.T) *source {
				s := newSource(t, 0x7CF)
				s.insert(row(t, "0001", claimC, lineA, stamp)) // 0x7D0: at the saved position, already read
				s.touchTo(0x7D4)
				s.insert(row(t, "0001", claimA, lineA, stamp)) // 0x7D5
				s.touchTo(0x7D7)
				s.insert(row(t, "0002", claimC, claimC, stamp)) // 0x7D8: another practice
				s.insert(row(t, "0001", claimB, lineA, stamp))  // 0x7D9
				s.touchTo(0x7FF)
				// A transaction still open holds MIN_ACTIVE_ROWVERSION() at
				// its row's version, 0x800 (P10): its row is not read.
				open := s.srv.Model.Begin()
				require.NoError(t, open.Insert(s.table.QualifiedName(), row(t, "0001", claimB, claimB, stamp)))
				t.Cleanup(open.Rollback)
				return s
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
			opts: hwm.Options{Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: 2}},
			pos:  watermarks.Cursor{Column: "row_timestamp", Value: rv(0x7FF)},
			setup: func(t *testing.T) *source {
				// Rows at 0x7FE and 0x7FF, both read: MIN_ACTIVE_ROWVERSION() is 0x800.
				s := newSource(t, 0x7FD)
				s.insert(row(t, "0001", claimA, lineA, stamp), row(t, "0001", claimB, lineA, stamp))
				return s
			},
		},
		{
			name: "timestamp cursor overlap then rows after the saved position",
			opts: hwm.Options{Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: 2}, Cursor: "modify_timestamp", LookBack: 10 * time.Minute},
			pos: watermarks.Cursor{Column: "modify_timestamp", Value: dateTime(t, stamp), Key: watermarks.Key{
				watermarks.UUID(uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")).WithSQLType("uniqueidentifier"),
				watermarks.UUID(uuid.MustParse("00010203-0405-0607-0809-0a0b0c0d0e0f")).WithSQLType("uniqueidentifier"),
			}},
			setup: func(t *testing.T) *source {
				s := newSource(t, 0x7BF)
				s.insert(
					row(t, "0001", claimC, lineA, stamp.Add(-20*time.Minute)), // before the look-back
					row(t, "0001", claimA, lineA, stamp),                      // the saved position, read again
					row(t, "0002", claimC, claimC, stamp.Add(time.Second)),    // another practice
					row(t, "0001", claimB, lineA, stamp.Add(time.Second)),
				)
				return s
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
			opts: hwm.Options{Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: 2}, Cursor: "modify_timestamp"},
			setup: func(t *testing.T) *source {
				// The last datetime there is survives the round trip (P14);
				// another practice's later-looking value is not the bound.
				s := newSource(t, 0x7BF)
				s.insert(row(t, "0001", claimA, lineA, maxStamp), row(t, "0002", claimB, lineA, stamp))
				return s
			},
			want: []chunkSummary{
				// The snapshot reads the one row and hands off to MAX.
				{1, watermarks.Cursor{Column: "modify_timestamp", Value: dateTime(t, maxStamp)}},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.setup(t)
			ext := s.extractor(tc.opts)
			got := drain(t, ext, tc.pos)
			require.Equal(t, len(tc.want), len(got))
			for i := range got {
				require.Equal(t, tc.want[i].rows, got[i].rows, "chunk %d rows", i)
				require.Equal(t, encode(t, tc.want[i].to), encode(t, got[i].to), "chunk %d position", i)
			}
			golden(t, "sqlserver_"+strings.ReplaceAll(tc.name, " ", "_"), s.rec.Transcript())
			requireTypedParams(t, s.table, s.rec.Statements())
		})
	}
}

// requireTypedParams: every key and cursor parameter reaches the server
// with its column's type (PITFALLS.md P12, P15): GUIDs as uniqueidentifier,
// the datetime cursor as datetime, row versions as binary, the practice as
// varchar, and no parameter as a plain nvarchar (a varchar column sought
// with an nvarchar scans).
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
				case "rowversion", "timestamp":
					require.Contains(t, []string{"binary(8)", "varbinary(8)"}, p.Type, "statement %d: %s bound to %s", i+1, p.Name, col)
				default:
					require.Equal(t, c.Type.String(), p.Type, "statement %d: %s bound to %s", i+1, p.Name, col)
				}
			}
		}
	}
}

// A GUID key read from the wire is bound back as the same uniqueidentifier:
// the server receives the row's own bytes, so it compares the key in its
// own order (PITFALLS.md P12).
func TestSQLServerGUIDKeyRoundTrip(t *testing.T) {
	s := newSource(t, 0x800)
	s.insert(row(t, "0001", claimA, lineA, time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC))) // 0x801
	ext := s.extractor(hwm.Options{Bounds: extractors.Bounds{ChunkRows: 1}})
	got := drain(t, ext, watermarks.Snapshot{Resume: watermarks.Cursor{Column: "row_timestamp", Value: rv(0x800)}})
	require.Len(t, got, 2)
	require.Equal(t, 1, got[0].rows)
	require.Equal(t, 0, got[1].rows)
	stmts := s.rec.Statements()
	require.Len(t, stmts, 2)
	var bound [][]byte
	for _, p := range stmts[1].Params {
		if p.Type == "uniqueidentifier" {
			b, ok := p.Raw.([]byte)
			require.True(t, ok, "%s: %T", p.Name, p.Raw)
			bound = append(bound, b)
		}
	}
	stored, err := s.srv.Model.Rows(s.table.QualifiedName())
	require.NoError(t, err)
	require.Len(t, stored, 1)
	require.Equal(t, [][]byte{stored[0]["claim_id"].([]byte), stored[0]["line_id"].([]byte)}, bound)
	require.Equal(t, [][]byte{wire(t, claimA), wire(t, lineA)}, bound)
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
