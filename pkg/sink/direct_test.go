package sink

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// snapAt is a snapshot position after key (nil: not started), handing off
// to cursorAt(100).
func snapAt(key string) watermarks.Position {
	if key == "" {
		return watermarks.Snapshot{Resume: cursorAt(100)}
	}
	return watermarks.Snapshot{LastKey: watermarks.Key{watermarks.UUID(uuid.MustParse(key))}, Resume: cursorAt(100)}
}

// applyAs applies changes as one batch with the given reason.
func (f *fixture) applyAs(t *testing.T, tg *Target, reason watermarks.Reason, from, to watermarks.Position, changes ...change) (Result, error) {
	t.Helper()
	var rec arrow.RecordBatch
	if len(changes) > 0 {
		rec = batch(t, f.mem, tg.table, changes...)
		defer rec.Release()
	}
	return tg.Apply(context.Background(), rec, watermarks.Move{From: from, To: to, Reason: reason, Actor: "test"})
}

// Keys in snapshot (key) order.
const (
	key1 = "00000000-0000-0000-0000-000000000001"
	key2 = "00000000-0000-0000-0000-000000000002"
	key3 = "00000000-0000-0000-0000-000000000003"
	key4 = "00000000-0000-0000-0000-000000000004"
)

func ins(key, status, paid string) change {
	return change{op: schemas.OpInsert, row: line(key, status, paid)}
}

var everyColumn = []string{"line_id", "practice_id", "paid_amt", "status", "begin_date_of_service", "modify_timestamp",
	MetaOp, MetaDeleted}

func TestSnapshotIntoAnEmptyTableCopiesStraightIn(t *testing.T) {
	for _, policy := range []DeletePolicy{DeleteHard, DeleteSoft} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			direct, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{DeletePolicy: policy})
			require.NoError(t, err)
			// The same chunks, upserted, are the reference.
			staged, err := f.sink.Prepare(ctx, "st-joseph", claimLines(t), TableOptions{DeletePolicy: policy})
			require.NoError(t, err)
			chunks := [][]change{
				{ins(key1, "S", "1.00"), ins(key2, "D", "-125.40")},
				{ins(key3, "P", "0.00"), {op: schemas.OpInsert, row: map[string]any{"line_id": key4}}},
			}
			var from watermarks.Position // nothing saved yet
			for i, ch := range chunks {
				to := snapAt(ch[len(ch)-1].row["line_id"].(string))
				if i == len(chunks)-1 {
					to = cursorAt(100)
				}
				got, err := f.applyAs(t, direct, watermarks.ReasonSnapshot, from, to, ch...)
				require.NoError(t, err)
				require.True(t, got.Direct, "chunk %d was staged", i+1)
				want, err := f.applyAs(t, staged, watermarks.ReasonSync, from, to, ch...)
				require.NoError(t, err)
				require.False(t, want.Direct)
				got.Direct = false
				require.Equal(t, want, got, "chunk %d", i+1)
				from = to
			}
			require.Equal(t, f.dump(t, staged.Ident(), everyColumn...), f.dump(t, direct.Ident(), everyColumn...))
			require.Equal(t, f.batches(t, staged), f.batches(t, direct))
			var late int
			require.NoError(t, f.pool.QueryRow(ctx, "SELECT count(*) FROM "+direct.Ident().Sanitize()+
				" WHERE "+MetaSyncedAt+" IS NULL OR "+MetaSyncedAt+" < now() - interval '1 minute'").Scan(&late))
			require.Zero(t, late)
			got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
			require.NoError(t, err)
			require.Equal(t, cursorAt(100), got)
		})
	}
}

