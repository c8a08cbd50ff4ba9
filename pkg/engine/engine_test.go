package engine_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func table(t *testing.T, name string) *schemas.Table {
	t.Helper()
	id, err := schemas.ParseType(schemas.SQLServer, "int")
	require.NoError(t, err)
	v, err := schemas.ParseType(schemas.SQLServer, "varchar(10)")
	require.NoError(t, err)
	return &schemas.Table{Schema: "dbo", Name: name, Dialect: schemas.SQLServer, Key: []string{"id"},
		Columns: []schemas.Column{{Name: "id", Type: id}, {Name: "v", Type: v, Nullable: true}}}
}

// fake is an extractor that yields rows 1..n as one snapshot chunk from a
// nil position, and from a saved position either nothing (an idle table)
// or, once when expire is set, ErrExpired. It reports deletes when sees is
// set.
type fake struct {
	table  *schemas.Table
	n      int
	expire bool
	fail   error
	sees   bool
	opens  []watermarks.Position
}

func (f *fake) SeesDeletes() bool { return f.sees }

func (f *fake) Open(_ context.Context, pos watermarks.Position) (extractors.Run, error) {
	f.opens = append(f.opens, pos)
	if f.fail != nil {
		return nil, f.fail
	}
	if pos != nil && f.expire {
		f.expire = false // the re-snapshot's new position is readable
		return nil, &extractors.ExpiredError{Table: f.table.QualifiedName(), Reason: "saved LSN below the capture instance's minimum"}
	}
	return &fakeRun{f: f, snapshot: pos == nil}, nil
}

type fakeRun struct {
	f        *fake
	snapshot bool
	done     bool
}

func (r *fakeRun) Next(context.Context) (extractors.Chunk, error) {
	if r.done || !r.snapshot {
		return extractors.Chunk{}, io.EOF
	}
	r.done = true
	sc, err := schemas.ChangeSchema(r.f.table)
	if err != nil {
		return extractors.Chunk{}, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for i := 1; i <= r.f.n; i++ {
		b.Field(0).(*array.Int32Builder).Append(int32(i))
		b.Field(1).(*array.StringBuilder).Append("v" + strconv.Itoa(i))
		b.Field(2).(*array.Int8Builder).Append(int8(schemas.OpInsert))
		b.Field(3).(*array.Int64Builder).Append(int64(i))
		b.Field(4).AppendNull()
	}
	return extractors.Chunk{Batch: b.NewRecordBatch(), Reason: watermarks.ReasonSnapshot,
		To: watermarks.Cursor{Column: "id", Value: watermarks.Int64(int64(r.f.n))}}, nil
}

func (r *fakeRun) Close() error { return nil }

type planner map[string]*fake

// Plan gives each table its fake, and a key reader that reads the fake's
// current rows from scratch, as a keys-only snapshot does.
func (p planner) Plan(_ context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	f := p[req.Table.QualifiedName()]
	return extractors.Plan{Strategy: config.StrategySnapshot, Extractor: f, Keys: keysOf{f}}, nil
}

type keysOf struct{ f *fake }

func (k keysOf) Open(context.Context, watermarks.Position) (extractors.Run, error) {
	return &fakeRun{f: k.f, snapshot: true}, nil
}

type fixture struct {
	eng     *engine.Engine
	store   *pgxpool.Pool
	srcURL  string
	org     *config.Org
	reg     *prometheus.Registry
	planner planner
	// parts rebuilds the engine (build).
	sink      *sink.Sink
	positions *watermarks.Store
	catalog   *schemas.Catalog
	metrics   *engine.Metrics
}

// build replaces the fixture's engine with one planning with p, with opts
// besides the fixture's log, actor and metrics.
func (f *fixture) build(p engine.Planner, opts ...engine.Option) {
	base := []engine.Option{engine.WithLog(slog.New(slog.NewTextHandler(io.Discard, nil))), engine.WithActor("test"), engine.WithMetrics(f.metrics)}
	f.eng = engine.New(engine.Sink(f.sink), f.positions, p, f.catalog, append(base, opts...)...)
}

func newFixture(t *testing.T, policy config.ExpiryPolicy, fakes ...*fake) *fixture {
	t.Helper()
	store := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(context.Background(), store))
	positions := watermarks.NewStore(store)
	var tables []*schemas.Table
	p := planner{}
	org := &config.Org{Name: "st-mary"}
	for _, f := range fakes {
		tables = append(tables, f.table)
		p[f.table.QualifiedName()] = f
		org.Tables = append(org.Tables, config.Table{Name: f.table.QualifiedName(), Strategy: config.StrategySnapshot,
			DeletePolicy: config.DeleteHard, OnExpired: policy})
	}
	cat, err := schemas.NewCatalog(tables...)
	require.NoError(t, err)
	// The fakes ignore the source, but the engine connects to it.
	srcURL := pgtest.URL(t)
	u, err := url.Parse(srcURL)
	require.NoError(t, err)
	port, _ := strconv.Atoi(u.Port())
	org.Source = config.Source{Dialect: config.Postgres, Host: u.Hostname(), Port: port, Database: u.Path[1:],
		User: u.User.Username(), TLS: config.TLS{Mode: config.TLSDisable}}
	reg := prometheus.NewRegistry()
	f := &fixture{org: org, reg: reg, planner: p, store: store, srcURL: srcURL,
		sink: sink.New(store, positions), positions: positions, catalog: cat, metrics: engine.NewMetrics(reg)}
	f.build(p)
	return f
}

