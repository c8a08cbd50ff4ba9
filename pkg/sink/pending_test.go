package sink

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// begin begins changes as one chunk moving the position from→to; the batch
// is released when the test ends (after Write, as the engine does sooner).
func (f *fixture) begin(t *testing.T, tg *Target, reason watermarks.Reason, from, to watermarks.Position, changes ...change) *Pending {
	t.Helper()
	rec := batch(t, f.mem, tg.table, changes...)
	t.Cleanup(rec.Release)
	p, err := tg.Begin(context.Background(), rec, watermarks.Move{From: from, To: to, Reason: reason, Actor: "test"})
	require.NoError(t, err)
	t.Cleanup(p.Abort) // a failed test leaves no connection acquired
	return p
}

// eachReason runs test on a new fixture's claim-lines target, once for a
// snapshot's chunks and once for sync chunks.
func eachReason(t *testing.T, test func(t *testing.T, f *fixture, tg *Target, reason watermarks.Reason)) {
	for _, reason := range []watermarks.Reason{watermarks.ReasonSnapshot, watermarks.ReasonSync} {
		t.Run(string(reason), func(t *testing.T) {
			f := newFixture(t)
			tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{})
			require.NoError(t, err)
			test(t, f, tg, reason)
		})
	}
}

// chunkPositions are the positions three chunks of a run move to: a
// snapshot's keys and its handoff, or cursor values.
func chunkPositions(reason watermarks.Reason) [3]watermarks.Position {
	if reason == watermarks.ReasonSnapshot {
		return [3]watermarks.Position{snapAt(key2), snapAt(key3), cursorAt(100)}
	}
	return [3]watermarks.Position{cursorAt(2), cursorAt(3), cursorAt(4)}
}

// TestChunksWrittenTogetherCommitInReadOrder: a chunk's rows are written
// while the chunks before it are still open, each on a connection of its
// own, and the chunks then commit in read order, each with its position.
// A snapshot's chunks all go straight into the target, the ones begun while
// the first was open included; other chunks are staged and upserted.
func TestChunksWrittenTogetherCommitInReadOrder(t *testing.T) {
	eachReason(t, func(t *testing.T, f *fixture, tg *Target, reason watermarks.Reason) {
		ctx := context.Background()
		to := chunkPositions(reason)
		chunks := []*Pending{
			f.begin(t, tg, reason, nil, to[0], ins(key1, "S", "1.00"), ins(key2, "D", "2.00")),
			f.begin(t, tg, reason, to[0], to[1], ins(key3, "P", "3.00")),
			f.begin(t, tg, reason, to[1], to[2], ins(key4, "P", "4.00")),
		}
		// Written out of order, all open at once; an early chunk's Write
		// returns once the chunk before it has ended.
		var written [3]<-chan error
		for _, i := range []int{2, 0, 1} {
			written[i] = writeAsync(ctx, chunks[i])
		}
		require.Equal(t, 3, int(f.pool.Stat().AcquiredConns()), "the chunks do not have a connection each")
		for i, p := range chunks {
			require.NoError(t, <-written[i], "chunk %d", i+1)
			res, err := p.Commit(ctx)
			require.NoError(t, err, "chunk %d", i+1)
			require.Equal(t, reason == watermarks.ReasonSnapshot, res.Direct, "chunk %d", i+1)
			require.Equal(t, []int64{2, 1, 1}[i], res.Inserted, "chunk %d", i+1)
		}
		require.Equal(t, []string{key1 + "|S", key2 + "|D", key3 + "|P", key4 + "|P"}, f.dump(t, tg.Ident(), "line_id", "status"))
		got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
		require.NoError(t, err)
		require.Equal(t, to[2], got)
		// Each row names its own chunk's commit, and the commits'
		// ids follow the read order.
		ids := f.batchIDs(t, tg)
		require.Len(t, ids, 4)
		require.Equal(t, ids[0], ids[1])
		require.Less(t, ids[1], ids[2])
		require.Less(t, ids[2], ids[3])
		require.NotContains(t, f.batches(t, tg), key1+"|NULL")
	})
}

// TestAChunkCommittedBeforeTheOneBeforeItCommitsNothing: a chunk's claim
// finds the position where the chunk before it started, not where it
// starts itself, so committing out of order is refused and leaves nothing.
// (A chunk upserted early cannot be committed before the one before it:
// its Write waits for that one.)
func TestAChunkCommittedBeforeTheOneBeforeItCommitsNothing(t *testing.T) {
	eachReason(t, func(t *testing.T, f *fixture, tg *Target, reason watermarks.Reason) {
		ctx := context.Background()
		to := chunkPositions(reason)
		one := f.begin(t, tg, reason, nil, to[0], ins(key1, "S", "1.00"))
		// A snapshot's chunks go straight into the target, so their keys
		// are disjoint; a staged chunk that shares a key with the chunk
		// before is not upserted early.
		key := key1
		if reason == watermarks.ReasonSnapshot {
			key = key3
		}
		two := f.begin(t, tg, reason, to[0], to[1], ins(key, "P", "3.00"))
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a Write that waits fails the test
		defer cancel()
		require.NoError(t, one.Write(wctx))
		require.NoError(t, two.Write(wctx))
		_, err := two.Commit(ctx)
		require.ErrorIs(t, err, watermarks.ErrPositionMoved)
		require.Empty(t, f.dump(t, tg.Ident(), "line_id"))
		_, err = one.Commit(ctx)
		require.NoError(t, err)
		require.Equal(t, []string{key1}, f.dump(t, tg.Ident(), "line_id"), "the refused chunk's rows were committed")
		got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
		require.NoError(t, err)
		require.Equal(t, to[0], got)
	})
}