func TestSnapshotUpsertsUnlessTheTableIsKnownEmpty(t *testing.T) {
	if testing.Short() {
		t.Skip("long (a fresh store for every case): runs without -short")
	}
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// setup runs before the snapshot chunk under test, which moves
		// from → snapAt(key3) with rows key2, key3.
		setup  func(t *testing.T, f *fixture, tg *Target) *Target
		from   watermarks.Position
		reason watermarks.Reason
		opts   TableOptions
		update bool // the chunk holds an update
	}{
		{name: "the table has rows", from: snapAt(""), setup: func(t *testing.T, f *fixture, tg *Target) *Target {
			_, err := f.applyAs(t, tg, watermarks.ReasonSync, nil, snapAt(""), ins(key4, "S", "1.00"))
			require.NoError(t, err)
			return tg
		}},
		{name: "a first snapshot reset before it ended", from: nil, setup: func(t *testing.T, f *fixture, tg *Target) *Target {
			// Chunk 1 went straight into the bare table, then an operator
			// reset the position: the next process starts the pass again
			// over the rows loaded. Its chunk builds the indexes first,
			// then upserts (key2 is loaded already).
			res, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key2), ins(key1, "S", "1.00"), ins(key2, "S", "1.00"))
			require.NoError(t, err)
			require.True(t, res.Direct)
			require.Zero(t, f.indexes(t, tg), "loaded into the bare table")
			require.NoError(t, f.positions.Reset(ctx, "st-mary", "dbo.claim_lines", nil, "test", "test"))
			again, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
			require.NoError(t, err)
			return again
		}},
		{name: "a writer outside ehrsync added a key", from: snapAt(key1), setup: func(t *testing.T, f *fixture, tg *Target) *Target {
			// A foreign key refers to the table: it keeps its primary key
			// through its first snapshot, whose chunks go straight in as
			// long as no key is there already.
			_, err := f.pool.Exec(ctx, "CREATE TABLE st_mary.refers (line_id uuid REFERENCES "+tg.Ident().Sanitize()+")")
			require.NoError(t, err)
			res, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key1), ins(key1, "S", "1.00"))
			require.NoError(t, err)
			require.True(t, res.Direct)
			require.Equal(t, 1, f.indexes(t, tg), "the primary key stays")
			_, err = f.pool.Exec(ctx, "INSERT INTO "+tg.Ident().Sanitize()+" (line_id, status, "+MetaOp+") VALUES ($1, 'X', 'insert')", key3)
			require.NoError(t, err)
			// The fallback runs on a new connection, whose staging table
			// the chunk creates before the savepoint it rolls back to.
			f.pool.Reset()
			return tg
		}},
		{name: "not a snapshot", from: nil, reason: watermarks.ReasonSync},
		{name: "a backfill", from: nil, reason: watermarks.ReasonBackfill},
		{name: "not only inserts", update: true},
		{name: "a change log", opts: TableOptions{ChangeLog: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), tc.opts)
			require.NoError(t, err)
			if tc.setup != nil {
				tg = tc.setup(t, f, tg)
			}
			reason := tc.reason
			if reason == "" {
				reason = watermarks.ReasonSnapshot
			}
			second := ins(key3, "P", "3.00")
			if tc.update {
				second.op = schemas.OpUpdate
			}
			res, err := f.applyAs(t, tg, reason, tc.from, snapAt(key3), ins(key2, "P", "2.00"), second)
			require.NoError(t, err)
			require.False(t, res.Direct, "copied straight into the target")
			require.Contains(t, f.dump(t, tg.Ident(), "line_id", "status", "paid_amt"), key3+"|P|3.00")
			require.Contains(t, f.dump(t, tg.Ident(), "line_id", "status", "paid_amt"), key2+"|P|2.00")
		})
	}
}

// TestKilledDirectCopyLeavesNothing kills the store backend after a chunk
// was copied straight into the target, before COMMIT; the retry, and a
// snapshot resumed by another process, apply cleanly.
func TestKilledDirectCopyLeavesNothing(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	res, err := f.applyAs(t, tg, watermarks.ReasonSnapshot, nil, snapAt(key2), ins(key1, "S", "1.00"), ins(key2, "S", "2.00"))
	require.NoError(t, err)
	require.True(t, res.Direct)

	tg.testHookBeforeCommit = func(ctx context.Context, tx *pgx.Conn) error {
		var pid, n int
		require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+tg.Ident().Sanitize()).Scan(&n))
		require.Equal(t, 4, n, "the hook must run after the rows were copied")
		_, err := f.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
		require.NoError(t, err)
		return nil
	}
	chunk2 := []change{ins(key3, "S", "3.00"), ins(key4, "S", "4.00")}
	_, err = f.applyAs(t, tg, watermarks.ReasonSnapshot, snapAt(key2), snapAt(key4), chunk2...)
	require.Error(t, err)
	require.Equal(t, []string{key1, key2}, f.dump(t, tg.Ident(), "line_id"))
	got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, snapAt(key2), got)
	tg.testHookBeforeCommit = nil

	// Another process resumes after key2, straight into the bare table:
	// the pass's chunks so far are recorded as loaded up to key2, and a
	// keyset snapshot reads after it.
	resumed, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	res, err = f.applyAs(t, resumed, watermarks.ReasonSnapshot, snapAt(key2), snapAt(key4), chunk2...)
	require.NoError(t, err)
	require.True(t, res.Direct)
	require.Equal(t, int64(2), res.Inserted)
	require.Zero(t, f.indexes(t, resumed), "still loading")
	_, err = f.applyAs(t, resumed, watermarks.ReasonSnapshot, snapAt(key4), cursorAt(100))
	require.NoError(t, err)
	require.Equal(t, 1, f.indexes(t, resumed), "the pass's end built the primary key")
	require.Equal(t, []string{key1, key2, key3, key4}, f.dump(t, tg.Ident(), "line_id"))
}

// indexes counts the indexes of tg's table.
func (f *fixture) indexes(t *testing.T, tg *Target) int {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_index WHERE indrelid = $1::regclass",
		tg.Ident().Sanitize()).Scan(&n))
	return n
}
