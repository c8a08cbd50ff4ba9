package engine_test

import (
	"context"
	"io"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// scripted yields the given chunks: rows[i] == 0 is an idle chunk (nil
// batch), otherwise that many inserts, keys continuing from the last
// chunk. A snapshot's chunks move to Snapshot{LastKey}, its last to
// Snapshot{}; other chunks to a cursor counting them.
type scripted struct {
	table  *schemas.Table
	rows   []int
	reason watermarks.Reason
}

func (s scripted) Open(context.Context, watermarks.Position) (extractors.Run, error) {
	return &scriptedRun{s: s}, nil
}

type scriptedRun struct {
	s   scripted
	i   int
	key int
}

func (r *scriptedRun) Next(context.Context) (extractors.Chunk, error) {
	if r.i >= len(r.s.rows) {
		return extractors.Chunk{}, io.EOF
	}
	n := r.s.rows[r.i]
	r.i++
	var to watermarks.Position = watermarks.Cursor{Column: "id", Value: watermarks.Int64(int64(r.i))}
	if n == 0 {
		return extractors.Chunk{To: to, Reason: r.s.reason}, nil
	}
	sc, err := schemas.ChangeSchema(r.s.table)
	if err != nil {
		return extractors.Chunk{}, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for j := 0; j < n; j++ {
		r.key++
		b.Field(0).(*array.Int32Builder).Append(int32(r.key))
		b.Field(1).(*array.StringBuilder).Append("v" + strconv.Itoa(r.key))
		b.Field(2).(*array.Int8Builder).Append(int8(schemas.OpInsert))
		b.Field(3).(*array.Int64Builder).Append(int64(r.key))
		b.Field(4).AppendNull()
	}
	if r.s.reason == watermarks.ReasonSnapshot {
		to = watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(int64(r.key))}}
		if r.i == len(r.s.rows) {
			to = watermarks.Snapshot{}
		}
	}
	return extractors.Chunk{Batch: b.NewRecordBatch(), To: to, Reason: r.s.reason}, nil
}

func (r *scriptedRun) Close() error { return nil }

func storeWithConns(t *testing.T, maxConns int) (*pgxpool.Pool, *watermarks.Store, *sink.Sink) {
	t.Helper()
	u := pgtest.URL(t)
	if maxConns > 0 {
		u += "&pool_max_conns=" + strconv.Itoa(maxConns)
	}
	pool, err := pgxpool.New(context.Background(), u)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	positions := watermarks.NewStore(pool)
	return pool, positions, sink.New(pool, positions)
}

// TestIdleChunksAndRowsShareOneConnection: every chunk takes its store
// connection when it begins, in read order, an idle one (a heartbeat, a CDC
// capture-instance switch) too. Were an idle chunk to take it only to
// commit, the chunk begun after it could hold the pool's last connection
// while waiting for the idle one to commit: with pool_max_conns=1 the run
// would hang until its deadline.
func TestIdleChunksAndRowsShareOneConnection(t *testing.T) {
	_, positions, sk := storeWithConns(t, 1)
	ctx := context.Background()
	tg, err := sk.Prepare(ctx, "st-mary", table(t, "t"), sink.TableOptions{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	rows := []int{0, 2, 0, 2, 0, 2, 0, 2, 0, 2, 2}
	res := engine.RunTable(ctx, quiet, engine.TableJob{Org: "st-mary", Table: "dbo.t", Strategy: "cdc",
		Extractor: scripted{table: table(t, "t"), rows: rows, reason: watermarks.ReasonSync},
		Target:    engine.Applies(tg), Positions: positions, Actor: "test"})
	require.NoError(t, res.Err, "the run hung until its deadline")
	require.Equal(t, len(rows), res.Chunks)
	require.Equal(t, int64(12), res.Totals.Inserted)
}

// TestACanceledRunLeavesExactlyTheChunksItCounts: a direct snapshot run
// canceled at various instants leaves the store with exactly the rows up to
// its saved position, that position at res.To (a COMMIT canceled after the
// server committed would leave res a chunk behind), and no connection
// acquired.
func TestACanceledRunLeavesExactlyTheChunksItCounts(t *testing.T) {
	if testing.Short() {
		t.Skip("long (13 canceled snapshot runs of 200,000 rows): runs without -short")
	}
	for _, after := range []time.Duration{5, 10, 20, 35, 50, 65, 80, 100, 120, 150, 200, 250, 300} {
		t.Run((after * time.Millisecond).String(), func(t *testing.T) {
			pool, positions, sk := storeWithConns(t, 0)
			bg := context.Background()
			tb := table(t, "t")
			tg, err := sk.Prepare(bg, "st-mary", tb, sink.TableOptions{})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(bg)
			time.AfterFunc(after*time.Millisecond, cancel)
			defer cancel()
			res := engine.RunTable(ctx, quiet, engine.TableJob{Org: "st-mary", Table: "dbo.t", Strategy: "snapshot",
				Extractor: scripted{table: tb, rows: slices.Repeat([]int{5000}, 40), reason: watermarks.ReasonSnapshot},
				Target:    engine.Applies(tg), Positions: positions, Actor: "test"})
			t.Logf("chunks %d err %v", res.Chunks, res.Err)
			// A connection released in a transaction is destroyed
			// asynchronously by the pool.
			require.Eventually(t, func() bool { return pool.Stat().AcquiredConns() == 0 }, 5*time.Second, 10*time.Millisecond,
				"a connection is still acquired")
			var n int64
			require.NoError(t, pool.QueryRow(bg, "SELECT count(*) FROM st_mary.t").Scan(&n))
			got, err := positions.Load(bg, "st-mary", "dbo.t")
			require.NoError(t, err)
			// The invariant: the store holds exactly the rows up to its
			// saved position.
			var upTo int64
			switch p := got.(type) {
			case nil:
			case watermarks.Snapshot:
				if len(p.LastKey) == 0 {
					upTo = 40 * 5000
				} else {
					upTo, _ = p.LastKey[0].AsInt64()
				}
			default:
				t.Fatalf("position %v", got)
			}
			require.Equal(t, upTo, n, "the store's rows do not match its position")
			// The report: res counts exactly the committed chunks.
			require.Equal(t, res.To, got, "res.To is not the saved position (a COMMIT canceled after the server committed)")
			require.Equal(t, int64(res.Chunks)*5000, n, "res.Chunks does not count the committed chunks")
		})
	}
}
