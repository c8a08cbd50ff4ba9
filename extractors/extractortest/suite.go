// Package extractortest is the conformance suite every extractor runs
// (STYLE.md 17) against a source: a real database (Run: PostgreSQL always,
// package pgtest; SQL Server when EHRSYNC_TEST_MSSQL_DSN is set), or an
// in-process model of a database's change data that the extractor's own
// test package supplies (RunModel: the CDC and Change Tracking models).
//
// Each test builds its own small tables at the source, drives inserts,
// updates, deletes and open transactions there, runs the extractor under test
// in runs of chunks exactly as the engine does (a new extractor per run, the
// position round-tripped through the watermarks codec between chunks, as the
// store saves it), applies every chunk to an in-memory model of the store,
// and compares the store with the source table. Every batch is checked
// against the change-batch contract (schemas.ValidateChangeBatch), every
// allocation against a checked allocator.
package extractortest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Source is the source database the suite runs against.
type Source struct {
	Dialect schemas.Dialect
	// Open returns the source database for one test. The suite's tables get
	// unique names and are dropped when the test ends.
	Open func(t *testing.T) *sql.DB
	// BlockingReads is true when a READ COMMITTED read waits for another
	// session's uncommitted rows (SQL Server without
	// READ_COMMITTED_SNAPSHOT). The open-transaction test then cannot hold
	// a transaction open across a run, and is skipped.
	BlockingReads bool
}

// Config is what the suite varies per extractor it builds: the practices,
// the chunk rows and the allocator of its Bounds.
type Config = extractors.Bounds

// Subject is the extractor under test.
type Subject struct {
	// New builds the extractor for table t on db. The suite calls it for
	// every run, so that each run starts from the saved position alone.
	// RunModel does not use it: the Model builds the extractor.
	New func(db *sql.DB, d schemas.Dialect, t *schemas.Table, cfg Config) (extractors.Extractor, error)
	// SeesDeletes: the extractor reports deletes. When false, the suite
	// asserts that a deleted row stays in the store (PITFALLS.md P11).
	SeesDeletes bool
	// Heartbeat: an idle run moves the position to the window's bound in a
	// chunk with no rows (PITFALLS.md P3).
	Heartbeat bool
	// Snapshot: every run reads the whole table again (no incremental
	// position).
	Snapshot bool
	// ErrPosition is the error Open matches (errors.Is) when given a
	// position it cannot start from.
	ErrPosition error
	// Native is a position of the extractor's own incremental kind (its
	// zero value will do), nil for a snapshot or a high-water mark. The
	// foreign-position case does not offer the extractor its own kind.
	Native watermarks.Position
	// Expires: a saved position can expire at the source (change data
	// cleaned up, PITFALLS.md P1/P2), and Open or Next then fails with
	// extractors.ErrExpired. The expired-position case runs only when the
	// source can expire positions (a model; not a live database).
	Expires bool
}

// Run runs the conformance suite for sub against the database src.
func Run(t *testing.T, src Source, sub Subject) {
	run(t, sub, func(t *testing.T) source {
		return &sqlSource{db: &db{t: t, dialect: src.Dialect, conn: src.Open(t)}, sub: sub, blocking: src.BlockingReads}
	})
}

func run(t *testing.T, sub Subject, open func(t *testing.T) source) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"insert", testInsert},
		{"update", testUpdate},
		{"delete", testDelete},
		{"empty table", testEmpty},
		{"resume after a crash at every chunk boundary", testResume},
		{"idle heartbeat", testIdle},
		{"every supported type", testTypes},
		{"ties at a chunk boundary", testTies},
		{"transaction spanning a chunk boundary", testTransaction},
		{"open transaction during a run", testOpenTransaction},
		{"changes during the first snapshot", testHandoff},
		{"column allow-list", testAllowList},
		{"foreign position", testForeignPosition},
		{"expired position", testExpired},
	}
	for _, tc := range tests {
		// Sequential: PostgreSQL's xid bound is cluster-wide, so another
		// test's open transaction would hold this test's window back.
		t.Run(tc.name, func(t *testing.T) {
			src := open(t)
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			t.Cleanup(func() { mem.AssertSize(t, 0) })
			h := &harness{
				t:     t,
				src:   src,
				sub:   sub,
				mem:   mem,
				clock: newClock(),
				rows:  10,
			}
			tc.run(t, h)
		})
	}
}

// harness is one test's state: the source, the table, the store and the
// saved position.
type harness struct {
	t     *testing.T
	src   source
	sub   Subject
	mem   *memory.CheckedAllocator
	clock *clock
	rows  int // chunk rows

	table *schemas.Table
	store *store
	pos   watermarks.Position
}

// use creates table at the source and starts an empty store for it.
func (h *harness) use(table *schemas.Table) {
	h.t.Helper()
	h.src.create(table)
	h.table = table
	h.store = newStore(table)
}

// runResult is what one run did.
type runResult struct {
	chunks     int
	rows       int
	heartbeats int // chunks without rows
}

// sync runs one run with a new extractor from the saved position, at most
// maxChunks chunks (0: to the end), applying every chunk and saving its
// position as the store would.
func (h *harness) sync(maxChunks int) runResult {
	h.t.Helper()
	res, err := h.trySync(maxChunks)
	require.NoError(h.t, err)
	return res
}

