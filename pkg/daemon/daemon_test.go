package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/internal/halt"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
)

// TestMain runs the tests against a PostgreSQL store (the org-run tests
// drive the real engine) and fails them when a goroutine outlives them.
func TestMain(m *testing.M) { pgtest.Main(leakChecked{m}) }

type leakChecked struct{ m *testing.M }

func (l leakChecked) Run() int {
	code := l.m.Run()
	if err := goleak.Find(goleak.IgnoreAnyFunction("github.com/ehrsync/ehrsync/pkg/pgserver.Start.func1")); code == 0 && err != nil {
		fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
		return 1
	}
	return code
}

// fakeSyncer runs tables by calling fn, and checks that one org never runs
// twice at once. It keeps the engine's contract for an org run: tables one
// after the other, none started once run.Stop is closed, each attempt
// reported to run.Finished, transient failures retried by run.Retry.
type fakeSyncer struct {
	fn       func(ctx context.Context, org, table string) error
	mu       sync.Mutex
	running  map[string]int
	overlap  atomic.Bool
	active   atomic.Int32
	peak     atomic.Int32
	calls    atomic.Int32
	perTable sync.Map // table -> *atomic.Int32
}

func (f *fakeSyncer) RunOrg(ctx context.Context, org *config.Org, run engine.OrgRun) engine.OrgResult {
	f.mu.Lock()
	if f.running == nil {
		f.running = map[string]int{}
	}
	f.running[org.Name]++
	if f.running[org.Name] > 1 {
		f.overlap.Store(true)
	}
	f.mu.Unlock()
	n := f.active.Add(1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	defer func() {
		f.active.Add(-1)
		f.mu.Lock()
		f.running[org.Name]--
		f.mu.Unlock()
	}()
	f.calls.Add(1)
	res := engine.OrgResult{Org: org.Name}
	if run.Opened != nil {
		run.Opened(ctx, nil)
	}
	tables := run.Tables
	if tables == nil {
		for _, t := range org.Tables {
			tables = append(tables, t.Name)
		}
	}
	for _, t := range tables {
		if halt.Requested(ctx, run.Stop) {
			res.Stopped = true
			break
		}
		for attempt := 0; ; attempt++ {
			c, _ := f.perTable.LoadOrStore(org.Name+"/"+t, new(atomic.Int32))
			c.(*atomic.Int32).Add(1)
			var err error
			if f.fn != nil {
				err = f.fn(ctx, org.Name, t)
			}
			tr := engine.TableResult{Org: org.Name, Table: t, Err: err}
			if run.Finished != nil {
				run.Finished(tr)
			}
			if err == nil || ctx.Err() != nil || attempt >= run.Retry.Attempts || !run.Retry.Transient(err) {
				res.Tables = append(res.Tables, tr)
				break
			}
			run.Retrying(t, attempt+1, run.Retry.Backoff(attempt), err)
		}
	}
	return res
}

func (f *fakeSyncer) count(org, table string) int32 {
	c, ok := f.perTable.Load(org + "/" + table)
	if !ok {
		return 0
	}
	return c.(*atomic.Int32).Load()
}

func testConfig(every time.Duration, orgs ...string) *config.Config {
	cfg := &config.Config{}
	for _, o := range orgs {
		cfg.Orgs = append(cfg.Orgs, config.Org{Name: o, Schedule: config.Schedule{Every: every},
			Tables: []config.Table{{Name: "dbo.a"}, {Name: "dbo.b"}}})
	}
	return cfg
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs d until the returned stop is called; stop returns Run's error.
func start(t *testing.T, d *Daemon) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx, Serve{}) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("daemon did not stop")
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func TestScheduledRunsNeverOverlapAndConcurrencyIsBounded(t *testing.T) {
	f := &fakeSyncer{fn: func(ctx context.Context, _, _ string) error {
		time.Sleep(15 * time.Millisecond) // longer than the interval: overlaps are skipped
		return nil
	}}
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	d, err := New(testConfig(10*time.Millisecond, "a", "b", "c", "d"), f, nil, quiet(), m, Options{Concurrency: 2, Jitter: 5 * time.Millisecond})
	require.NoError(t, err)
	stop := start(t, d)
	require.Eventually(t, func() bool {
		return f.count("d", "dbo.b") >= 3 && testutil.ToFloat64(m.Skipped.WithLabelValues("a", "overlap")) > 0
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())
	require.False(t, f.overlap.Load(), "one org ran twice at once")
	require.LessOrEqual(t, f.peak.Load(), int32(2), "more orgs ran at once than the concurrency bound")
	require.Positive(t, testutil.ToFloat64(m.Runs.WithLabelValues("a", "ok")))
}

func TestRetriesOnlyTransientErrors(t *testing.T) {
	transient := fmt.Errorf("read chunk 3: %w", syscall.ECONNRESET)
	permanent := errors.New("permission denied somewhere")
	f := &fakeSyncer{fn: func(_ context.Context, _, table string) error {
		if table == "dbo.a" {
			return transient
		}
		return permanent
	}}
	m := NewMetrics(nil)
	d, err := New(testConfig(time.Hour, "a"), f, nil, quiet(), m, Options{Retries: 2, Backoff: time.Millisecond, MaxBackoff: 2 * time.Millisecond})
	require.NoError(t, err)
	start(t, d)
	_, err = d.Trigger("a", nil, false, "tester")
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		s := d.Status()[0]
		return s.LastRun != nil && s.State == "idle"
	}, 5*time.Second, time.Millisecond)
	require.Equal(t, int32(3), f.count("a", "dbo.a"), "a transient error is retried Retries times")
	require.Equal(t, int32(1), f.count("a", "dbo.b"), "a permanent error is not retried")
	require.Equal(t, 2.0, testutil.ToFloat64(m.Retries.WithLabelValues("a")))
	s := d.Status()[0]
	require.Equal(t, "failed", s.LastRun.Outcome)
	require.Equal(t, "transient", s.Tables["dbo.a"].ErrorClass)
	require.Equal(t, "unclassified", s.Tables["dbo.b"].ErrorClass)
}

