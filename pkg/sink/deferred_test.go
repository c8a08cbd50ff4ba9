package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// indexDefs lists the definitions of tg's table's indexes, sorted.
func (f *fixture) indexDefs(t *testing.T, tg *Target) []string {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), "SELECT pg_get_indexdef(indexrelid) FROM pg_index WHERE indrelid = $1::regclass ORDER BY 1",
		tg.Ident().Sanitize())
	require.NoError(t, err)
	defs, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return defs
}

// deferredRow reports whether ehrsync.deferred_indexes holds tg's table.
func (f *fixture) deferredRow(t *testing.T, tg *Target) bool {
	t.Helper()
	var ok bool
	require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT EXISTS (SELECT FROM ehrsync.deferred_indexes WHERE schema_name = $1 AND table_name = $2)",
		tg.Ident()[0], tg.Ident()[1]).Scan(&ok))
	return ok
}

// firstChunkLoaded prepares st-mary's claim lines and loads the first
// chunk of its first snapshot (key1, key2) into the bare table; want is the
// table's index definitions before.
func firstChunkLoaded(t *testing.T) (*fixture, *Target, []string) {
	t.Helper()
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	want := f.indexDefs(t, tg)
	_, err = f.applyAs(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key2), ins(key1, "S", "1.00"), ins(key2, "S", "2.00"))
	require.NoError(t, err)
	return f, tg, want
}

// TestFirstSnapshotLoadsThenIndexes: a first snapshot into an empty table
// loads its chunks into the table without its indexes (the primary key and
// an index an analyst added), resumes straight into it in another process,
// and builds the same indexes in the transaction of the chunk that ends
// the pass; the rows, counts and metadata are those of the same chunks
// upserted, and the table then takes upserts.
func TestFirstSnapshotLoadsThenIndexes(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, "CREATE INDEX claim_lines_status ON st_mary.claim_lines (status) WHERE status <> 'P'")
	require.NoError(t, err)
	want := f.indexDefs(t, tg)
	require.Len(t, want, 2)
	staged, err := f.sink.Prepare(ctx, "st-joseph", claimLines(t), TableOptions{})
	require.NoError(t, err)

	chunks := []struct {
		from, to watermarks.Position
		rows     []change
	}{
		{nil, snapAt(key2), []change{ins(key1, "S", "1.00"), ins(key2, "D", "-125.40")}},
		{snapAt(key2), snapAt(key3), []change{ins(key3, "P", "0.00")}},
		{snapAt(key3), snapAt(key4), []change{ins(key4, "P", "4.00")}},
		{snapAt(key4), cursorAt(100), nil}, // the pass ends: nothing after key4
	}
	for i, c := range chunks {
		if i == 2 {
			// Another process resumes the pass where the last chunk
			// committed.
			tg, err = f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
			require.NoError(t, err)
		}
		got, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, c.from, c.to, c.rows...)
		require.NoError(t, err, "chunk %d", i+1)
		ref, err := f.applyAs(t, staged, watermarks.ReasonSync, c.from, c.to, c.rows...)
		require.NoError(t, err)
		require.Equal(t, len(c.rows) > 0, got.Direct, "chunk %d", i+1)
		got.Direct = false
		require.Equal(t, ref, got, "chunk %d", i+1)
		if i < len(chunks)-1 {
			require.Empty(t, f.indexDefs(t, tg), "chunk %d: loaded into the bare table", i+1)
			require.True(t, f.deferredRow(t, tg))
		}
	}
	require.Equal(t, want, f.indexDefs(t, tg), "the pass's end built the same indexes")
	require.False(t, f.deferredRow(t, tg))
	require.Equal(t, f.dump(t, staged.Ident(), everyColumn...), f.dump(t, tg.Ident(), everyColumn...))

	res, err := f.applyAs(t, tg, watermarks.ReasonSync, cursorAt(100), cursorAt(101), upd(key1, "D", "9.00"), ins(key4, "P", "4.00"))
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 2, Updated: 1, Unchanged: 1}, res)
}

