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

// accounts is a PostgreSQL source table keyed by an unconstrained numeric:
// its values travel as their decimal text (utf8) into a store numeric, where
// '1.0' and '1.00' are one key.
func accounts(t *testing.T) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: "dbo", Name: "accounts", Dialect: schemas.Postgres, Key: []string{"id"}}
	for _, c := range []struct{ name, typ string }{{"id", "numeric"}, {"status", "text"}} {
		ty, err := schemas.ParseType(schemas.Postgres, c.typ)
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: c.name, Type: ty, Nullable: c.name != "id"})
	}
	require.NoError(t, tb.Validate())
	return tb
}

// TestStoreEqualKeysOfDifferentTextAreNotUpsertedEarly: two consecutive
// chunks hold one store key under two texts ('1.0' and '1.00' of a numeric
// key). Their hashes differ, but a numeric key is never hashed, so the
// second chunk is not upserted early. Were it, it would lock the row, then
// wait on the server for the first chunk, whose own upsert of that row
// waits for the second: the server would break the cycle
// (deadlock_detected) and fail the run.
func TestStoreEqualKeysOfDifferentTextAreNotUpsertedEarly(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	f := newFixture(t)
	tg, err := f.sink.Prepare(ctx, "st-mary", accounts(t), TableOptions{})
	require.NoError(t, err)
	row := func(id, status string) map[string]any { return map[string]any{"id": id, "status": status} }
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: row("1.0", "S")})
	require.NoError(t, err)

	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), change{op: schemas.OpUpdate, row: row("1.0", "A")})
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), change{op: schemas.OpUpdate, row: row("1.00", "B")})
	require.NoError(t, one.Write(ctx))
	e := newInOrder()
	e.writeAndCommit(ctx, two)
	// Let the second chunk's Write run (an early upsert locks the row).
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) && !f.lockedElsewhere(t, tg, "id", "1") {
		time.Sleep(20 * time.Millisecond)
	}
	e.commit(ctx, one)
	oneErr, err := e.wait()
	require.NoError(t, oneErr, "chunk 1")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		t.Fatalf("chunk 2 failed with %s (%s): it was upserted early though the store holds its key as the chunk before's", pgErr.Code, pgErr.Message)
	}
	require.NoError(t, err, "chunk 2")
	require.Equal(t, []string{"1.00|B"}, f.dump(t, tg.Ident(), "id", "status"))
}

// TestOnlyTheOneOpenChunkBeforeLetsAChunkUpsertEarly: a chunk begun while
// two are open is not upserted early, even when it shares no key with the
// one begun just before it (it may share one with the older one, whose
// own upsert would then wait for it while the one in between waits for
// that one in the engine only); nor is a chunk whose predecessor has ended
// while an older chunk is still open.
func TestOnlyTheOneOpenChunkBeforeLetsAChunkUpsertEarly(t *testing.T) {
	ctx := context.Background()
	f, tg := syncedLines(t, key1, key2)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a Write that waits fails the test
	defer cancel()

	// Two open: one {key1}, two {key2} (early); three {key1}.
	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), upd(key1, "A", "1.10"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key2, "B", "2.20"))
	three := f.begin(t, tg, watermarks.ReasonSync, cursorAt(3), cursorAt(4), upd(key1, "C", "1.30"))
	require.NoError(t, one.Write(ctx))
	written := writeAsync(ctx, two)
	require.NoError(t, three.Write(wctx), "the third chunk waited in Write")
	require.False(t, f.lockedElsewhere(t, tg, "line_id", key1), "the third chunk was upserted early while two chunks were open")
	for i, p := range []*Pending{one, two, three} {
		if i == 1 {
			require.NoError(t, <-written)
		}
		_, err := p.Commit(ctx)
		require.NoError(t, err, "chunk %d", i+1)
	}
	require.Equal(t, []string{key1 + "|C", key2 + "|B"}, f.dump(t, tg.Ident(), "line_id", "status"))

	// The chunk before ended (aborted) while an older one is open: z
	// {key1}, a {key2} aborted, b {key1}.
	z := f.begin(t, tg, watermarks.ReasonSync, cursorAt(4), cursorAt(5), upd(key1, "Z", "1.40"))
	a := f.begin(t, tg, watermarks.ReasonSync, cursorAt(5), cursorAt(6), upd(key2, "Y", "2.40"))
	a.Abort()
	b := f.begin(t, tg, watermarks.ReasonSync, cursorAt(6), cursorAt(7), upd(key1, "X", "1.50"))
	require.NoError(t, z.Write(ctx))
	require.NoError(t, b.Write(wctx))
	require.False(t, f.lockedElsewhere(t, tg, "line_id", key1), "a chunk was upserted early while an older chunk than the one before it was open")
	_, err := z.Commit(ctx)
	require.NoError(t, err)
	_, err = b.Commit(ctx)
	require.ErrorIs(t, err, watermarks.ErrPositionMoved)
	require.Equal(t, []string{key1 + "|Z", key2 + "|B"}, f.dump(t, tg.Ident(), "line_id", "status"))
}

