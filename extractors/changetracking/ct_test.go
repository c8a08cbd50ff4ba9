package changetracking_test

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestP2ExpiredAfterCleanup: cleanup raised the table's minimum valid
// version past the saved version: Open fails with an *extractors.ExpiredError,
// never reads from a raised version silently.
func TestP2ExpiredAfterCleanup(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	saved := h.pos.(watermarks.CT)
	rows[0].note = "lost to cleanup"
	require.NoError(t, h.db.Update(h.full, rows[0].raw()))
	h.db.Cleanup(h.full, h.db.Version())
	_, err := h.try(0)
	requireExpired(t, err)
	require.Equal(t, saved, h.pos, "an expired run must not move the position")

	// At the minimum valid version itself the position is still valid.
	h2 := newHarness(t, linesTable(t))
	h2.seeded()
	h2.db.Cleanup(h2.full, h2.pos.(watermarks.CT).Version)
	_, err = h2.try(0)
	require.NoError(t, err)
}

// TestP2ExpiredAfterTruncate: TRUNCATE TABLE logs no per-row deletes and
// raises the minimum valid version to the current version; a version
// saved before later activity is expired.
func TestP2ExpiredAfterTruncate(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	h.db.m.Touch() // activity elsewhere since the last sync
	require.NoError(t, h.db.m.Truncate(h.full.QualifiedName()))
	_, err := h.try(0)
	requireExpired(t, err)
	// Re-snapshotting (the engine's answer to ErrExpired) converges.
	h.pos = nil
	h.store = map[string]map[string]string{}
	h.syncAll()
	h.requireConverged()
}

// TestP2CheckedBeforeEveryRead: cleanup that passes the window's start
// between two chunks of one run fails the next chunk.
func TestP2CheckedBeforeEveryRead(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	for i := range rows {
		rows[i].note = "changed"
	}
	require.NoError(t, h.db.Update(h.full, raws(rows)...))
	run, err := h.extractor().Open(context.Background(), h.pos)
	require.NoError(t, err)
	defer run.Close()
	ch, err := run.Next(context.Background())
	require.NoError(t, err)
	ch.Batch.Release()
	h.db.Cleanup(h.full, h.db.Version())
	_, err = run.Next(context.Background())
	requireExpired(t, err)
	calls := slices.DeleteFunc(h.db.Calls(), func(c string) bool { return c == "SnapshotIsolation" })
	for i, c := range calls {
		if c == "Changes" {
			require.Equal(t, "MinValidVersion", calls[i-1], "call %d: CHANGETABLE without a validity check just before it", i)
		}
	}
}

// TestP2CleanupDuringReadIsCaught: cleanup that runs while a chunk is read
// (after the check before it) shows in the check after the read.
func TestP2CleanupDuringReadIsCaught(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	rows[0].note = "changed"
	require.NoError(t, h.db.Update(h.full, rows[0].raw()))
	run, err := h.extractor().Open(context.Background(), h.pos)
	require.NoError(t, err)
	defer run.Close()
	h.db.BeforeChanges(func() { h.db.Cleanup(h.full, h.db.Version()) })
	_, err = run.Next(context.Background())
	requireExpired(t, err)
}

// TestWindowResumesMidWindowByKey: a run stopped inside a window saves
// (Version, To, LastKey); the next run continues that window after the
// key with the same To, even though newer changes have committed since,
// and a later window brings those.
func TestWindowResumesMidWindowByKey(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	start := h.pos.(watermarks.CT)
	for i := range rows {
		rows[i].note = "window one"
	}
	require.NoError(t, h.db.Update(h.full, raws(rows)...))
	windowTo := h.db.Version()
	h.sync(1)
	mid := h.pos.(watermarks.CT)
	require.Equal(t, start.Version, mid.Version)
	require.Equal(t, windowTo, mid.To)
	require.Len(t, mid.LastKey, 2)
	require.Len(t, h.store, 25)

	late := h.newLines(3, practice)
	require.NoError(t, h.db.Insert(h.full, raws(late)...))
	res := h.sync(0) // the rest of window one only
	require.Equal(t, watermarks.CT{Version: windowTo}, h.pos)
	require.Equal(t, 15, res.rows, "the resumed window re-reads nothing before its last key")
	require.NotContains(t, h.store, late[0].key())
	h.sync(0)
	h.requireConverged()
	for _, r := range rows {
		require.Equal(t, "window one", h.store[r.key()]["note"])
	}
}