// batchIDs returns the _ehrsync_batch of tg's rows, by key.
func (f *fixture) batchIDs(t *testing.T, tg *Target) []int64 {
	t.Helper()
	var ids []int64
	require.NoError(t, pgxscan(f, &ids, "SELECT "+MetaBatch+" FROM "+tg.Ident().Sanitize()+" ORDER BY line_id"))
	return ids
}

// pgxscan collects the single column of sql's rows into out.
func pgxscan(f *fixture, out *[]int64, sql string) error {
	rows, err := f.pool.Query(context.Background(), sql)
	if err != nil {
		return err
	}
	*out, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	return err
}

// TestAChunkAfterOneAbortedCommitsNothing: the engine aborts the chunk
// before; the next one, written already, is refused by its claim and leaves
// no row, position or history.
func TestAChunkAfterOneAbortedCommitsNothing(t *testing.T) {
	eachReason(t, func(t *testing.T, f *fixture, tg *Target, reason watermarks.Reason) {
		ctx := context.Background()
		_, err := f.applyAs(t, tg, watermarks.ReasonSync, nil, cursorAt(1))
		require.NoError(t, err)
		hist, err := f.positions.History(ctx, "st-mary", "dbo.claim_lines", 100)
		require.NoError(t, err)

		one := f.begin(t, tg, reason, cursorAt(1), snapAt(key1), ins(key1, "S", "1.00"))
		two := f.begin(t, tg, reason, snapAt(key1), snapAt(key2), ins(key2, "S", "2.00"))
		require.True(t, two.early)
		require.NoError(t, one.Write(ctx))
		written := writeAsync(ctx, two) // upserted early, it waits for one to end
		one.Abort()
		require.NoError(t, <-written)
		_, err = two.Commit(ctx)
		require.ErrorIs(t, err, watermarks.ErrPositionMoved)
		require.Empty(t, f.dump(t, tg.Ident(), "line_id"))
		got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
		require.NoError(t, err)
		require.Equal(t, cursorAt(1), got)
		after, err := f.positions.History(ctx, "st-mary", "dbo.claim_lines", 100)
		require.NoError(t, err)
		require.Len(t, after, len(hist))
		// Steps of an ended chunk are refused; none is left holding
		// a connection.
		_, err = one.Commit(ctx)
		require.ErrorIs(t, err, errDone)
		_, err = two.Commit(ctx)
		require.ErrorIs(t, err, errDone)
		require.Zero(t, f.pool.Stat().AcquiredConns())
	})
}

// TestDirectChunksSharingAKeyFailInsteadOfWaiting: two snapshot chunks open
// at once that hold one store key (two source keys the store holds as one),
// into a table that keeps its primary key through its first snapshot (a
// foreign key refers to it).
// The later chunk copied it first, and waits in the engine for the earlier
// one to commit, which waits for the later one's row: PostgreSQL cannot see
// that cycle, so the earlier chunk's lock wait must end by itself, leaving
// nothing committed.
func TestDirectChunksSharingAKeyFailInsteadOfWaiting(t *testing.T) {
	defer func(d string) { directLockTimeout = d }(directLockTimeout)
	directLockTimeout = "300ms"
	ctx := context.Background()
	f := newFixture(t)
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.pool.Exec(ctx, "CREATE TABLE st_mary.refers (line_id uuid REFERENCES "+tg.Ident().Sanitize()+")")
	require.NoError(t, err)
	to := chunkPositions(watermarks.ReasonSnapshot)
	one := f.begin(t, tg, watermarks.ReasonSnapshot, nil, to[0], ins(key1, "S", "1.00"), ins(key2, "D", "2.00"))
	two := f.begin(t, tg, watermarks.ReasonSnapshot, to[0], to[1], ins(key2, "P", "3.00"), ins(key3, "P", "3.00"))
	require.NoError(t, two.Write(ctx))
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	err = one.Write(wctx)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "the chunk waited for the other's row until canceled: %v", err)
	require.Equal(t, "55P03", pgErr.Code) // lock_not_available
	two.Abort()
	require.Empty(t, f.dump(t, tg.Ident(), "line_id"))
	got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Nil(t, got)
}