// TestAnEarlyChunkWaitingIsCanceledAndReleasesItsConnection: canceling the
// context of an early chunk's Write, while it waits on the server for the
// chunk before, ends the wait and the chunk, and gives its connection back.
func TestAnEarlyChunkWaitingIsCanceledAndReleasesItsConnection(t *testing.T) {
	ctx := context.Background()
	f, tg := syncedLines(t, key1, key2)
	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), upd(key1, "A", "1.10"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key2, "B", "2.20"))
	require.True(t, two.early)
	require.NoError(t, one.Write(ctx))
	wctx, cancel := context.WithCancel(ctx)
	written := writeAsync(wctx, two)
	require.Eventually(t, func() bool { return f.lockedElsewhere(t, tg, "line_id", key2) }, 10*time.Second, 20*time.Millisecond)
	cancel()
	select {
	case err := <-written:
		require.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("a canceled Write kept waiting")
	}
	require.Eventually(t, func() bool { return f.pool.Stat().AcquiredConns() == 1 }, 5*time.Second, 20*time.Millisecond)
	_, err := one.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, int32(0), f.pool.Stat().AcquiredConns())
	require.Equal(t, []string{key1 + "|A", key2 + "|S"}, f.dump(t, tg.Ident(), "line_id", "status"))
	require.Equal(t, int32(0), tg.begun.open.Load())
}

func upd(key, status, paid string) change {
	return change{op: schemas.OpUpdate, row: line(key, status, paid)}
}

// syncedLines is a claim-lines target holding keys (status S), synced up
// to cursorAt(1).
func syncedLines(t *testing.T, keys ...string) (*fixture, *Target) {
	t.Helper()
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	changes := make([]change, len(keys))
	for i, k := range keys {
		changes[i] = ins(k, "S", "1.00")
	}
	_, err = f.apply(t, tg, nil, cursorAt(1), changes...)
	require.NoError(t, err)
	return f, tg
}

// inOrder commits two chunks, each on a goroutine of its own, the second
// only after the first has, as the engine does.
type inOrder struct {
	oneDone chan struct{}
	oneErr  error
	twoDone chan error
}

// commit commits the first chunk, written already.
func (e *inOrder) commit(ctx context.Context, one *Pending) {
	go func() {
		defer close(e.oneDone)
		_, e.oneErr = one.Commit(ctx)
	}()
}

// writeAndCommit writes the second chunk, then commits it once the first
// has committed.
func (e *inOrder) writeAndCommit(ctx context.Context, two *Pending) {
	go func() {
		err := two.Write(ctx)
		if err == nil {
			<-e.oneDone
			err = e.oneErr
		}
		if err == nil {
			_, err = two.Commit(ctx)
		}
		e.twoDone <- err
	}()
}

func newInOrder() *inOrder {
	return &inOrder{oneDone: make(chan struct{}), twoDone: make(chan error, 1)}
}