// TestWindowRowChangedDuringReadConverges: a row changed while a window
// is read (between its chunks, and during a chunk query) is either read
// with its newest image or carries a version above the window and is read
// by the next window: the store converges.
func TestWindowRowChangedDuringReadConverges(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	for i := range rows {
		rows[i].note = "v1"
	}
	require.NoError(t, h.db.Update(h.full, raws(rows)...))
	calls := 0
	h.db.BeforeChanges(func() {
		calls++
		if calls == 2 { // during the second chunk's read
			rows[0].note, rows[24].note = "v2 early key", "v2 late key"
			_ = h.db.Update(h.full, rows[0].raw(), rows[24].raw())
		}
	})
	h.sync(0)
	h.db.BeforeChanges(nil)
	h.sync(0)
	h.requireConverged()
	require.Equal(t, "v2 early key", h.store[rows[0].key()]["note"])
	require.Equal(t, "v2 late key", h.store[rows[24].key()]["note"])
}

// TestP8FirstRunRecordsVersionBeforeSnapshot: the first run reads
// CHANGE_TRACKING_CURRENT_VERSION() before the snapshot's first read,
// hands off to exactly that version, and the replay from it brings the
// changes made while the snapshot ran.
func TestP8FirstRunRecordsVersionBeforeSnapshot(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.newLines(25, practice)
	require.NoError(t, h.db.Insert(h.full, raws(rows)...))
	recorded := h.db.Version()
	h.sync(1)
	calls := h.db.Calls()
	cur, snap := slices.Index(calls, "CurrentVersion"), slices.Index(calls, "Snapshot")
	require.GreaterOrEqual(t, cur, 0)
	require.Less(t, cur, snap, "the version must be recorded before the snapshot reads")
	sp := h.pos.(watermarks.Snapshot)
	require.Equal(t, watermarks.CT{Version: recorded}, sp.Resume)

	// Changes between the snapshot's chunks: a copied row, a pending row,
	// a deleted copied row and new rows.
	var copied, pending []line
	for _, r := range rows {
		if _, ok := h.store[r.key()]; ok {
			copied = append(copied, r)
		} else {
			pending = append(pending, r)
		}
	}
	copied[0].note, pending[0].note = "changed during the snapshot", "changed during the snapshot"
	require.NoError(t, h.db.Update(h.full, copied[0].raw(), pending[0].raw()))
	require.NoError(t, h.db.Delete(h.full, copied[1].raw()))
	require.NoError(t, h.db.Insert(h.full, raws(h.newLines(4, practice))...))
	h.sync(0) // finish the snapshot
	require.Equal(t, watermarks.CT{Version: recorded}, h.pos)
	h.sync(0) // replay
	h.requireConverged()
	require.Equal(t, "changed during the snapshot", h.store[copied[0].key()]["note"])
	require.NotContains(t, h.store, copied[1].key())
}

// TestP16DeleteImagesAreKeyOnly: a delete carries the key alone, its other
// columns NULL, NOT NULL source columns included; the batch passes the
// change-batch contract.
func TestP16DeleteImagesAreKeyOnly(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	require.NoError(t, h.db.Delete(h.full, rows[2].raw(), rows[7].raw()))
	run, err := h.extractor().Open(context.Background(), h.pos)
	require.NoError(t, err)
	defer run.Close()
	ch, err := run.Next(context.Background())
	require.NoError(t, err)
	defer ch.Batch.Release()
	require.NoError(t, schemas.ValidateChangeBatch(h.table, ch.Batch))
	require.EqualValues(t, 2, ch.Batch.NumRows())
	ops := ch.Batch.Column(ch.Batch.Schema().FieldIndices(schemas.OpColumn)[0]).(*array.Int8)
	for i := range 2 {
		require.Equal(t, schemas.OpDelete, schemas.Op(ops.Value(i)))
		for j, c := range h.table.Columns {
			if h.table.IsKey(c.Name) {
				require.False(t, ch.Batch.Column(j).IsNull(i), "key column %s", c.Name)
			} else {
				require.True(t, ch.Batch.Column(j).IsNull(i), "column %s of a delete image", c.Name)
			}
		}
	}
}

// TestP16DeleteOfOtherPracticeIsHarmless: deletes pass the practice filter
// (the deleted row's practice is unknown); the store's delete of a key it
// never held is a no-op.
func TestP16DeleteOfOtherPracticeIsHarmless(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	other := h.newLines(1, otherPractice)
	require.NoError(t, h.db.Insert(h.full, raws(other)...))
	require.NoError(t, h.db.Delete(h.full, raws(other)...))
	res := h.sync(0)
	require.Equal(t, 1, res.rows)
	require.Equal(t, []string{other[0].key()}, res.batches[0]["delete"])
	h.requireConverged()
}

