package daemon

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// These tests drive the real engine through the daemon, with extractors
// that read nothing from the source (a PostgreSQL database the engine
// connects to all the same) and a real store.

// orgRunFixture is a daemon over the real engine for one org with tables
// dbo.a and dbo.b and parallel_tables 2, whose source opens are counted.
type orgRunFixture struct {
	d       *Daemon
	stop    func() error // stops the daemon
	metrics *Metrics
	opens   atomic.Int32
	runIDs  runIDs
}

func newOrgRunFixture(t *testing.T, p engine.Planner, opts Options) *orgRunFixture {
	t.Helper()
	return newLoggedOrgRunFixture(t, p, opts, quiet())
}

// newLoggedOrgRunFixture is newOrgRunFixture with the engine and the
// daemon logging to log.
func newLoggedOrgRunFixture(t *testing.T, p engine.Planner, opts Options, log *slog.Logger) *orgRunFixture {
	t.Helper()
	store := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(context.Background(), store))
	positions := watermarks.NewStore(store)
	var tables []*schemas.Table
	org := config.Org{Name: "st-mary", Schedule: config.Schedule{Every: time.Hour}, ParallelTables: 2}
	for _, name := range []string{"a", "b"} {
		tb := testTable(t, name)
		tables = append(tables, tb)
		org.Tables = append(org.Tables, config.Table{Name: tb.QualifiedName(), Strategy: config.StrategySnapshot, DeletePolicy: config.DeleteHard})
	}
	cat, err := schemas.NewCatalog(tables...)
	require.NoError(t, err)
	u, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	port, _ := strconv.Atoi(u.Port())
	org.Source = config.Source{Dialect: config.Postgres, Host: u.Hostname(), Port: port, Database: u.Path[1:],
		User: u.User.Username(), TLS: config.TLS{Mode: config.TLSDisable}}
	f := &orgRunFixture{metrics: NewMetrics(nil)}
	eng := engine.New(engine.Sink(sink.New(store, positions)), positions, p, cat, engine.WithActor("daemon"), engine.WithAudit(&f.runIDs), engine.WithLog(log),
		engine.WithSourceOpener(func(ctx context.Context, src config.Source) (*sql.DB, error) {
			f.opens.Add(1)
			return source.Open(ctx, src)
		}))
	f.d, err = New(&config.Config{Orgs: []config.Org{org}}, eng, nil, log, f.metrics, opts)
	require.NoError(t, err)
	f.stop = start(t, f.d)
	return f
}

// run triggers a sync of the org and waits for it to end.
func (f *orgRunFixture) run(t *testing.T) RunStatus {
	t.Helper()
	runs := func() float64 {
		return testutil.ToFloat64(f.metrics.Runs.WithLabelValues("st-mary", "ok")) + testutil.ToFloat64(f.metrics.Runs.WithLabelValues("st-mary", "failed"))
	}
	before := runs()
	_, err := f.d.Trigger("st-mary", nil, false, "tester")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return runs() > before }, time.Minute, 5*time.Millisecond)
	return *f.d.Status()[0].LastRun
}

func testTable(t *testing.T, name string) *schemas.Table {
	t.Helper()
	id, err := schemas.ParseType(schemas.SQLServer, "int")
	require.NoError(t, err)
	return &schemas.Table{Schema: "dbo", Name: name, Dialect: schemas.SQLServer, Key: []string{"id"},
		Columns: []schemas.Column{{Name: "id", Type: id}}}
}

// runIDs is an auditor that keeps the run id of every table attempt.
type runIDs struct {
	mu  sync.Mutex
	ids map[string][]string // table -> run ids, one per attempt
}

func (r *runIDs) TableRun(_ context.Context, _, runID string, _ []string, res engine.TableResult) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ids == nil {
		r.ids = map[string][]string{}
	}
	r.ids[res.Table] = append(r.ids[res.Table], runID)
	return nil
}

func (r *runIDs) of(table string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids[table]...)
}

// planFunc plans every table with one extractor.
type planFunc func(table string) extractors.Extractor

func (p planFunc) Plan(_ context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	return extractors.Plan{Strategy: config.StrategySnapshot, Extractor: p(req.Table.QualifiedName())}, nil
}