// TestFirstSnapshotOfDuplicateKeysStopsAtItsEnd: a source that sends one
// key twice (here in two chunks) loads both rows into the bare table; the
// (idle) chunk ending the pass cannot build the primary key, and fails with
// KeyBuildError, which names the table and the fix and no key value. The
// position stays before it and the table stays without its key, which no
// upsert writes into.
func TestFirstSnapshotOfDuplicateKeysStopsAtItsEnd(t *testing.T) {
	ctx := context.Background()
	f, tg, _ := firstChunkLoaded(t)
	_, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, snapAt(key2), snapAt(key3), ins(key2, "P", "2.00"), ins(key3, "P", "3.00"))
	require.NoError(t, err, "loaded: the key is not checked until the pass ends")
	_, err = f.applyAs(t, tg, watermarks.ReasonSnapshot, snapAt(key3), cursorAt(100))
	var kerr *KeyBuildError
	require.ErrorAs(t, err, &kerr)
	require.Contains(t, err.Error(), `"st_mary"."claim_lines"`)
	require.Contains(t, err.Error(), "TRUNCATE")
	require.Contains(t, err.Error(), "positions reset")
	require.NotContains(t, err.Error(), key2)
	got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, snapAt(key3), got)
	require.Equal(t, []string{key1, key2, key2, key3}, f.dump(t, tg.Ident(), "line_id"))
	require.Empty(t, f.indexDefs(t, tg))
	require.True(t, f.deferredRow(t, tg))

	// A position reset without emptying the table: the next chunk builds
	// the key before it upserts, and fails the same way, writing nothing.
	require.NoError(t, f.positions.Reset(ctx, "st-mary", "dbo.claim_lines", nil, "test", "test"))
	tg, err = f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.applyAs(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key3), ins(key3, "P", "3.00"))
	require.ErrorAs(t, err, &kerr)
	require.Equal(t, []string{key1, key2, key2, key3}, f.dump(t, tg.Ident(), "line_id"))
	require.True(t, f.deferredRow(t, tg))
}

// TestFirstSnapshotDuplicatesAfterTheFix: the fix KeyBuildError names —
// empty the table, reset the position — loads the table again into the
// bare table, and the pass's end builds its key.
func TestFirstSnapshotDuplicatesAfterTheFix(t *testing.T) {
	ctx := context.Background()
	f, tg, want := firstChunkLoaded(t)
	_, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, snapAt(key2), cursorAt(100), ins(key2, "P", "2.00"))
	require.True(t, errors.As(err, new(*KeyBuildError)), "%v", err)

	_, err = f.pool.Exec(ctx, "TRUNCATE "+tg.Ident().Sanitize())
	require.NoError(t, err)
	require.NoError(t, f.positions.Reset(ctx, "st-mary", "dbo.claim_lines", nil, "test", "test"))
	tg, err = f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	res, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key2), ins(key1, "S", "1.00"), ins(key2, "S", "2.00"))
	require.NoError(t, err)
	require.True(t, res.Direct)
	res, err = f.applyAs(t, tg, watermarks.ReasonSnapshot, snapAt(key2), cursorAt(100), ins(key3, "P", "3.00"))
	require.NoError(t, err)
	require.True(t, res.Direct)
	require.Equal(t, want, f.indexDefs(t, tg))
	require.False(t, f.deferredRow(t, tg))
	require.Equal(t, []string{key1, key2, key3}, f.dump(t, tg.Ident(), "line_id"))
}

// TestKilledPassEndLeavesTheLoadResumable kills the store backend after the
// chunk ending the pass built the indexes, before COMMIT: nothing of it
// commits (the indexes neither), and another process resumes the load
// straight into the bare table and ends the pass.
func TestKilledPassEndLeavesTheLoadResumable(t *testing.T) {
	ctx := context.Background()
	f, tg, want := firstChunkLoaded(t)
	tg.testHookBeforeCommit = func(ctx context.Context, conn *pgx.Conn) error {
		var pid, n int
		require.NoError(t, conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
		require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass", tg.Ident().Sanitize()).Scan(&n))
		require.Equal(t, 1, n, "the hook must run after the primary key was built")
		_, err := f.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
		require.NoError(t, err)
		return nil
	}
	_, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, snapAt(key2), cursorAt(100), ins(key3, "S", "3.00"))
	require.Error(t, err)
	require.Empty(t, f.indexDefs(t, tg))
	require.True(t, f.deferredRow(t, tg))

	resumed, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	res, err := f.applyAs(t, resumed, watermarks.ReasonSnapshot, snapAt(key2), cursorAt(100), ins(key3, "S", "3.00"))
	require.NoError(t, err)
	require.True(t, res.Direct)
	require.Equal(t, want, f.indexDefs(t, resumed))
	require.Equal(t, []string{key1, key2, key3}, f.dump(t, tg.Ident(), "line_id"))
}