func TestShutdownLetsTheRunInFlightFinish(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var sawCancel atomic.Bool
	f := &fakeSyncer{fn: func(ctx context.Context, _, table string) error {
		if table != "dbo.a" {
			return nil
		}
		close(entered)
		select {
		case <-release:
		case <-ctx.Done():
			sawCancel.Store(true)
		}
		return nil
	}}
	d, err := New(testConfig(time.Hour, "a"), f, nil, quiet(), nil, Options{Grace: 10 * time.Second})
	require.NoError(t, err)
	stop := start(t, d)
	_, err = d.Trigger("a", nil, false, "tester")
	require.NoError(t, err)
	<-entered
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	time.Sleep(20 * time.Millisecond) // the daemon is stopping; the table is still running
	close(release)
	require.NoError(t, <-stopped)
	require.False(t, sawCancel.Load(), "the run was canceled within the grace period")
	require.Zero(t, f.count("a", "dbo.b"), "a stopping daemon started another table")
}

func TestShutdownCancelsAfterTheGracePeriod(t *testing.T) {
	entered := make(chan struct{})
	f := &fakeSyncer{fn: func(ctx context.Context, _, _ string) error {
		close(entered)
		<-ctx.Done()
		return ctx.Err()
	}}
	d, err := New(testConfig(time.Hour, "a"), f, nil, quiet(), nil, Options{Grace: 20 * time.Millisecond})
	require.NoError(t, err)
	stop := start(t, d)
	_, err = d.Trigger("a", []string{"dbo.a"}, false, "tester")
	require.NoError(t, err)
	<-entered
	require.NoError(t, stop())
	require.Equal(t, "canceled", d.Status()[0].LastRun.Outcome)
}

func TestPauseTriggerReload(t *testing.T) {
	f := &fakeSyncer{}
	m := NewMetrics(nil)
	d, err := New(testConfig(10*time.Millisecond, "a"), f, nil, quiet(), m, Options{})
	require.NoError(t, err)
	require.NoError(t, d.Pause("a"))
	start(t, d)
	require.Eventually(t, func() bool { return testutil.ToFloat64(m.Skipped.WithLabelValues("a", "paused")) >= 2 }, 5*time.Second, time.Millisecond)
	require.Zero(t, f.calls.Load(), "a paused org ran on its schedule")
	// A manual trigger runs a paused org.
	_, err = d.Trigger("a", []string{"dbo.b"}, false, "tester")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return f.count("a", "dbo.b") == 1 }, 5*time.Second, time.Millisecond)
	require.Zero(t, f.count("a", "dbo.a"))
	_, err = d.Trigger("a", []string{"dbo.nope"}, false, "tester")
	require.ErrorIs(t, err, ErrUnknownTable)
	_, err = d.Trigger("zz", nil, false, "tester")
	require.ErrorIs(t, err, ErrUnknownOrg)
	_, err = d.Trigger("a", nil, true, "tester")
	require.ErrorIs(t, err, ErrNoBackfill)

	// Reload: org b appears, a goes.
	require.NoError(t, d.Reload(testConfig(10*time.Millisecond, "b")))
	require.Eventually(t, func() bool { return f.count("b", "dbo.a") >= 1 }, 5*time.Second, time.Millisecond)
	require.ErrorIs(t, d.Pause("a"), ErrUnknownOrg)
	bad := testConfig(0, "c")
	require.Error(t, d.Reload(bad))
	require.Len(t, d.Status(), 1)
	require.NoError(t, d.Resume("b"))
}

// The daemon maintains each organization's lake every LakeEvery, the
// paused ones skipped, and stops with the daemon.
func TestTheDaemonMaintainsTheLake(t *testing.T) {
	f := &fakeSyncer{}
	var mu sync.Mutex
	seen := map[string]int{}
	d, err := New(testConfig(time.Hour, "a", "b"), f, nil, quiet(), NewMetrics(prometheus.NewRegistry()), Options{
		LakeEvery: 10 * time.Millisecond,
		LakeMaintenance: func(ctx context.Context, org *config.Org) {
			mu.Lock()
			defer mu.Unlock()
			seen[org.Name]++
		},
	})
	require.NoError(t, err)
	require.NoError(t, d.Pause("b"))
	stop := start(t, d)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["a"] >= 2
	}, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, stop())
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, seen["b"], "a paused organization is not maintained")
}