// oneChunk is an extractor whose run yields one empty snapshot chunk,
// after calling read (when set) with the run's ctx; read's error fails it.
type oneChunk struct {
	read func(ctx context.Context) error
}

func (x oneChunk) Open(context.Context, watermarks.Position) (extractors.Run, error) {
	return &oneChunkRun{read: x.read}, nil
}

type oneChunkRun struct {
	read func(ctx context.Context) error
	done bool
}

func (r *oneChunkRun) Next(ctx context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	r.done = true
	if r.read != nil {
		if err := r.read(ctx); err != nil {
			return extractors.Chunk{}, err
		}
	}
	return extractors.Chunk{To: watermarks.Snapshot{}, Reason: watermarks.ReasonSnapshot}, nil
}

func (r *oneChunkRun) Close() error { return nil }

// TestDaemonRunsTheTablesOfAnOrgAtOnce: with parallel_tables 2, the
// daemon's run of an org reads its two tables at once. Each table's read
// waits until the other's has begun (or the test ends), so a daemon that
// ran them one after the other never gets both reading.
func TestDaemonRunsTheTablesOfAnOrgAtOnce(t *testing.T) {
	var reading atomic.Int32
	both := make(chan struct{})
	var bothOnce sync.Once
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before the daemon stops: a failed test does not hang
	read := func(ctx context.Context) error {
		if reading.Add(1) == 2 {
			bothOnce.Do(func() { close(both) })
		}
		select {
		case <-both:
		case <-release:
		case <-ctx.Done():
			return ctx.Err()
		}
		return nil
	}
	f := newOrgRunFixture(t, planFunc(func(string) extractors.Extractor { return oneChunk{read: read} }), Options{})
	_, err := f.d.Trigger("st-mary", nil, false, "tester")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return reading.Load() == 2 }, time.Minute, 5*time.Millisecond,
		"the org's two tables never read at once")
	require.Eventually(t, func() bool { return testutil.ToFloat64(f.metrics.Runs.WithLabelValues("st-mary", "ok")) == 1 },
		time.Minute, 5*time.Millisecond)
	s := f.d.Status()[0]
	require.Equal(t, "ok", s.Tables["dbo.a"].Outcome)
	require.Equal(t, "ok", s.Tables["dbo.b"].Outcome)
}

// TestOrgRunOpensTheSourceOnceAndRetriesInside: a daemon run of an org
// connects to its source once (one pool: one SSH tunnel under via: ssh),
// and a table that fails with a transient error is retried inside that
// run: on the same pool, under the same run id, counted as a retry of the
// org, its status updated at each attempt.
func TestOrgRunOpensTheSourceOnceAndRetriesInside(t *testing.T) {
	var failed atomic.Bool
	var statusAtRetry atomic.Value
	var f *orgRunFixture
	p := planFunc(func(table string) extractors.Extractor {
		if table != "dbo.b" {
			return oneChunk{}
		}
		return oneChunk{read: func(context.Context) error {
			if failed.CompareAndSwap(false, true) {
				return fmt.Errorf("read: %w", syscall.ECONNRESET)
			}
			statusAtRetry.Store(f.d.Status()[0].Tables["dbo.b"].Outcome)
			return nil
		}}
	})
	f = newOrgRunFixture(t, p, Options{Retries: 2, Backoff: time.Millisecond, MaxBackoff: time.Millisecond})
	last := f.run(t)
	require.Equal(t, "ok", last.Outcome)
	require.Equal(t, int32(1), f.opens.Load(), "source connections opened by one org run")
	require.Equal(t, "failed", statusAtRetry.Load(), "the failed attempt was not in the status before the retry")
	ids := f.runIDs.of("dbo.b")
	require.Len(t, ids, 2, "dbo.b's attempts")
	require.Equal(t, ids[0], ids[1], "the retry ran in another run")
	require.Equal(t, f.runIDs.of("dbo.a"), ids[:1], "the org's tables ran in different runs")
	require.Equal(t, 1.0, testutil.ToFloat64(f.metrics.Retries.WithLabelValues("st-mary")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.metrics.Errors.WithLabelValues("st-mary", "dbo.b", "transient")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.metrics.SourceUp.WithLabelValues("st-mary")))

	// Each run opens the source once more.
	f.run(t)
	require.Equal(t, int32(2), f.opens.Load())
}