// TestARecreatedTableForgetsItsDeferredIndexes: a table dropped while its
// first snapshot loads it bare is created again with its primary key by
// Prepare; the load's record is stale and is removed, and the next first
// snapshot defers and builds the indexes of the new table.
func TestARecreatedTableForgetsItsDeferredIndexes(t *testing.T) {
	ctx := context.Background()
	f, tg, want := firstChunkLoaded(t)
	_, err := f.pool.Exec(ctx, "DROP TABLE "+tg.Ident().Sanitize())
	require.NoError(t, err)
	require.NoError(t, f.positions.Reset(ctx, "st-mary", "dbo.claim_lines", nil, "test", "test"))

	tg, err = f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	require.False(t, f.deferredRow(t, tg), "the stale record was kept")
	_, err = f.applyAs(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key2), ins(key1, "S", "1.00"), ins(key2, "S", "2.00"))
	require.NoError(t, err)
	_, err = f.applyAs(t, tg, watermarks.ReasonSnapshot, snapAt(key2), cursorAt(100), ins(key3, "S", "3.00"))
	require.NoError(t, err)
	require.Equal(t, want, f.indexDefs(t, tg))
	require.Equal(t, []string{key1, key2, key3}, f.dump(t, tg.Ident(), "line_id"))
}

// TestAChunkAfterOneBuildingTheIndexesIsNotUpsertedEarly: after a reset
// during a first snapshot, the chunk that builds the indexes first is
// followed by one with other keys; that one's upsert waits for its commit
// (upserted early, it could run before the primary key exists). Its Write
// runs first here, the worst order.
func TestAChunkAfterOneBuildingTheIndexesIsNotUpsertedEarly(t *testing.T) {
	ctx := context.Background()
	f, _, _ := firstChunkLoaded(t)
	require.NoError(t, f.positions.Reset(ctx, "st-mary", "dbo.claim_lines", nil, "test", "test"))
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)

	one := f.begin(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key3), ins(key3, "S", "3.00"))
	require.True(t, one.buildFirst)
	two := f.begin(t, tg, watermarks.ReasonSnapshot, snapAt(key3), cursorAt(100), ins(key4, "S", "4.00"))
	require.False(t, two.early)
	require.NoError(t, two.Write(ctx))
	require.NoError(t, one.Write(ctx))
	_, err = one.Commit(ctx)
	require.NoError(t, err)
	_, err = two.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, []string{key1, key2, key3, key4}, f.dump(t, tg.Ident(), "line_id"))
	require.Equal(t, 1, f.indexes(t, tg))
}

// TestThePassEndWaitsForReaders: a reader holds the table when the chunk
// ending the pass builds the indexes; the build waits for it, past the
// lock timeout of chunks loading straight in, and the pass ends.
func TestThePassEndWaitsForReaders(t *testing.T) {
	defer func(d string) { directLockTimeout = d }(directLockTimeout)
	directLockTimeout = "200ms"
	ctx := context.Background()
	f, tg, _ := firstChunkLoaded(t)

	reader, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	var n int
	require.NoError(t, reader.QueryRow(ctx, "SELECT count(*) FROM "+tg.Ident().Sanitize()).Scan(&n))
	rec := batch(t, f.mem, tg.table, ins(key3, "S", "3.00"))
	defer rec.Release()
	done := make(chan error, 1)
	go func() {
		_, err := tg.Apply(ctx, rec, watermarks.Move{From: snapAt(key2), To: cursorAt(100), Reason: watermarks.ReasonSnapshot, Actor: "test"})
		done <- err
	}()
	// The build waits for the reader's lock, then the reader ends.
	var waiting bool
	for !waiting {
		time.Sleep(10 * time.Millisecond)
		require.NoError(t, f.pool.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_locks WHERE relation = $1::regclass AND mode = 'AccessExclusiveLock' AND NOT granted)`,
			tg.Ident().Sanitize()).Scan(&waiting))
	}
	time.Sleep(500 * time.Millisecond) // past the chunks' lock timeout
	require.NoError(t, reader.Rollback(ctx))
	require.NoError(t, <-done)
	require.Equal(t, 1, f.indexes(t, tg))
}