func TestExpiredPositionIsReSnapshottedByDefault(t *testing.T) {
	claims := &fake{table: table(t, "claims"), n: 3}
	f := newFixture(t, config.ExpiredResnapshot, claims)
	ctx := context.Background()
	first := f.eng.SyncOrg(ctx, f.org, nil)
	require.NoError(t, first.Err)
	require.Zero(t, first.Failed())
	require.Len(t, claims.opens, 2, "the snapshot's hand-off is followed by an incremental read")

	// While the position was unreadable, row 3 was deleted at the source.
	claims.n, claims.expire = 2, true
	second := f.eng.SyncOrg(ctx, f.org, nil)
	require.Zero(t, second.Failed(), "%v", second.Tables[0].Err)
	require.True(t, second.Tables[0].Expired)
	require.Equal(t, int64(2), second.Tables[0].Totals.Rows, "the table was not snapshotted again")
	require.NotNil(t, second.Tables[0].Reconciled, "no reconciliation after the re-snapshot")
	require.Equal(t, int64(1), second.Tables[0].Reconciled.Deleted, "the row deleted during the gap stayed in the store")
	require.Len(t, claims.opens, 5)
	require.NotNil(t, claims.opens[2])
	require.Nil(t, claims.opens[3], "the re-snapshot did not start from scratch")
	require.Equal(t, 1.0, testutil.ToFloat64(f.eng.Metrics().ExpiredPositions.WithLabelValues("st-mary", "dbo.claims")))

	hist, err := f.eng.Positions().History(ctx, "st-mary", "dbo.claims", 10)
	require.NoError(t, err)
	var resets int
	for _, h := range hist {
		if h.Reason == watermarks.ReasonReset {
			resets++
			require.Contains(t, h.Note, "expired")
		}
	}
	require.Equal(t, 1, resets, "the reset is not in the position history")
}

// A table with reconcile_every is reconciled only when its extractor does
// not report deletes itself.
func TestPeriodicReconciliationIsForExtractorsBlindToDeletes(t *testing.T) {
	for _, c := range []struct {
		name string
		sees bool
	}{{name: "blind to deletes", sees: false}, {name: "sees deletes", sees: true}} {
		t.Run(c.name, func(t *testing.T) {
			claims := &fake{table: table(t, "claims"), n: 3, sees: c.sees}
			f := newFixture(t, config.ExpiredResnapshot, claims)
			f.org.Tables[0].ReconcileEvery = time.Nanosecond
			ctx := context.Background()
			first := f.eng.SyncOrg(ctx, f.org, nil)
			require.NoError(t, first.Err)
			require.Zero(t, first.Failed())

			claims.n = 2 // row 3 was deleted at the source
			second := f.eng.SyncOrg(ctx, f.org, nil)
			require.Zero(t, second.Failed(), "%v", second.Tables[0].Err)
			if c.sees {
				require.Nil(t, second.Tables[0].Reconciled, "a table whose extractor reports deletes was reconciled")
				return
			}
			require.NotNil(t, second.Tables[0].Reconciled, "a table blind to deletes was not reconciled")
			require.Equal(t, int64(1), second.Tables[0].Reconciled.Deleted)
		})
	}
}

func TestExpiredPositionFailsTheTableWhenThePolicySaysSo(t *testing.T) {
	claims := &fake{table: table(t, "claims"), n: 2}
	f := newFixture(t, config.ExpiredFail, claims)
	ctx := context.Background()
	require.Zero(t, f.eng.SyncOrg(ctx, f.org, nil).Failed())
	claims.expire = true
	before, err := f.eng.Positions().Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)

	res := f.eng.SyncOrg(ctx, f.org, nil)
	require.Equal(t, 1, res.Failed())
	require.ErrorIs(t, res.Tables[0].Err, extractors.ErrExpired)
	require.ErrorContains(t, res.Tables[0].Err, "on_expired: fail")
	after, err := f.eng.Positions().Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.Equal(t, before, after, "a failed table's position moved")
	require.Equal(t, 1.0, testutil.ToFloat64(f.eng.Metrics().ExpiredPositions.WithLabelValues("st-mary", "dbo.claims")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.eng.Metrics().TableRuns.WithLabelValues("st-mary", "dbo.claims", "failed")))
}

