package sink

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
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
		var ids []int64
		require.NoError(t, pgxscan(f, &ids, "SELECT "+MetaBatch+" FROM "+tg.Ident().Sanitize()+" ORDER BY line_id"))
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
		require.NoError(t, one.Write(ctx))
		require.NoError(t, two.Write(ctx))
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
// at once that hold one store key (two source keys the store holds as one).
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

func upd(key, status, paid string) change {
	return change{op: schemas.OpUpdate, row: line(key, status, paid)}
}

// writeAsync writes p on a goroutine of its own, as the engine does: an
// early chunk's Write returns once the chunk before it has ended.
func writeAsync(ctx context.Context, p *Pending) <-chan error {
	done := make(chan error, 1)
	go func() { done <- p.Write(ctx) }()
	return done
}

// lockedElsewhere reports whether another transaction holds the row of
// key (it would have to wait for it).
func (f *fixture) lockedElsewhere(t *testing.T, tg *Target, key string) bool {
	t.Helper()
	var n int
	err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "SELECT count(*) FROM (SELECT FROM "+tg.Ident().Sanitize()+" WHERE line_id = $1 FOR UPDATE NOWAIT) s", key).Scan(&n)
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "55P03" { // lock_not_available
		return true
	}
	require.NoError(t, err)
	require.Equal(t, 1, n, "no row %s", key)
	return false
}

// TestADisjointChunkIsUpsertedWhileTheOneBeforeIsOpen: the chunk after one
// still open, sharing no key with it, upserts its rows in Write: they are
// locked by its transaction before the chunk before it commits, and its
// Write returns only once that one has. Both then commit in order.
func TestADisjointChunkIsUpsertedWhileTheOneBeforeIsOpen(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), ins(key1, "S", "1.00"), ins(key3, "S", "3.00"))
	require.NoError(t, err)

	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), upd(key1, "A", "1.10"), ins(key2, "N", "2.00"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key3, "B", "3.30"), ins(key4, "N", "4.00"))
	require.NoError(t, one.Write(ctx))
	written := writeAsync(ctx, two)
	require.Eventually(t, func() bool { return f.lockedElsewhere(t, tg, key3) }, 10*time.Second, 20*time.Millisecond,
		"the second chunk did not upsert its rows while the first was open")
	require.False(t, f.lockedElsewhere(t, tg, key1), "the first chunk applies its rows at commit")
	select {
	case err := <-written:
		t.Fatalf("the second chunk's Write returned before the first chunk ended: %v", err)
	default:
	}
	res, err := one.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 2, Inserted: 1, Updated: 1}, res)
	require.NoError(t, <-written)
	res, err = two.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 2, Inserted: 1, Updated: 1}, res)
	require.Equal(t, []string{key1 + "|A", key2 + "|N", key3 + "|B", key4 + "|N"}, f.dump(t, tg.Ident(), "line_id", "status"))
	var ids []int64 // each row names its own chunk's commit
	require.NoError(t, pgxscan(f, &ids, "SELECT "+MetaBatch+" FROM "+tg.Ident().Sanitize()+" ORDER BY line_id"))
	require.Len(t, ids, 4)
	require.Equal(t, ids[0], ids[1])
	require.Equal(t, ids[2], ids[3])
	require.Less(t, ids[1], ids[2])
	require.NotContains(t, f.batches(t, tg), key3+"|NULL")
	got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, cursorAt(3), got)
}

// TestChunksSharingAKeyAreUpsertedInCommitOrder: the chunk after one still
// open that changes one of its keys, or one begun while two are open, is
// upserted at its commit, after the ones before it: its Write neither
// waits nor locks a row.
func TestChunksSharingAKeyAreUpsertedInCommitOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), ins(key1, "S", "1.00"), ins(key3, "S", "3.00"))
	require.NoError(t, err)

	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), upd(key1, "A", "1.10"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key3, "B", "3.30"), upd(key1, "B", "1.20"))
	three := f.begin(t, tg, watermarks.ReasonSync, cursorAt(3), cursorAt(4), upd(key3, "C", "3.40"))
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a Write that waits fails the test
	defer cancel()
	for i, p := range []*Pending{one, two, three} {
		require.NoError(t, p.Write(wctx), "chunk %d", i+1)
	}
	require.False(t, f.lockedElsewhere(t, tg, key1))
	require.False(t, f.lockedElsewhere(t, tg, key3))
	for i, p := range []*Pending{one, two, three} {
		_, err := p.Commit(ctx)
		require.NoError(t, err, "chunk %d", i+1)
	}
	require.Equal(t, []string{key1 + "|B", key3 + "|C"}, f.dump(t, tg.Ident(), "line_id", "status"))
}

// TestAnEarlyChunkWaitsWhereTheServerSeesIt: a transaction outside ehrsync
// holds a row the first chunk needs, and then asks for a row the second
// chunk, upserted early, holds. The second chunk waits for the first on
// the server, so the server sees the cycle and breaks it (deadlock_detected
// for the outsider); waiting for the first chunk in the engine instead, the
// three would wait for each other for ever.
func TestAnEarlyChunkWaitsWhereTheServerSeesIt(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newFixture(t)
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), ins(key1, "S", "1.00"), ins(key3, "S", "3.00"))
	require.NoError(t, err)

	outsider, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = outsider.Rollback(context.Background()) }()
	_, err = outsider.Exec(ctx, "SET LOCAL deadlock_timeout = '100ms'")
	require.NoError(t, err)
	_, err = outsider.Exec(ctx, "UPDATE "+tg.Ident().Sanitize()+" SET status = 'X' WHERE line_id = $1", key1)
	require.NoError(t, err)

	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), upd(key1, "A", "1.10"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key3, "B", "3.30"))
	require.NoError(t, one.Write(ctx))
	// As the engine does: the second chunk commits after the first has.
	oneDone := make(chan struct{})
	var oneErr error
	go func() {
		defer close(oneDone)
		_, oneErr = one.Commit(ctx) // waits for the outsider's row
	}()
	twoDone := make(chan error, 1)
	go func() {
		err := two.Write(ctx)
		if err == nil {
			<-oneDone
			err = oneErr
		}
		if err == nil {
			_, err = two.Commit(ctx)
		}
		twoDone <- err
	}()
	require.Eventually(t, func() bool { return f.lockedElsewhere(t, tg, key3) }, 10*time.Second, 20*time.Millisecond)
	_, err = outsider.Exec(ctx, "UPDATE "+tg.Ident().Sanitize()+" SET status = 'X' WHERE line_id = $1", key3)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "the outsider waited until the test's deadline: %v", err)
	require.Equal(t, "40P01", pgErr.Code) // deadlock_detected
	require.NoError(t, outsider.Rollback(ctx))
	<-oneDone
	require.NoError(t, oneErr)
	require.NoError(t, <-twoDone)
	require.Equal(t, []string{key1 + "|A", key3 + "|B"}, f.dump(t, tg.Ident(), "line_id", "status"))
}