// trySync is sync returning the error of Open or Next (the position stays
// at the last chunk that arrived).
func (h *harness) trySync(maxChunks int) (runResult, error) {
	t := h.t
	t.Helper()
	ext, err := h.src.extractor(h.table, Config{
		Practices: []string{Practice}, ChunkRows: h.rows, Allocator: h.mem,
	})
	require.NoError(t, err)
	ctx := context.Background()
	run, err := ext.Open(ctx, h.pos)
	if err != nil {
		return runResult{}, err
	}
	defer func() { require.NoError(t, run.Close()) }()
	var (
		res     runResult
		lastSeq int64
	)
	for maxChunks == 0 || res.chunks < maxChunks {
		ch, err := run.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return res, err
		}
		require.NotNil(t, ch.To, "a chunk must say where it leaves the position")
		wantReason := watermarks.ReasonSync
		if _, ok := h.pos.(watermarks.Snapshot); ok || h.pos == nil {
			wantReason = watermarks.ReasonSnapshot
		}
		require.Equal(t, wantReason, ch.Reason)
		if ch.Batch == nil {
			res.heartbeats++
		} else {
			err := schemas.ValidateChangeBatch(h.table, ch.Batch)
			if err == nil && ch.Batch.NumRows() == 0 {
				err = errors.New("empty batch: send a nil Batch instead")
			}
			if err == nil {
				seqs := ch.Batch.Column(ch.Batch.Schema().FieldIndices(schemas.SeqColumn)[0])
				if first := seqValue(seqs, 0); first <= lastSeq {
					err = fmt.Errorf("seq %d does not follow the previous batch's %d", first, lastSeq)
				}
				lastSeq = seqValue(seqs, int(ch.Batch.NumRows())-1)
			}
			if err == nil {
				h.store.apply(t, ch.Batch)
				res.rows += int(ch.Batch.NumRows())
			}
			ch.Batch.Release()
			require.NoError(t, err)
		}
		res.chunks++
		h.pos = roundTrip(t, ch.To)
	}
	return res, nil
}

// chunkByChunk runs one chunk per run (a crash after every chunk's
// commit) until a run has no chunk left, or a bound.
func (h *harness) chunkByChunk() {
	h.t.Helper()
	for range 100 {
		if h.sync(1).chunks == 0 {
			return
		}
	}
}

// incremental: p is an extractor's incremental position (not a snapshot's,
// not none).
func incremental(p watermarks.Position) bool {
	switch p.(type) {
	case watermarks.Cursor, watermarks.CDC, watermarks.CT:
		return true
	}
	return false
}

// requireAdvanced: after is a position at a window's bound (not inside a
// window) past before, of the same kind.
func requireAdvanced(t *testing.T, before, after watermarks.Position) {
	t.Helper()
	require.IsType(t, before, after, "the heartbeat changed the position's kind")
	switch a := after.(type) {
	case watermarks.Cursor:
		c, err := watermarks.Compare(a.Value, before.(watermarks.Cursor).Value)
		require.NoError(t, err)
		require.Positive(t, c, "the heartbeat should advance the position")
		require.Empty(t, a.Key)
	case watermarks.CDC:
		require.Positive(t, a.LSN.Compare(before.(watermarks.CDC).LSN), "the heartbeat should advance the position")
		require.False(t, a.InTransaction(), "a heartbeat ends at a transaction boundary")
	case watermarks.CT:
		require.Greater(t, a.Version, before.(watermarks.CT).Version, "the heartbeat should advance the position")
		require.False(t, a.InWindow(), "a heartbeat ends at a window's bound")
	default:
		t.Fatalf("no heartbeat check for position %T", after)
	}
}

// roundTrip saves and loads p as the position store does.
func roundTrip(t *testing.T, p watermarks.Position) watermarks.Position {
	t.Helper()
	b, err := watermarks.Encode(p)
	require.NoError(t, err)
	q, err := watermarks.Decode(b)
	require.NoError(t, err)
	return q
}

// syncAll runs until a run ends by itself: the first run of an incremental
// extractor only snapshots, so it takes up to two.
func (h *harness) syncAll() {
	h.t.Helper()
	h.sync(0)
	if _, ok := h.pos.(watermarks.Snapshot); ok && !h.sub.Snapshot {
		h.sync(0)
	}
}

// requireConverged syncs until the store holds exactly the source's rows of
// the organization's practice, and fails if it does not within a bound.
// Rows may wait: a PostgreSQL row-version window stops below any
// transaction open anywhere in the cluster (autovacuum's included), and
// the rows behind it arrive in a later run. Rows lost for good never
// converge.
func (h *harness) requireConverged() {
	h.t.Helper()
	h.requireConvergedTo(func() map[string]row { return h.src.rows(h.table) })
}

// requireConvergedTo is requireConverged with the expected rows computed by
// want.
func (h *harness) requireConvergedTo(want func() map[string]row) {
	h.t.Helper()
	deadline := time.Now().Add(convergeWithin)
	for !reflect.DeepEqual(want(), h.store.rows) && time.Now().Before(deadline) {
		h.syncAll()
	}
	require.Equal(h.t, want(), h.store.rows, "store and source differ")
}

// convergeWithin bounds requireConverged.
const convergeWithin = 30 * time.Second

func (h *harness) newLines(n int, practice string) []line {
	rows := make([]line, n)
	for i := range rows {
		rows[i] = line{
			ID: uuid.New(), Line: i % 3, Practice: practice,
			Amount: num(fmt.Sprintf("%d.%02d", 100+i, i%100)), Note: fmt.Sprintf("note %d", i),
			Stamp: h.clock.tick(),
		}
	}
	return rows
}

// seeded creates the lines table with 25 rows of the organization's practice
// and 5 of another, and syncs them.
func (h *harness) seeded() []line {
	h.t.Helper()
	h.use(linesTable(uniqueName("lines")))
	rows := h.newLines(25, Practice)
	h.src.insertLines(h.table, rows...)
	h.src.insertLines(h.table, h.newLines(5, OtherPractice)...)
	h.syncAll()
	h.requireConverged()
	return rows
}