// TestP17MissingGrantIsNamed: without VIEW CHANGE TRACKING the server's
// minimum valid version reads NULL, which looks like "not tracked"; the
// extractor probes and names the missing grant and the GRANT that fixes
// it, on the first run and on an incremental one.
func TestP17MissingGrantIsNamed(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	h.db.m.AddLogin(mssqltest.User, "db_datareader") // SELECT, not VIEW CHANGE TRACKING
	grant := "GRANT VIEW CHANGE TRACKING ON [dbo].[" + h.full.Name + "] TO [" + mssqltest.User + "];"
	for _, pos := range []watermarks.Position{h.pos, nil} {
		h.pos = pos
		_, err := h.try(0)
		require.ErrorIs(t, err, changetracking.ErrNotReadable)
		var se *changetracking.SetupError
		require.True(t, errors.As(err, &se))
		require.False(t, se.Status.ViewChangeTracking)
		require.Contains(t, err.Error(), grant)
		require.Len(t, se.Status.Fixes(), 1)
	}
}

// TestP17TrackingOffIsNamed: tracking off for the table or the database
// is a set-up error with the ALTER statement, not "no changes".
func TestP17TrackingOffIsNamed(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	require.NoError(t, h.db.m.DisableCT(h.full.QualifiedName()))
	_, err := h.try(0)
	require.ErrorIs(t, err, changetracking.ErrNotReadable)
	require.Contains(t, err.Error(), "ALTER TABLE [dbo].["+h.full.Name+"] ENABLE CHANGE_TRACKING;")

	require.NoError(t, h.db.m.EnableCT(h.full.QualifiedName()))
	require.NoError(t, h.db.m.DisableCT(h.full.QualifiedName()))
	require.NoError(t, h.db.m.DisableCTDatabase())
	h.pos = nil
	_, err = h.try(0)
	require.ErrorIs(t, err, changetracking.ErrNotReadable)
	require.Contains(t, err.Error(), "ALTER DATABASE [NGProd] SET CHANGE_TRACKING = ON")
}

// TestOpenTransactionIsReadAfterCommit: writes of a transaction open
// during a run are invisible and unversioned; they arrive after commit.
func TestOpenTransactionIsReadAfterCommit(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	tx := h.db.m.Begin()
	early := h.newLines(1, practice)
	require.NoError(t, tx.Insert(h.full.QualifiedName(), values(h.full, early[0].raw())))
	require.NoError(t, h.db.Insert(h.full, raws(h.newLines(3, practice))...))
	h.sync(0)
	require.NotContains(t, h.store, early[0].key())
	require.NoError(t, tx.Commit())
	h.sync(0)
	h.requireConverged()
	require.Contains(t, h.store, early[0].key())
}

// TestRowMovedToOtherPracticeLeavesTheStore: the practice filter sits in
// the join, so a row moved out of the organization's practice reads as a
// key-only delete and leaves the store.
func TestRowMovedToOtherPracticeLeavesTheStore(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	rows[4].practice = otherPractice
	require.NoError(t, h.db.Update(h.full, rows[4].raw()))
	res := h.sync(0)
	require.Equal(t, []string{rows[4].key()}, res.batches[0]["delete"])
	require.NotContains(t, h.store, rows[4].key())
	h.requireConverged()
}

// TestByteBoundEndsAChunkEarly: a chunk stops at ChunkBytes (at least one
// row) inside the window, and the next chunk continues after its last key.
func TestByteBoundEndsAChunkEarly(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	for i := range rows {
		rows[i].note = "changed"
	}
	require.NoError(t, h.db.Update(h.full, raws(rows)...))
	ext := h.extractorWith(extractors.Bounds{Practices: []string{practice}, ChunkRows: 100, ChunkBytes: 1, Allocator: h.mem})
	run, err := ext.Open(context.Background(), h.pos)
	require.NoError(t, err)
	defer run.Close()
	n := 0
	for {
		ch, err := run.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		if ch.Batch != nil {
			require.EqualValues(t, 1, ch.Batch.NumRows())
			h.apply(ch.Batch)
			ch.Batch.Release()
			n++
		}
		h.pos = ch.To
	}
	require.Equal(t, 25, n)
	require.Equal(t, watermarks.CT{Version: h.db.Version()}, h.pos)
	h.requireConverged()
}