func TestOneTablesFailureDoesNotStopTheOthers(t *testing.T) {
	broken := &fake{table: table(t, "charges"), fail: errors.New("permission denied")}
	claims := &fake{table: table(t, "claims"), n: 4}
	f := newFixture(t, config.ExpiredResnapshot, broken, claims)
	res := f.eng.SyncOrg(context.Background(), f.org, nil)
	require.Equal(t, 1, res.Failed())
	require.ErrorContains(t, res.Tables[0].Err, "permission denied")
	require.NoError(t, res.Tables[1].Err)
	require.Equal(t, int64(4), res.Tables[1].Totals.Inserted)
	require.Equal(t, 4.0, testutil.ToFloat64(f.eng.Metrics().Rows.WithLabelValues("st-mary", "dbo.claims", "insert")))
	require.Equal(t, 1.0, testutil.ToFloat64(f.eng.Metrics().TableRuns.WithLabelValues("st-mary", "dbo.charges", "failed")))

	// Freshness: the synced table's position time is its run's start; the
	// failed table has none. Every source read was timed.
	synced := testutil.ToFloat64(f.eng.Metrics().PositionTime.WithLabelValues("st-mary", "dbo.claims"))
	require.InDelta(t, float64(res.Tables[1].Started.UnixNano())/1e9, synced, 0.001)
	require.Equal(t, 1, testutil.CollectAndCount(f.eng.Metrics().PositionTime), "a failed table got a position time")
	require.Equal(t, 1, testutil.CollectAndCount(f.eng.Metrics().QueryDuration), "the source reads were not timed")
}

// failingAuditor refuses every record, as a store whose audit INSERT was
// revoked does.
type failingAuditor struct{ runs int }

var errAuditRefused = errors.New("audit record not written to ehrsync.audit: permission denied")

func (a *failingAuditor) TableRun(context.Context, string, string, []string, engine.TableResult) error {
	a.runs++
	return errAuditRefused
}

// TestAuditFailureFailsTheRun: a table run whose audit record cannot be
// written fails, is counted failed and says why, though its rows are in
// (it used to pass with a log line).
func TestAuditFailureFailsTheRun(t *testing.T) {
	claims := &fake{table: table(t, "claims"), n: 3}
	f := newFixture(t, config.ExpiredResnapshot, claims)
	a := &failingAuditor{}
	f.build(f.planner, engine.WithAudit(a))
	res := f.eng.SyncOrg(context.Background(), f.org, nil)
	require.Equal(t, 1, a.runs)
	require.Equal(t, 1, res.Failed())
	require.ErrorIs(t, res.Tables[0].Err, errAuditRefused)
	require.Equal(t, int64(3), res.Tables[0].Totals.Rows, "the rows were synced")
	require.Equal(t, 1.0, testutil.ToFloat64(f.eng.Metrics().TableRuns.WithLabelValues("st-mary", "dbo.claims", "failed")))
	require.Zero(t, testutil.ToFloat64(f.eng.Metrics().TableRuns.WithLabelValues("st-mary", "dbo.claims", "ok")))

	// A run that failed anyway keeps its own error, and the audit's.
	claims.expire = true
	f.org.Tables[0].OnExpired = config.ExpiredFail
	res = f.eng.SyncOrg(context.Background(), f.org, nil)
	require.ErrorIs(t, res.Tables[0].Err, extractors.ErrExpired)
	require.ErrorIs(t, res.Tables[0].Err, errAuditRefused)
}

// TestUndeclaredPracticeTableIsRefused: an organization that filters by
// practice never reads a table that neither names its practice column nor
// declares it has none (its rows could be any practice's); a table that
// names it, or declares none, runs.
func TestUndeclaredPracticeTableIsRefused(t *testing.T) {
	silent := &fake{table: table(t, "charges"), n: 3}
	shared := &fake{table: table(t, "payers"), n: 2}
	shared.table.Shared = true
	named := &fake{table: table(t, "claims"), n: 4}
	named.table.Practice = "v"
	f := newFixture(t, config.ExpiredResnapshot, silent, shared, named)
	f.org.Source.PracticeIDs = []string{"0001"}
	res := f.eng.SyncOrg(context.Background(), f.org, nil)
	require.Equal(t, 1, res.Failed())
	require.ErrorIs(t, res.Tables[0].Err, schemas.ErrPracticeUndeclared)
	require.Empty(t, silent.opens, "the refused table was read")
	require.NoError(t, res.Tables[1].Err)
	require.NoError(t, res.Tables[2].Err)
	require.Equal(t, int64(2), res.Tables[1].Totals.Inserted)
}
