package changetracking_test

import (
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The SQL Server path through go-mssqldb: the exact T-SQL and the
// parameter types the server receives on each run, against SQL Server's
// Change Tracking semantics held in a model (CHANGETABLE's net changes,
// versions, minimum valid versions, permissions, SNAPSHOT transactions)
// and served over TDS.

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

// GUIDs in wire order. SQL Server orders them by bytes 10-15 first:
// claimB < claimA, and lineA < lineB.
const (
	claimA = "ff19966f-868b-11d0-b42d-00c04fc964ff" // wire order of 6f9619ff-8b86-d011-b42d-00c04fc964ff
	lineA  = "03020100-0504-0706-0809-0a0b0c0d0e0f" // wire order of 00010203-0405-0607-0809-0a0b0c0d0e0f
	claimB = "00000000-0000-0000-0000-000000000001"
	lineB  = "00000000-0000-0000-0000-100000000000"
)

var stamp = time.Date(2026, 1, 5, 8, 30, 0, 3_000_000, time.UTC)

// lineRow is a claim_lines row of practice 0001 as the model holds it.
func lineRow(t *testing.T, claim, l string) map[string]any {
	return map[string]any{
		"claim_id": wire(t, claim), "line_id": wire(t, l), "practice_id": "0001",
		"paid_amt": "-125.40", "service_date": "20260105", "modify_timestamp": stamp,
	}
}

// key is a row's key, as a delete or an update names it.
func key(t *testing.T, claim, l string) map[string]any {
	return map[string]any{"claim_id": wire(t, claim), "line_id": wire(t, l)}
}

// source is claim_lines in a database with Change Tracking on, served over
// TDS, its every request recorded.
type source struct {
	t     *testing.T
	table *schemas.Table
	m     *mssqlmodel.Model
	srv   *mssqltest.Server
	rec   *mssqltest.Recorder
}

// newSource tracks claim_lines from version minValid (its minimum valid
// version): commits elsewhere move the database's version there first.
func newSource(t *testing.T, opts mssqlmodel.Options, minValid int64) *source {
	t.Helper()
	s := &source{t: t, table: claimLines(t), m: mssqlmodel.New(opts)}
	s.srv, s.rec = mssqltest.ServeRecorded(t, s.m)
	s.m.EnableCTDatabase()
	require.NoError(t, s.m.CreateTable(s.table))
	s.touchTo(minValid)
	require.NoError(t, s.m.EnableCT(s.table.QualifiedName()))
	got, ok := s.m.CTMinValid(s.table.QualifiedName())
	require.True(t, ok)
	require.Equal(t, minValid, got)
	return s
}

// version returns CHANGE_TRACKING_CURRENT_VERSION().
func (s *source) version() int64 {
	v, ok := s.m.CTVersion()
	require.True(s.t, ok, "change tracking is on")
	return v
}

// touchTo commits transactions elsewhere until the current version is v.
func (s *source) touchTo(v int64) {
	s.t.Helper()
	for s.version() < v {
		s.m.Touch()
	}
	require.Equal(s.t, v, s.version())
}

// commit runs do in one transaction and requires its commit to be
// version v.
func (s *source) commit(v int64, do func(tx *mssqlmodel.Tx)) {
	s.t.Helper()
	s.touchTo(v - 1)
	tx := s.m.Begin()
	do(tx)
	require.NoError(s.t, tx.Commit())
	require.Equal(s.t, v, s.version())
}

// extractor opens the source connection (its opening ping left out of the
// recording) and builds the extractor on it.
func (s *source) extractor(chunkRows int) *changetracking.Extractor {
	s.t.Helper()
	db := s.srv.Open(s.t)
	s.rec.Reset()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	s.t.Cleanup(func() { mem.AssertSize(s.t, 0) })
	ext, err := changetracking.NewSQLServer(db, s.table, changetracking.Options{
		Bounds: extractors.Bounds{Practices: []string{"0001"}, ChunkRows: chunkRows, Allocator: mem},
	})
	require.NoError(s.t, err)
	return ext
}

// requireTyped: every key parameter reaches the server as a
// uniqueidentifier, the practice as varchar, and nothing the change query
// compares as a plain nvarchar (PITFALLS.md P12, P15). The table's name
// for OBJECT_ID is an nvarchar, as sysname is.
func (s *source) requireTyped() {
	s.t.Helper()
	for i, st := range s.rec.Statements() {
		for col, params := range st.Bound() {
			for _, p := range params {
				switch col {
				case "claim_id", "line_id":
					require.Equal(s.t, "uniqueidentifier", p.Type, "statement %d: %s bound to %s", i+1, p.Name, col)
				case "practice_id":
					require.Equal(s.t, "varchar(4)", p.Type, "statement %d: %s bound to %s", i+1, p.Name, col)
				}
			}
		}
		for _, name := range st.PlainNVarChar() {
			require.NotContains(s.t, st.SQL, "CHANGETABLE", "statement %d: %s is a plain nvarchar", i+1, name)
		}
	}
}

// requireNoTransaction: with snapshot isolation off, each read is its own
// READ COMMITTED statement.
func (s *source) requireNoTransaction() {
	s.t.Helper()
	for _, ev := range s.rec.Events() {
		require.Empty(s.t, ev.Tx, "a transaction without snapshot isolation")
	}
}

// maxChunks bounds a run: a resume that does not move on would loop.
const maxChunks = 20

type chunkSummary struct {
	ops []schemas.Op
	to  watermarks.Position
}

func drain(t *testing.T, ext *changetracking.Extractor, pos watermarks.Position) ([]chunkSummary, error) {
	t.Helper()
	chunks := 0
	return extractortest.Drain(t, ext, pos, func(to watermarks.Position, batch arrow.RecordBatch) chunkSummary {
		chunks++
		require.Less(t, chunks, maxChunks, "the run does not end")
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
	s := newSource(t, mssqlmodel.Options{}, 7)
	s.commit(8, func(tx *mssqlmodel.Tx) {
		require.NoError(t, tx.Insert("dbo.claim_lines", lineRow(t, claimA, lineA)))
		require.NoError(t, tx.Insert("dbo.claim_lines", lineRow(t, claimB, lineA)))
	})
	s.touchTo(42)
	got, err := drain(t, s.extractor(10), nil)
	require.NoError(t, err)
	require.Equal(t, []chunkSummary{{ops: []schemas.Op{schemas.OpInsert, schemas.OpInsert}, to: watermarks.CT{Version: 42}}}, got)
	require.Equal(t, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", s.rec.Statements()[0].SQL)
	golden(t, "sqlserver_first_run_records_current_version_then_snapshots", s.rec.Transcript())
	s.requireTyped()
	s.requireNoTransaction()
}

// windowSource holds the window (10, 20] of claim_lines: (B, lineA)
// inserted at 12, (A, lineA) deleted at 15, (A, lineB) updated at 19 (in
// SQL Server's key order), and minimum valid version 7.
func windowSource(t *testing.T, opts mssqlmodel.Options) *source {
	s := newSource(t, opts, 7)
	s.commit(8, func(tx *mssqlmodel.Tx) {
		require.NoError(t, tx.Insert("dbo.claim_lines", lineRow(t, claimA, lineA)))
		require.NoError(t, tx.Insert("dbo.claim_lines", lineRow(t, claimA, lineB)))
	})
	s.commit(12, func(tx *mssqlmodel.Tx) {
		require.NoError(t, tx.Insert("dbo.claim_lines", lineRow(t, claimB, lineA)))
	})
	s.commit(15, func(tx *mssqlmodel.Tx) {
		require.NoError(t, tx.Delete("dbo.claim_lines", key(t, claimA, lineA)))
	})
	s.commit(19, func(tx *mssqlmodel.Tx) {
		u := key(t, claimA, lineB)
		u["paid_amt"] = "-130.00"
		require.NoError(t, tx.Update("dbo.claim_lines", u))
	})
	s.touchTo(20)
	return s
}

// TestSQLWindowInKeyChunksWithKeyOnlyDeletes: a window read in key-ordered
// chunks, the key bound as uniqueidentifier parameters (PITFALLS.md P12,
// P15), the validity checked before and after each read (P2), a delete
// emitted key-only (P16), and the window's end position.
func TestSQLWindowInKeyChunksWithKeyOnlyDeletes(t *testing.T) {
	s := windowSource(t, mssqlmodel.Options{})
	got, err := drain(t, s.extractor(2), watermarks.CT{Version: 10})
	require.NoError(t, err)
	require.Equal(t, []chunkSummary{
		{ops: []schemas.Op{schemas.OpInsert, schemas.OpDelete}, to: watermarks.CT{Version: 10, To: 20, LastKey: guidKey(t, claimA, lineA)}},
		{ops: []schemas.Op{schemas.OpUpdate}, to: watermarks.CT{Version: 20}},
	}, got)
	golden(t, "sqlserver_window_in_key_chunks_with_key_only_deletes", s.rec.Transcript())
	s.requireTyped()
	s.requireNoTransaction()
}

// TestSQLResumeMidWindowKeepsTo: a saved mid-window position continues
// after its key up to its To, without reading the current version: a
// change after To (version 30) waits for the next window.
func TestSQLResumeMidWindowKeepsTo(t *testing.T) {
	s := windowSource(t, mssqlmodel.Options{})
	s.commit(30, func(tx *mssqlmodel.Tx) {
		u := key(t, claimA, lineB)
		u["paid_amt"] = "-140.00"
		require.NoError(t, tx.Update("dbo.claim_lines", u))
	})
	s.touchTo(99)
	got, err := drain(t, s.extractor(2), watermarks.CT{Version: 10, To: 20, LastKey: guidKey(t, claimA, lineA)})
	require.NoError(t, err)
	require.Equal(t, []chunkSummary{{to: watermarks.CT{Version: 20}}}, got)
	for _, st := range s.rec.Statements() {
		require.NotEqual(t, "SELECT CHANGE_TRACKING_CURRENT_VERSION()", st.SQL)
	}
	golden(t, "sqlserver_resume_mid_window_keeps_to", s.rec.Transcript())
	s.requireTyped()
}

// TestP2SQLExpiredVersion: a saved version below the minimum valid
// version (raised by cleanup) fails Open before any CHANGETABLE read.
func TestP2SQLExpiredVersion(t *testing.T) {
	s := windowSource(t, mssqlmodel.Options{})
	s.touchTo(99)
	require.NoError(t, s.m.CleanupCT("dbo.claim_lines", 50))
	_, err := drain(t, s.extractor(2), watermarks.CT{Version: 10})
	requireExpired(t, err)
	require.NotEmpty(t, s.rec.Statements())
	for _, st := range s.rec.Statements() {
		require.NotContains(t, st.SQL, "CHANGETABLE")
	}
}

// TestP17SQLMissingGrantNamesGrant: a login without VIEW CHANGE TRACKING
// reads a NULL minimum valid version, which makes the extractor probe; the
// error names the missing grant and the GRANT statement.
func TestP17SQLMissingGrantNamesGrant(t *testing.T) {
	s := windowSource(t, mssqlmodel.Options{})
	s.m.AddLogin(mssqltest.User, "db_datareader")
	_, err := drain(t, s.extractor(2), watermarks.CT{Version: 10})
	require.ErrorIs(t, err, changetracking.ErrNotReadable)
	require.Contains(t, err.Error(), "GRANT VIEW CHANGE TRACKING ON [dbo].[claim_lines] TO [ehrsync_reader];")
	golden(t, "sqlserver_missing_grant_probe", s.rec.Transcript())

	// Granted, the same run reads the window.
	require.NoError(t, s.m.Grant(mssqltest.User, "VIEW CHANGE TRACKING", "OBJECT::[dbo].[claim_lines]"))
	got, err := drain(t, s.extractor(2), watermarks.CT{Version: 10})
	require.NoError(t, err)
	require.Len(t, got, 2)
}

// TestSQLSnapshotIsolationUsesATransaction: where the database allows
// snapshot isolation, each read and its validity check run in one SNAPSHOT
// transaction: the server sees BEGIN (isolation snapshot), the CHANGETABLE
// read, the minimum valid version, COMMIT.
func TestSQLSnapshotIsolationUsesATransaction(t *testing.T) {
	s := windowSource(t, mssqlmodel.Options{SnapshotIsolation: true})
	got, err := drain(t, s.extractor(2), watermarks.CT{Version: 10})
	require.NoError(t, err)
	require.Len(t, got, 2)
	var reads int
	evs := s.rec.Events()
	for i, ev := range evs {
		if ev.Tx != "" || !strings.Contains(ev.SQL, "CHANGETABLE") {
			continue
		}
		reads++
		require.GreaterOrEqual(t, i, 1)
		require.Less(t, i+2, len(evs))
		require.Equal(t, "begin", evs[i-1].Tx, "the read opens the transaction")
		require.Equal(t, tdstest.IsolationSnapshot, evs[i-1].Isolation)
		require.Contains(t, evs[i+1].SQL, "CHANGE_TRACKING_MIN_VALID_VERSION", "the validity check is in the transaction")
		require.Equal(t, "commit", evs[i+2].Tx)
	}
	require.Equal(t, 2, reads)
	golden(t, "sqlserver_snapshot_isolation_transaction", s.rec.Transcript())
}
