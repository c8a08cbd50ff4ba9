package engine_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/watermarks"
)

var errFlaky = errors.New("connection reset by peer")

// flaky fails its first fails opens with errFlaky, then opens its fake.
type flaky struct {
	*fake
	fails atomic.Int32
}

func (f *flaky) Open(ctx context.Context, pos watermarks.Position) (extractors.Run, error) {
	if f.fails.Add(-1) >= 0 {
		return nil, errFlaky
	}
	return f.fake.Open(ctx, pos)
}

type flakyPlanner struct {
	planner engine.Planner
	flaky   map[string]*flaky
}

func (p flakyPlanner) Plan(ctx context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	plan, err := p.planner.Plan(ctx, req)
	if f, ok := p.flaky[req.Table.QualifiedName()]; ok {
		plan.Extractor = f
	}
	return plan, err
}

// runAudit keeps the run id of every audited table attempt.
type runAudit struct {
	mu  sync.Mutex
	ids []string
}

func (a *runAudit) TableRun(_ context.Context, _, runID string, _ []string, _ engine.TableResult) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.ids = append(a.ids, runID)
	return nil
}

func retryFlaky(attempts int) engine.Retry {
	return engine.Retry{Attempts: attempts, Backoff: func(int) time.Duration { return time.Millisecond },
		Transient: func(err error) bool { return errors.Is(err, errFlaky) }}
}

// countOpens opens sources with source.Open and counts the calls; the
// first fail calls fail with errFlaky instead.
func countOpens(n *atomic.Int32, fail int32) engine.Option {
	return engine.WithSourceOpener(func(ctx context.Context, src config.Source) (*sql.DB, error) {
		if n.Add(1) <= fail {
			return nil, errFlaky
		}
		return source.Open(ctx, src)
	})
}

// TestOrgRunRetriesATableInsideTheRun: a table that fails with a transient
// error is retried within the org run: on the source pool the run opened
// once, under the run's id, each attempt reported as it ends; the other
// table runs once.
func TestOrgRunRetriesATableInsideTheRun(t *testing.T) {
	claims := &fake{table: table(t, "claims"), n: 3}
	charges := &flaky{fake: &fake{table: table(t, "charges"), n: 2}}
	charges.fails.Store(2)
	f := newFixture(t, "", claims, charges.fake)
	var opens atomic.Int32
	a := &runAudit{}
	f.build(flakyPlanner{planner: f.planner, flaky: map[string]*flaky{"dbo.charges": charges}}, countOpens(&opens, 0), engine.WithAudit(a))
	var finished []string
	var retries []int
	var mu sync.Mutex
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{
		Retry: retryFlaky(3),
		Finished: func(tr engine.TableResult) {
			mu.Lock()
			defer mu.Unlock()
			finished = append(finished, tr.Table)
		},
		Retrying: func(table string, attempt int, _ time.Duration, err error) {
			require.Equal(t, "dbo.charges", table)
			require.ErrorIs(t, err, errFlaky)
			retries = append(retries, attempt)
		},
	})
	require.NoError(t, res.Err)
	require.Zero(t, res.Failed())
	require.Len(t, res.Tables, 2)
	require.Equal(t, int64(2), res.Tables[1].Totals.Inserted)
	require.Equal(t, int32(1), opens.Load(), "source pools opened by one org run")
	require.Equal(t, []int{1, 2}, retries)
	require.ElementsMatch(t, []string{"dbo.claims", "dbo.charges", "dbo.charges", "dbo.charges"}, finished)
	require.Len(t, a.ids, 4)
	for _, id := range a.ids {
		require.Equal(t, res.RunID, id, "an attempt ran under another run id")
	}

	// Without retries, the transient failure stands.
	charges.fails.Store(1)
	res = f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{})
	require.Equal(t, 1, res.Failed())
	require.ErrorIs(t, res.Tables[1].Err, errFlaky)
}

// TestOrgRunRetriesAnUnreachableSource: a source that cannot be reached is
// retried by the run's policy; a permanent failure is not.
func TestOrgRunRetriesAnUnreachableSource(t *testing.T) {
	claims := &fake{table: table(t, "claims"), n: 1}
	f := newFixture(t, "", claims)
	var opens atomic.Int32
	f.build(f.planner, countOpens(&opens, 2))
	var retried []string
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{Retry: retryFlaky(2),
		Retrying: func(table string, _ int, _ time.Duration, _ error) { retried = append(retried, table) }})
	require.NoError(t, res.Err)
	require.Zero(t, res.Failed())
	require.Equal(t, int32(3), opens.Load())
	require.Equal(t, []string{"", ""}, retried, "source retries are reported with no table")

	opens.Store(0)
	res = f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{Retry: retryFlaky(1)})
	require.ErrorIs(t, res.Err, errFlaky, "a source still unreachable after the retries")
	require.Empty(t, res.Tables)
}

// stopping closes stop when its run is read, and counts its opens.
type stopping struct {
	*fake
	stop  func()
	opens atomic.Int32
}

func (s *stopping) Open(ctx context.Context, pos watermarks.Position) (extractors.Run, error) {
	s.opens.Add(1)
	s.stop()
	return s.fake.Open(ctx, pos)
}

