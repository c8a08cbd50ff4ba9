// Package extractortest is the conformance suite every extractor runs
// (STYLE.md 17) against a real source database: PostgreSQL always (package
// pgtest), SQL Server when EHRSYNC_TEST_MSSQL_DSN is set.
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

	"github.com/ehrsync/ehrsync/pkg/engine"
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

// Config is what the suite varies per extractor it builds.
type Config struct {
	Practices []string
	ChunkRows int
	Allocator memory.Allocator
}

// Subject is the extractor under test.
type Subject struct {
	// New builds the extractor for table t on db. The suite calls it for
	// every run, so that each run starts from the saved position alone.
	New func(db *sql.DB, d schemas.Dialect, t *schemas.Table, cfg Config) (engine.Extractor, error)
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
}

// Run runs the conformance suite for sub against src.
func Run(t *testing.T, src Source, sub Subject) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"insert", testInsert},
		{"update", testUpdate},
		{"delete", testDelete},
		{"empty table", testEmpty},
		{"resume after a chunk", testResume},
		{"idle heartbeat", testIdle},
		{"every supported type", testTypes},
		{"ties at a chunk boundary", testTies},
		{"open transaction during a run", testOpenTransaction},
		{"changes during the first snapshot", testHandoff},
		{"column allow-list", testAllowList},
		{"foreign position", testForeignPosition},
	}
	for _, tc := range tests {
		// Sequential: PostgreSQL's xid bound is cluster-wide, so another
		// test's open transaction would hold this test's window back.
		t.Run(tc.name, func(t *testing.T) {
			conn := src.Open(t)
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			t.Cleanup(func() { mem.AssertSize(t, 0) })
			h := &harness{
				t:     t,
				src:   src,
				sub:   sub,
				db:    &db{t: t, dialect: src.Dialect, conn: conn},
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
	src   Source
	sub   Subject
	db    *db
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
	h.db.create(table)
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
	t := h.t
	t.Helper()
	ext, err := h.sub.New(h.db.conn, h.src.Dialect, h.table, Config{
		Practices: []string{Practice}, ChunkRows: h.rows, Allocator: h.mem,
	})
	require.NoError(t, err)
	ctx := context.Background()
	run, err := ext.Open(ctx, h.pos)
	require.NoError(t, err)
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
		require.NoError(t, err)
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
	return res
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
	h.requireConvergedTo(func() map[string]row { return sourceRows(h.t, h.db, h.table) })
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
	h.db.insertLines(h.db.conn, h.table, rows...)
	h.db.insertLines(h.db.conn, h.table, h.newLines(5, OtherPractice)...)
	h.syncAll()
	h.requireConverged()
	return rows
}