// wait returns the chunks' errors once both have ended.
func (e *inOrder) wait() (one, two error) {
	<-e.oneDone
	return e.oneErr, <-e.twoDone
}

// writeAsync writes p on a goroutine of its own, as the engine does: an
// early chunk's Write returns once the chunk before it has ended.
func writeAsync(ctx context.Context, p *Pending) <-chan error {
	done := make(chan error, 1)
	go func() { done <- p.Write(ctx) }()
	return done
}

// lockedElsewhere reports whether another transaction holds the row whose
// col is key (it would have to wait for it).
func (f *fixture) lockedElsewhere(t *testing.T, tg *Target, col, key string) bool {
	t.Helper()
	var n int
	err := pgx.BeginFunc(context.Background(), f.pool, func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), "SELECT count(*) FROM (SELECT FROM "+tg.Ident().Sanitize()+" WHERE "+pgx.Identifier{col}.Sanitize()+" = $1 FOR UPDATE NOWAIT) s", key).Scan(&n)
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
	f, tg := syncedLines(t, key1, key3)

	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), upd(key1, "A", "1.10"), ins(key2, "N", "2.00"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key3, "B", "3.30"), ins(key4, "N", "4.00"))
	require.NoError(t, one.Write(ctx))
	written := writeAsync(ctx, two)
	require.Eventually(t, func() bool { return f.lockedElsewhere(t, tg, "line_id", key3) }, 10*time.Second, 20*time.Millisecond,
		"the second chunk did not upsert its rows while the first was open")
	require.False(t, f.lockedElsewhere(t, tg, "line_id", key1), "the first chunk applies its rows at commit")
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
	ids := f.batchIDs(t, tg) // each row names its own chunk's commit
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
// open that changes one of its keys (a busy claim's changes in chunk after
// chunk) upserts its other keys in Write, while that one is open, and the
// shared key at its commit, after that one's; a chunk begun while two are
// open is upserted at its commit: its Write neither waits nor locks a row.
func TestChunksSharingAKeyAreUpsertedInCommitOrder(t *testing.T) {
	ctx := context.Background()
	f, tg := syncedLines(t, key1, key3)

	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(1), cursorAt(2), upd(key1, "A", "1.10"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key3, "B", "3.30"), upd(key1, "B", "1.20"), ins(key2, "N", "2.00"))
	require.True(t, two.early)
	require.Equal(t, []bool{false, true, false}, two.late)
	three := f.begin(t, tg, watermarks.ReasonSync, cursorAt(3), cursorAt(4), upd(key3, "C", "3.40"))
	require.False(t, three.early)
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second) // a Write that waits fails the test
	defer cancel()
	require.NoError(t, one.Write(wctx))
	written := writeAsync(ctx, two)
	require.Eventually(t, func() bool { return f.lockedElsewhere(t, tg, "line_id", key3) }, 10*time.Second, 20*time.Millisecond,
		"the second chunk did not upsert the key it does not share while the first was open")
	require.False(t, f.lockedElsewhere(t, tg, "line_id", key1), "the shared key was upserted before the first chunk's commit")
	require.NoError(t, three.Write(wctx))
	select {
	case err := <-written:
		t.Fatalf("the second chunk's Write returned before the first chunk ended: %v", err)
	default:
	}
	res, err := one.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 1, Updated: 1}, res)
	require.NoError(t, <-written)
	res, err = two.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 3, Inserted: 1, Updated: 2}, res)
	res, err = three.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 1, Updated: 1}, res)
	require.Equal(t, []string{key1 + "|B", key2 + "|N", key3 + "|C"}, f.dump(t, tg.Ident(), "line_id", "status"))
	ids := f.batchIDs(t, tg) // key1, key2, key3: the second chunk's commit wrote key1 and key2
	require.Len(t, ids, 3)
	require.Equal(t, ids[0], ids[1])
	require.Less(t, ids[1], ids[2])
}