// TestOrgRunStopStartsNoNewTable: once Stop is closed, the table running
// finishes and commits, and no other table starts.
func TestOrgRunStopStartsNoNewTable(t *testing.T) {
	first := &fake{table: table(t, "claims"), n: 2}
	second := &fake{table: table(t, "charges"), n: 2}
	f := newFixture(t, "", first, second)
	stop := make(chan struct{})
	x := &stopping{fake: first, stop: sync.OnceFunc(func() { close(stop) })}
	f.build(stopPlanner(f.planner, x))
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{Stop: stop})
	require.True(t, res.Stopped)
	require.Len(t, res.Tables, 1)
	require.NoError(t, res.Tables[0].Err)
	require.Equal(t, int64(2), res.Tables[0].Totals.Inserted, "the table running when the stop came did not finish")
	require.Empty(t, second.opens, "a table started after the stop")
}

// swapPlanner plans the table named table with the extractor x, and every
// table as planner does otherwise.
type swapPlanner struct {
	planner
	table string
	x     extractors.Extractor
}

func (p swapPlanner) Plan(ctx context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	plan, err := p.planner.Plan(ctx, req)
	if req.Table.QualifiedName() == p.table {
		plan.Extractor = p.x
	}
	return plan, err
}

// stopPlanner plans x's table with x.
func stopPlanner(p planner, x *stopping) swapPlanner {
	return swapPlanner{p, x.table.QualifiedName(), x}
}

// TestOrgRunReportsTablesTheRunsEndKeptFromStarting: when the run's ctx
// ends (a cancel, a deadline) before a table could start, that table is not
// silently left out: it fails with the ctx's error, and is reported as it
// ends like every other table. A stop is not such an end (Stopped).
func TestOrgRunReportsTablesTheRunsEndKeptFromStarting(t *testing.T) {
	first := &fake{table: table(t, "claims"), n: 2}
	second := &fake{table: table(t, "charges"), n: 2}
	f := newFixture(t, "", first, second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	x := &stopping{fake: first, stop: cancel}
	f.build(stopPlanner(f.planner, x))
	var finished []string
	res := f.eng.RunOrg(ctx, f.org, engine.OrgRun{Finished: func(tr engine.TableResult) { finished = append(finished, tr.Table) }})
	require.False(t, res.Stopped)
	require.Len(t, res.Tables, 2)
	require.Equal(t, "dbo.charges", res.Tables[1].Table)
	require.ErrorIs(t, res.Tables[1].Err, context.Canceled)
	require.ErrorContains(t, res.Tables[1].Err, "not started")
	require.Equal(t, res.RunID, res.Tables[1].RunID)
	require.Empty(t, second.opens, "a table started after the run ended")
	require.Equal(t, 2, res.Failed())
	require.ElementsMatch(t, []string{"dbo.claims", "dbo.charges"}, finished)
}

// busyAfter is a Leaser whose leases are free for the first free calls,
// then held by another runner.
type busyAfter struct {
	free  int32
	calls atomic.Int32
}

func (b *busyAfter) TryLock(context.Context, string, string) (func(), bool, error) {
	if b.calls.Add(1) > b.free {
		return nil, false, nil
	}
	return func() {}, true, nil
}

// TestOrgRunRetryFindingTheLeaseBusyKeepsTheFailure: a table that failed
// with a transient error, whose retry finds its lease taken by another
// runner, is reported with its failure, not as skipped.
func TestOrgRunRetryFindingTheLeaseBusyKeepsTheFailure(t *testing.T) {
	charges := &flaky{fake: &fake{table: table(t, "charges"), n: 2}}
	charges.fails.Store(1)
	f := newFixture(t, "", charges.fake)
	f.build(flakyPlanner{planner: f.planner, flaky: map[string]*flaky{"dbo.charges": charges}}, engine.WithLeases(&busyAfter{free: 1}))
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{Retry: retryFlaky(3)})
	require.Empty(t, res.Skipped)
	require.Len(t, res.Tables, 1)
	require.ErrorIs(t, res.Tables[0].Err, errFlaky)
}

// TestOrgRunTableWaitingForItsRetryLeavesItsSlot: with one table at a time,
// a table waiting out its retry's backoff lets the next table run. The
// next table's start closes Stop, which ends the wait (and the retry); had
// the waiting table kept its slot, the next table would not start until a
// liveness guard, minutes later, closed Stop instead.
func TestOrgRunTableWaitingForItsRetryLeavesItsSlot(t *testing.T) {
	claims := &flaky{fake: &fake{table: table(t, "claims"), n: 2}}
	claims.fails.Store(1)
	charges := &fake{table: table(t, "charges"), n: 2}
	f := newFixture(t, "", claims.fake, charges)
	f.org.ParallelTables = 1
	stop := make(chan struct{})
	closeStop := sync.OnceFunc(func() { close(stop) })
	guard := time.AfterFunc(5*time.Minute, closeStop)
	defer guard.Stop()
	x := &stopping{fake: charges, stop: closeStop}
	f.build(flakyPlanner{planner: stopPlanner(f.planner, x), flaky: map[string]*flaky{"dbo.claims": claims}})
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{Stop: stop,
		Retry: engine.Retry{Attempts: 3, Backoff: func(int) time.Duration { return time.Hour },
			Transient: func(err error) bool { return errors.Is(err, errFlaky) }}})
	require.Len(t, res.Tables, 2, "the second table did not start while the first waited for its retry")
	require.ErrorIs(t, res.Tables[0].Err, errFlaky)
	require.NoError(t, res.Tables[1].Err)
	require.Equal(t, int64(2), res.Tables[1].Totals.Inserted)
}
