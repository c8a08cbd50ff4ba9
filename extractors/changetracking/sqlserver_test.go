package changetracking_test

import (
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

	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/internal/fakesql"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path without a server: the exact T-SQL and parameter
// types each run sends, against a fake driver answering with values shaped
// as go-mssqldb returns them.

func claimLines(t *testing.T) *schemas.Table {
	t.Helper()
	return extractortest.DeclareTable(t, &schemas.Table{Schema: "dbo", Name: "claim_lines", Dialect: schemas.SQLServer,
		Key: []string{"claim_id", "line_id"}, ModifiedAt: "modify_timestamp", Practice: "practice_id"},
		[]extractortest.Column{
			{"claim_id", "uniqueidentifier", false},
			{"line_id", "uniqueidentifier", false},
			{"practice_id", "char(4)", false},
			{"paid_amt", "numeric(19,2)", true},
			{"service_date", "varchar(8)", true},
			{"modify_timestamp", "datetime", false},
		},
	)
}

func wire(t *testing.T, h string) []byte {
	t.Helper()
	return extractortest.Wire(t, h)
}

const (
	claimA = "ff19966f-868b-11d0-b42d-00c04fc964ff" // wire order of 6f9619ff-8b86-d011-b42d-00c04fc964ff
	lineA  = "03020100-0504-0706-0809-0a0b0c0d0e0f" // wire order of 00010203-0405-0607-0809-0a0b0c0d0e0f
	claimB = "00000000-0000-0000-0000-000000000001"
)

var stamp = time.Date(2026, 1, 5, 8, 30, 0, 3_000_000, time.UTC)

func currentRow(t *testing.T, op string, version int64, claim, line string) []driver.Value {
	return []driver.Value{op, version, true, wire(t, claim), wire(t, line), "0001", []byte("-125.40"), "20260105", stamp}
}

func deletedRow(t *testing.T, version int64, claim, line string) []driver.Value {
	return []driver.Value{"D", version, false, wire(t, claim), wire(t, line), nil, nil, nil, nil}
}

var (
	changeColumns = []string{"", "", "", "claim_id", "line_id", "practice_id", "paid_amt", "service_date", "modify_timestamp"}
	lineColumns   = changeColumns[3:]
)

// script answers the source's statements: the current version, the
// minimum valid version (nil: NULL), snapshot isolation off, the probe,
// and each change or snapshot chunk with the next of chunks.
type script struct {
	current, minValid any
	snapshotIsolation bool
	status            []driver.Value
	chunks            [][][]driver.Value
}

func (s *script) answer(query string, _ []any) (fakesql.Result, error) {
	one := func(v any) (fakesql.Result, error) {
		return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{v}}}, nil
	}
	switch {
	case query == "SELECT CHANGE_TRACKING_CURRENT_VERSION()":
		return one(s.current)
	case strings.HasPrefix(query, "SELECT CHANGE_TRACKING_MIN_VALID_VERSION"):
		return one(s.minValid)
	case strings.Contains(query, "FROM sys.databases WHERE"):
		return one(s.snapshotIsolation)
	case strings.Contains(query, "HAS_PERMS_BY_NAME"):
		return fakesql.Result{Columns: make([]string, 7), Rows: [][]driver.Value{s.status}}, nil
	case strings.HasPrefix(query, "SELECT TOP"):
		cols := lineColumns
		if strings.Contains(query, "CHANGETABLE") {
			cols = changeColumns
		}
		if len(s.chunks) == 0 {
			return fakesql.Result{Columns: cols}, nil
		}
		c := s.chunks[0]
		s.chunks = s.chunks[1:]
		return fakesql.Result{Columns: cols, Rows: c}, nil
	}
	return fakesql.Result{}, errors.New("unexpected statement")
}

type chunkSummary struct {
	ops []schemas.Op
	to  watermarks.Position
}

func drain(t *testing.T, ext *changetracking.Extractor, pos watermarks.Position) ([]chunkSummary, error) {
	t.Helper()
	return extractortest.Drain(t, ext, pos, func(to watermarks.Position, batch arrow.RecordBatch) chunkSummary {
		s := chunkSummary{to: to}
		if batch != nil {
			ops := batch.Column(batch.Schema().FieldIndices(schemas.OpColumn)[0]).(*array.Int8)
			for i := range ops.Len() {
				s.ops = append(s.ops, schemas.Op(ops.Value(i)))
			}
		}
		return s
	})
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	extractortest.Golden(t, *update, name, got)
}

func newSQL(t *testing.T, s *script, chunkRows int) (*changetracking.Extractor, *fakesql.DB) {
	t.Helper()
	db, rec := fakesql.Open(s.answer)
	t.Cleanup(func() { db.Close() })
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	ext, err := changetracking.NewSQLServer(db, claimLines(t), changetracking.Options{
		Practices: []string{"0001"}, ChunkRows: chunkRows, Allocator: mem,
	})
	require.NoError(t, err)
	return ext, rec
}

func guidKey(t *testing.T, claim, line string) watermarks.Key {
	t.Helper()
	c, l := wire(t, claim), wire(t, line)
	conv := func(b []byte) watermarks.Value {
		u := uuid.UUID(b)
		u[0], u[1], u[2], u[3] = b[3], b[2], b[1], b[0]
		u[4], u[5], u[6], u[7] = b[5], b[4], b[7], b[6]
		return watermarks.UUID(u).WithSQLType("uniqueidentifier")
	}
	return watermarks.Key{conv(c), conv(l)}
}