// TestHotKeysPartlyEarlyEndAsAppliedOneByOne applies chunks that share keys
// with the chunk before them (several changes of a few hot keys, deletes,
// re-inserts), each written while the one before commits as the engine
// does, and the same chunks one at a time to another table: the rows,
// metadata, change log and counts are the same.
func TestHotKeysPartlyEarlyEndAsAppliedOneByOne(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for _, opts := range []TableOptions{{}, {DeletePolicy: DeleteSoft, ChangeLog: true}} {
		piped, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), opts)
		require.NoError(t, err)
		ref, err := f.sink.Prepare(ctx, "st-joseph", claimLines(t), opts)
		require.NoError(t, err)
		del := func(key string) change { return change{op: schemas.OpDelete, row: map[string]any{"line_id": key}} }
		chunks := [][]change{
			{ins(key1, "S", "1.00"), ins(key2, "S", "2.00"), ins(key3, "S", "3.00")},
			{upd(key1, "A", "1.10"), ins(key4, "N", "4.00"), upd(key2, "A", "2.10")},
			{upd(key1, "B", "1.20"), del(key2), upd(key3, "B", "3.20"), upd(key1, "C", "1.30")},
			{ins(key2, "R", "2.50"), upd(key1, "D", "1.40"), ins(keyA, "N", "5.00")},
			{del(key1), upd(key4, "E", "4.40"), upd(key2, "E", "2.60")},
		}
		at := func(i int) watermarks.Position {
			if i == 0 {
				return nil
			}
			return cursorAt(int64(i))
		}
		var refs []Result
		for i, c := range chunks {
			res, err := f.apply(t, ref, at(i), at(i+1), c...)
			require.NoError(t, err)
			refs = append(refs, res)
		}
		var prev *Pending
		var prevWritten <-chan error
		partly := 0
		for i, c := range chunks {
			p := f.begin(t, piped, watermarks.ReasonSync, at(i), at(i+1), c...)
			if p.late != nil {
				partly++
			}
			written := writeAsync(ctx, p)
			if prev != nil {
				require.NoError(t, <-prevWritten)
				res, err := prev.Commit(ctx)
				require.NoError(t, err, "chunk %d", i)
				require.Equal(t, refs[i-1], res, "chunk %d", i)
			}
			prev, prevWritten = p, written
		}
		require.NoError(t, <-prevWritten)
		res, err := prev.Commit(ctx)
		require.NoError(t, err)
		require.Equal(t, refs[len(refs)-1], res)
		require.Positive(t, partly, "no chunk was upserted partly early")
		require.Equal(t, f.dump(t, ref.Ident(), everyColumn...), f.dump(t, piped.Ident(), everyColumn...), "%+v", opts)
		if opts.ChangeLog {
			cols := []string{"line_id", "status", MetaOp}
			require.Equal(t, f.dump(t, ref.ChangeLogIdent(), cols...), f.dump(t, piped.ChangeLogIdent(), cols...))
		}
		f = newFixture(t)
	}
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
	f, tg := syncedLines(t, key1, key3)

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
	e := newInOrder()
	e.commit(ctx, one) // waits for the outsider's row
	e.writeAndCommit(ctx, two)
	require.Eventually(t, func() bool { return f.lockedElsewhere(t, tg, "line_id", key3) }, 10*time.Second, 20*time.Millisecond)
	_, err = outsider.Exec(ctx, "UPDATE "+tg.Ident().Sanitize()+" SET status = 'X' WHERE line_id = $1", key3)
	var pgErr *pgconn.PgError
	require.ErrorAs(t, err, &pgErr, "the outsider waited until the test's deadline: %v", err)
	require.Equal(t, "40P01", pgErr.Code) // deadlock_detected
	require.NoError(t, outsider.Rollback(ctx))
	oneErr, twoErr := e.wait()
	require.NoError(t, oneErr)
	require.NoError(t, twoErr)
	require.Equal(t, []string{key1 + "|A", key3 + "|B"}, f.dump(t, tg.Ident(), "line_id", "status"))
}
