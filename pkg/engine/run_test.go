package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/watermarks"
)

// seqRun yields chunks 1..n (forever when n is 0), each a one-row batch from
// mem holding its number, with position Cursor{seq: i}. failAt makes read
// failAt fail. Every Next call is announced on reads (when set) before it
// returns.
type seqRun struct {
	mem    memory.Allocator
	n      int
	failAt int
	reads  chan int
	i      int

	mu      sync.Mutex
	inNext  bool
	closed  bool
	overlap bool // Close ran while Next was running
}

var errRead = errors.New("source went away")

func (r *seqRun) Next(ctx context.Context) (extractors.Chunk, error) {
	r.mu.Lock()
	r.inNext = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.inNext = false
		r.mu.Unlock()
	}()
	if err := ctx.Err(); err != nil {
		return extractors.Chunk{}, err
	}
	r.i++
	if r.reads != nil {
		select {
		case r.reads <- r.i:
		case <-ctx.Done():
			return extractors.Chunk{}, ctx.Err()
		}
	}
	if r.i == r.failAt {
		return extractors.Chunk{}, errRead
	}
	if r.n > 0 && r.i > r.n {
		return extractors.Chunk{}, io.EOF
	}
	b := array.NewInt64Builder(r.mem)
	defer b.Release()
	b.Append(int64(r.i))
	col := b.NewArray()
	defer col.Release()
	rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "i", Type: arrow.PrimitiveTypes.Int64}}, nil), []arrow.Array{col}, 1)
	return extractors.Chunk{Batch: rec, To: watermarks.Cursor{Column: "seq", Value: watermarks.Int64(int64(r.i))}}, nil
}

func (r *seqRun) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	if r.inNext {
		r.overlap = true
	}
	return nil
}

type seqExtractor struct{ run *seqRun }

func (e seqExtractor) Open(context.Context, watermarks.Position) (extractors.Run, error) {
	return e.run, nil
}

type noPosition struct{}

func (noPosition) Load(context.Context, string, string) (watermarks.Position, error) { return nil, nil }

// recorder is an Applier that records each chunk's number and move as it
// commits; apply, when set, runs first and can fail the commit, and write
// runs as the chunk's rows are written. It notes chunks aborted, and
// commits that overlapped.
type recorder struct {
	mu         sync.Mutex
	got        []int64
	moves      []watermarks.Move
	aborted    []int64
	committing bool
	overlap    bool
	apply      func(ctx context.Context, n int64) error
	write      func(ctx context.Context, n int64) error
	begin      func(n int64) error
}

func (a *recorder) Begin(_ context.Context, rec arrow.RecordBatch, m watermarks.Move) (engine.Pending, error) {
	if a.begin != nil {
		if err := a.begin(rec.Column(0).(*array.Int64).Value(0)); err != nil {
			return nil, err
		}
	}
	return &recorded{a: a, n: rec.Column(0).(*array.Int64).Value(0), rows: rec.NumRows(), m: m}, nil
}

type recorded struct {
	a    *recorder
	n    int64
	rows int64
	m    watermarks.Move
}

func (p *recorded) Write(ctx context.Context) error {
	if p.a.write != nil {
		return p.a.write(ctx, p.n)
	}
	return nil
}

func (p *recorded) Commit(ctx context.Context) (sink.Result, error) {
	p.a.mu.Lock()
	p.a.overlap = p.a.overlap || p.a.committing
	p.a.committing = true
	p.a.mu.Unlock()
	defer func() {
		p.a.mu.Lock()
		p.a.committing = false
		p.a.mu.Unlock()
	}()
	if p.a.apply != nil {
		if err := p.a.apply(ctx, p.n); err != nil {
			return sink.Result{}, err
		}
	}
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	p.a.got = append(p.a.got, p.n)
	p.a.moves = append(p.a.moves, p.m)
	return sink.Result{Rows: p.rows}, nil
}

func (p *recorded) Abort() {
	p.a.mu.Lock()
	defer p.a.mu.Unlock()
	p.a.aborted = append(p.a.aborted, p.n)
}

func job(run *seqRun, a *recorder) engine.TableJob {
	return engine.TableJob{Org: "st-mary", Table: "dbo.charges", Strategy: "hwm",
		Extractor: seqExtractor{run}, Target: a, Positions: noPosition{}}
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func position(i int64) watermarks.Position {
	return watermarks.Cursor{Column: "seq", Value: watermarks.Int64(i)}
}

func TestRunTableCommitsChunksInOrderWithTheirPositions(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	run := &seqRun{mem: mem, n: 50}
	a := &recorder{}
	res := engine.RunTable(context.Background(), quiet, job(run, a))
	require.NoError(t, res.Err)
	require.Equal(t, 50, res.Chunks)
	require.Equal(t, int64(50), res.Totals.Rows)
	require.Len(t, a.got, 50)
	for i, n := range a.got {
		require.Equal(t, int64(i+1), n, "chunks committed out of order")
		require.Equal(t, position(n), a.moves[i].To)
		if i == 0 {
			require.Nil(t, a.moves[i].From)
		} else {
			require.Equal(t, position(n-1), a.moves[i].From, "a chunk's move does not start at the last committed position")
		}
	}
	require.Equal(t, position(50), res.To)
	require.True(t, run.closed)
}

func TestRunTableReadsTheNextChunkWhileOneCommits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	reads := make(chan int, 10)
	run := &seqRun{mem: mem, n: 3, reads: reads}
	a := &recorder{apply: func(_ context.Context, n int64) error {
		// Chunk n is being committed: the reader must get to chunk n+1
		// without waiting for the commit. The timeout only turns a
		// serial run's deadlock into a failure.
		for {
			select {
			case i := <-reads:
				if i == int(n)+1 {
					return nil
				}
			case <-time.After(time.Minute):
				return errors.New("the next chunk was not read while this one committed")
			}
		}
	}}
	res := engine.RunTable(context.Background(), quiet, job(run, a))
	require.NoError(t, res.Err)
	require.Equal(t, []int64{1, 2, 3}, a.got)
}