// TestP8SQLFirstRunRecordsCurrentVersionBeforeSnapshot: the first run's
// first statement is CHANGE_TRACKING_CURRENT_VERSION(); the keyset snapshot
// follows and hands off to that version.
func TestP8SQLFirstRunRecordsCurrentVersionBeforeSnapshot(t *testing.T) {
	s := &script{current: int64(42), minValid: int64(7), chunks: [][][]driver.Value{{
		currentRow(t, "", 0, claimA, lineA)[3:], currentRow(t, "", 0, claimB, lineA)[3:],
	}}}
	ext, rec := newSQL(t, s, 10)
	got, err := drain(t, ext, nil)
	require.NoError(t, err)
	require.Equal(t, []chunkSummary{{ops: []schemas.Op{schemas.OpInsert, schemas.OpInsert}, to: watermarks.CT{Version: 42}}}, got)
	require.Equal(t, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", rec.Calls()[0].Query)
	golden(t, "sqlserver_first_run_records_current_version_then_snapshots", rec.Transcript())
}

// TestSQLWindowInKeyChunksWithKeyOnlyDeletes: a window read in key-ordered
// chunks, the key bound as uniqueidentifier parameters (PITFALLS.md P12,
// P15), the validity checked before and after each read (P2), a delete
// emitted key-only (P16), and the window's end position.
func TestSQLWindowInKeyChunksWithKeyOnlyDeletes(t *testing.T) {
	s := &script{current: int64(20), minValid: int64(7), chunks: [][][]driver.Value{
		{currentRow(t, "I", 12, claimB, lineA), deletedRow(t, 15, claimA, lineA)},
		{currentRow(t, "U", 19, claimA, claimB)},
	}}
	ext, rec := newSQL(t, s, 2)
	got, err := drain(t, ext, watermarks.CT{Version: 10})
	require.NoError(t, err)
	require.Equal(t, []chunkSummary{
		{ops: []schemas.Op{schemas.OpInsert, schemas.OpDelete}, to: watermarks.CT{Version: 10, To: 20, LastKey: guidKey(t, claimA, lineA)}},
		{ops: []schemas.Op{schemas.OpUpdate}, to: watermarks.CT{Version: 20}},
	}, got)
	golden(t, "sqlserver_window_in_key_chunks_with_key_only_deletes", rec.Transcript())
}

// TestSQLResumeMidWindowKeepsTo: a saved mid-window position continues
// after its key up to its To, without reading the current version.
func TestSQLResumeMidWindowKeepsTo(t *testing.T) {
	s := &script{current: int64(99), minValid: int64(7)}
	ext, rec := newSQL(t, s, 2)
	got, err := drain(t, ext, watermarks.CT{Version: 10, To: 20, LastKey: guidKey(t, claimA, lineA)})
	require.NoError(t, err)
	require.Equal(t, []chunkSummary{{to: watermarks.CT{Version: 20}}}, got)
	for _, c := range rec.Calls() {
		require.NotEqual(t, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", c.Query)
	}
	golden(t, "sqlserver_resume_mid_window_keeps_to", rec.Transcript())
}

// TestP2SQLExpiredVersion: a saved version below the minimum valid
// version fails Open before any CHANGETABLE read.
func TestP2SQLExpiredVersion(t *testing.T) {
	s := &script{current: int64(99), minValid: int64(50)}
	ext, rec := newSQL(t, s, 2)
	_, err := drain(t, ext, watermarks.CT{Version: 10})
	requireExpired(t, err)
	for _, c := range rec.Calls() {
		require.NotContains(t, c.Query, "CHANGETABLE")
	}
}

// TestP17SQLMissingGrantNamesGrant: a NULL minimum valid version makes the
// extractor probe; the error names the missing VIEW CHANGE TRACKING grant
// and the GRANT statement.
func TestP17SQLMissingGrantNamesGrant(t *testing.T) {
	s := &script{current: int64(99), minValid: nil,
		status: []driver.Value{true, true, false, true, false, "ehrsync_reader", "NGProd"}}
	ext, rec := newSQL(t, s, 2)
	_, err := drain(t, ext, watermarks.CT{Version: 10})
	require.ErrorIs(t, err, changetracking.ErrNotReadable)
	require.Contains(t, err.Error(), "GRANT VIEW CHANGE TRACKING ON [dbo].[claim_lines] TO [ehrsync_reader];")
	golden(t, "sqlserver_missing_grant_probe", rec.Transcript())
}

// TestSQLSnapshotIsolationUsesATransaction: where the database allows
// snapshot isolation, the read and its validity check run in one SNAPSHOT
// transaction (the fake driver has none, so the attempt shows as an
// error from BEGIN).
func TestSQLSnapshotIsolationUsesATransaction(t *testing.T) {
	s := &script{current: int64(20), minValid: int64(7), snapshotIsolation: true}
	ext, _ := newSQL(t, s, 2)
	_, err := drain(t, ext, watermarks.CT{Version: 10})
	require.ErrorContains(t, err, "begin snapshot transaction")
}
