package sink

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// roundTrips counts the statements and batches a pool sends; each is one
// round trip to the server. COPY (through pgconn) is not counted.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}
func (r *roundTrips) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	r.n.Add(1)
	return ctx
}
func (r *roundTrips) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (r *roundTrips) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// TestAChunkTakesFewRoundTrips: a chunk's statements go to the store in a
// few round trips, not one each (against a cloud store every round trip
// is a network latency): a batch from BEGIN to what the rows need first,
// the rows' COPY (not counted here), the staged apply when there is one,
// a batch moving the position, COMMIT.
func TestAChunkTakesFewRoundTrips(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	trips := &roundTrips{}
	cfg.ConnConfig.Tracer = trips
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, storedb.Migrate(ctx, pool))
	f := &fixture{pool: pool, positions: watermarks.NewStore(pool), mem: newFixture(t).mem}
	f.sink = New(pool, f.positions)
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)

	count := func(reason watermarks.Reason, from, to watermarks.Position, changes ...change) (int64, Result) {
		t.Helper()
		before := trips.n.Load()
		res, err := f.applyAs(t, tg, reason, from, to, changes...)
		require.NoError(t, err)
		return trips.n.Load() - before, res
	}
	// The first chunk of a first snapshot also drops the indexes, once.
	_, res := count(watermarks.ReasonSnapshot, nil, snapAt(key1), ins(key1, "S", "1.00"))
	require.True(t, res.Direct)
	n, res := count(watermarks.ReasonSnapshot, snapAt(key1), snapAt(key2), ins(key2, "S", "1.00"))
	require.True(t, res.Direct)
	require.Equal(t, int64(3), n, "a direct snapshot chunk: a batch from BEGIN, COPY, a batch, COMMIT")
	n, res = count(watermarks.ReasonSnapshot, snapAt(key2), snapAt(key3), ins(key3, "S", "1.00"))
	require.True(t, res.Direct)
	require.Equal(t, int64(3), n, "a direct snapshot chunk: a batch from BEGIN, COPY, a batch, COMMIT")
	n, res = count(watermarks.ReasonSnapshot, snapAt(key3), cursorAt(0), ins(key4, "S", "1.00"))
	require.True(t, res.Direct)
	require.Equal(t, int64(6), n, "the chunk ending the pass: a batch from BEGIN, COPY, the claim, the indexes' definitions, the primary key, a batch, COMMIT")
	n, res = count(watermarks.ReasonSync, cursorAt(0), cursorAt(1), change{op: schemas.OpUpdate, row: line(key1, "D", "0.00")})
	require.False(t, res.Direct)
	require.Equal(t, int64(4), n, "a staged chunk: a batch from BEGIN, COPY, apply, a batch, COMMIT")
	n, _ = count(watermarks.ReasonSync, cursorAt(1), cursorAt(2))
	require.Equal(t, int64(2), n, "an idle chunk: one batch from BEGIN, COMMIT")

	before := trips.n.Load()
	one := f.begin(t, tg, watermarks.ReasonSync, cursorAt(2), cursorAt(3), upd(key1, "E", "0.00"))
	two := f.begin(t, tg, watermarks.ReasonSync, cursorAt(3), cursorAt(4), ins(key2, "F", "0.00"))
	require.True(t, two.early)
	require.NoError(t, one.Write(ctx))
	written := writeAsync(ctx, two)
	_, err = one.Commit(ctx)
	require.NoError(t, err)
	require.NoError(t, <-written)
	_, err = two.Commit(ctx)
	require.NoError(t, err)
	require.Equal(t, int64(8), trips.n.Load()-before, "two staged chunks, the second upserted early (the apply and its wait in one batch): 4 each")
}
