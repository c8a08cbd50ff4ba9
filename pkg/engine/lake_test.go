package engine

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/lake"
)

// fakeLake counts flushes; each moves what was committed before it.
type fakeLake struct {
	mu      sync.Mutex
	bound   int64
	flushes int
	fail    error
	release chan struct{} // when set, a flush waits for it
	entered chan struct{} // when set, a flush says it began (non-blocking)
}

func (l *fakeLake) FlushBytes() int64 { return l.bound }

func (l *fakeLake) Flush(ctx context.Context, t lake.Table) (lake.Result, error) {
	if l.entered != nil {
		select {
		case l.entered <- struct{}{}:
		default:
		}
	}
	if l.release != nil {
		<-l.release
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flushes++
	return lake.Result{Commits: 1, Rows: 10, State: lake.State{Exists: true, Claim: int64(l.flushes)}}, l.fail
}

func newFeed(l *fakeLake) *lakeFeed {
	f := &lakeFeed{l: l, t: lake.Table{Org: "st-mary", Schema: "st_mary", Name: "claims"}, org: "st-mary", table: "dbo.claims",
		m: NewMetrics(nil), log: slog.New(slog.DiscardHandler), ctx: context.Background(), bound: l.bound,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go f.loop()
	return f
}

// A run's feed flushes when the bytes committed since the last flush reach
// the bound, at most one flush waiting while one runs, and once more at
// the run's end; what every flush did adds up.
func TestTheLakeFeedFlushesByBytesAndAtTheEnd(t *testing.T) {
	l := &fakeLake{bound: 100, release: make(chan struct{}), entered: make(chan struct{}, 1)}
	f := newFeed(l)
	f.committed(60)
	f.committed(0)
	f.committed(50) // 110: a flush is due, and waits on release
	<-l.entered
	for range 5 {
		f.committed(100) // due again and again: one waits, the rest fold into it
	}
	close(l.release)
	res, err := f.finish(context.Background())
	require.NoError(t, err)
	require.Equal(t, 3, l.flushes, "the first, one more that was due meanwhile, and the run's end")
	require.Equal(t, 3, res.Commits)
	require.EqualValues(t, 30, res.Rows)
	require.EqualValues(t, 3, res.State.Claim)
}

// A failed flush fails the run with ErrLake (class lake_failed), after the
// run's end flush has been tried too.
func TestALakeFlushThatFailsFailsTheRunAsLakeFailed(t *testing.T) {
	l := &fakeLake{bound: 100, fail: errors.New("storage refused")}
	f := newFeed(l)
	_, err := f.finish(context.Background())
	require.ErrorIs(t, err, ErrLake)
	require.Equal(t, "lake_failed", Class(err))
	require.Equal(t, 1, l.flushes)
	require.Equal(t, 1.0, counterValue(t, f.m.LakeFailures.WithLabelValues("st-mary", "dbo.claims")))

	// A table without the lake has no feed: nothing to finish.
	var none *lakeFeed
	none.committed(10)
	res, err := none.finish(context.Background())
	require.NoError(t, err)
	require.Nil(t, res)
}

func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	require.NoError(t, c.Write(&m))
	return m.GetCounter().GetValue()
}

// busyLake says busy a number of times, then flushes.
type busyLake struct {
	fakeLake
	busy int
}

func (l *busyLake) Flush(ctx context.Context, t lake.Table) (lake.Result, error) {
	l.mu.Lock()
	if l.busy > 0 {
		l.busy--
		l.mu.Unlock()
		return lake.Result{Busy: true}, nil
	}
	l.mu.Unlock()
	return l.fakeLake.Flush(ctx, t)
}

// At the run's end, a table another flush holds is tried again until it
// is free, so the run's changes do not wait for the next run.
func TestTheRunsLastFlushWaitsForABusyTable(t *testing.T) {
	retry := lakeRetry
	lakeRetry = time.Millisecond
	t.Cleanup(func() { lakeRetry = retry })
	l := &busyLake{fakeLake: fakeLake{bound: 100}, busy: 3}
	f := &lakeFeed{l: l, t: lake.Table{Org: "st-mary", Schema: "st_mary", Name: "claims"}, org: "st-mary", table: "dbo.claims",
		m: NewMetrics(nil), log: slog.New(slog.DiscardHandler), ctx: context.Background(), bound: 100,
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go f.loop()
	res, err := f.finish(context.Background())
	require.NoError(t, err)
	require.Equal(t, 1, res.Commits, "flushed once the table was free")
	require.Zero(t, l.busy)
}