func TestRunTableWritesTheNextChunkWhileOneCommits(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	run := &seqRun{mem: mem, n: 20}
	writes := make(chan int64, 20)
	a := &recorder{
		write: func(_ context.Context, n int64) error {
			writes <- n
			return nil
		},
		apply: func(_ context.Context, n int64) error {
			// Chunk n is committing: chunk n+1's rows must be written
			// meanwhile. The timeout only turns a serial run's deadlock
			// into a failure.
			if n == 20 {
				return nil
			}
			for {
				select {
				case i := <-writes:
					if i == n+1 {
						return nil
					}
				case <-time.After(time.Minute):
					return errors.New("the next chunk was not written while this one committed")
				}
			}
		},
	}
	res := engine.RunTable(context.Background(), quiet, job(run, a))
	require.NoError(t, res.Err)
	require.Equal(t, 20, res.Chunks)
	require.False(t, a.overlap, "two chunks committed at once")
	for i, n := range a.got {
		require.Equal(t, int64(i+1), n, "chunks committed out of order")
	}
	require.Equal(t, position(20), res.To)
}

func TestRunTableCommitsNothingAfterAChunkThatFails(t *testing.T) {
	errStore := errors.New("store went away")
	for _, tc := range []struct {
		name    string
		write   bool // the failing chunk's write fails, not its commit
		begin   bool // the failing chunk cannot begin (chunk 2 is then in flight)
		commits []int64
	}{
		{name: "commit fails", commits: []int64{1, 2}},
		{name: "write fails", write: true, commits: []int64{1, 2}},
		{name: "begin fails", begin: true, commits: []int64{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			run := &seqRun{mem: mem}
			written := make(chan struct{})
			a := &recorder{
				begin: func(n int64) error {
					if tc.begin && n == 3 {
						return errStore
					}
					return nil
				},
				write: func(_ context.Context, n int64) error {
					if n == 4 {
						close(written)
					}
					if tc.write && n == 3 {
						return errStore
					}
					return nil
				},
				apply: func(_ context.Context, n int64) error {
					if n == 3 {
						<-written // chunk 4 is written, waiting to commit
						return errStore
					}
					return nil
				},
			}
			res := engine.RunTable(context.Background(), quiet, job(run, a))
			require.ErrorIs(t, res.Err, errStore)
			require.ErrorContains(t, res.Err, "commit chunk 3")
			require.Equal(t, tc.commits, a.got)
			require.Equal(t, 2, res.Chunks)
			require.Equal(t, position(2), res.To)
			if !tc.begin {
				require.Contains(t, a.aborted, int64(4), "the chunk after the failed one was not aborted")
			}
			require.True(t, run.closed)
		})
	}
}

func TestRunTableStopsBothSidesOnAnError(t *testing.T) {
	errStore := errors.New("store went away")
	for _, tc := range []struct {
		name    string
		failAt  int // read that fails
		applyAt int64
		cancel  bool
		want    error
		wantMsg string
		commits []int64
	}{
		{name: "reader fails", failAt: 4, want: errRead, wantMsg: "read chunk 4", commits: []int64{1, 2, 3}},
		{name: "applier fails", applyAt: 3, want: errStore, wantMsg: "commit chunk 3", commits: []int64{1, 2}},
		{name: "context canceled", applyAt: 3, cancel: true, want: context.Canceled, commits: []int64{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			// The run never ends by itself: only stopping it ends RunTable.
			reads := make(chan int, 100)
			run := &seqRun{mem: mem, failAt: tc.failAt, reads: reads}
			a := &recorder{apply: func(ctx context.Context, n int64) error {
				if n != tc.applyAt {
					return nil
				}
				// Fail once the reader is a full pipeline ahead (one
				// chunk waiting, the next one read), so that stopping
				// must release both.
				for i := range reads {
					if i == int(n)+engine.Pipeline+1 {
						break
					}
				}
				if tc.cancel {
					cancel()
					return ctx.Err()
				}
				return errStore
			}}
			res := engine.RunTable(ctx, quiet, job(run, a))
			require.ErrorIs(t, res.Err, tc.want)
			require.ErrorContains(t, res.Err, tc.wantMsg)
			require.Equal(t, tc.commits, a.got)
			require.Equal(t, len(tc.commits), res.Chunks)
			require.Equal(t, position(tc.commits[len(tc.commits)-1]), res.To, "the result's position is not the last committed one")
			require.True(t, run.closed)
			require.False(t, run.overlap, "the run was closed while a read was still going")
		})
	}
}
