package engine

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ehrsync/ehrsync/pkg/lake"
)

// Metrics are the engine's Prometheus metrics. Labels are bounded: org,
// table, strategy, operation, outcome; never keys, values or error text.
type Metrics struct {
	Rows             *prometheus.CounterVec   // change rows applied, by operation
	TableRuns        *prometheus.CounterVec   // table runs by outcome: ok, failed
	ExpiredPositions *prometheus.CounterVec   // positions found expired at the source
	RunDuration      *prometheus.HistogramVec // one table's run
	LastSuccess      *prometheus.GaugeVec     // unix time of the last successful run
	QueryDuration    *prometheus.HistogramVec // one chunk's read from the source
	PositionTime     *prometheus.GaugeVec     // the source time the store is complete up to

	LakeCommits  *prometheus.CounterVec   // Iceberg commits of the change lake
	LakeRows     *prometheus.CounterVec   // change rows appended to the lake
	LakeFiles    *prometheus.CounterVec   // data files added to the lake
	LakeBytes    *prometheus.CounterVec   // their bytes
	LakeFailures *prometheus.CounterVec   // lake flushes that failed
	LakeCommit   *prometheus.HistogramVec // one lake commit: files written and the catalog swapped
}

// NewMetrics creates the engine's metrics and registers them on reg (nil:
// not registered, for tests and one-shot commands).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "sync", Name: "rows_total",
			Help: "Change rows applied to the store, by operation (insert, update, delete, unchanged).",
		}, []string{"org", "table", "operation"}),
		TableRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "sync", Name: "table_runs_total",
			Help: "Table runs by outcome: ok, failed or canceled (by an operator or a shutdown); an expired position is counted in expired_positions_total as well.",
		}, []string{"org", "table", "outcome"}),
		ExpiredPositions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "sync", Name: "expired_positions_total",
			Help: "Saved positions the source could no longer serve (CDC cleanup, Change Tracking min valid version); each means a re-snapshot or a failed table.",
		}, []string{"org", "table"}),
		RunDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ehrsync", Subsystem: "sync", Name: "table_run_duration_seconds",
			Help:    "Duration of one table's run.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"org", "table", "strategy"}),
		LastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "sync", Name: "last_success_timestamp_seconds",
			Help: "Unix time of the table's last successful run.",
		}, []string{"org", "table"}),
		QueryDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ehrsync", Subsystem: "source", Name: "query_duration_seconds",
			Help:    "Duration of one chunk's read from the source (the query and building its batch).",
			Buckets: prometheus.ExponentialBuckets(0.005, 3, 10),
		}, []string{"org", "table", "strategy"}),
		PositionTime: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "sync", Name: "position_time_seconds",
			Help: "Unix time up to which the store holds every change committed at the source: the start of the table's last successful run (its window is fixed after that; for CDC, less the capture agent's latency). Data freshness is time() minus this.",
		}, []string{"org", "table"}),
		LakeCommits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "lake", Name: "commits_total",
			Help: "Iceberg commits to the change lake.",
		}, []string{"org", "table"}),
		LakeRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "lake", Name: "rows_total",
			Help: "Change rows appended to the change lake.",
		}, []string{"org", "table"}),
		LakeFiles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "lake", Name: "files_total",
			Help: "Parquet data files added to the change lake.",
		}, []string{"org", "table"}),
		LakeBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "lake", Name: "bytes_total",
			Help: "Bytes of the Parquet data files added to the change lake.",
		}, []string{"org", "table"}),
		LakeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "lake", Name: "flush_failures_total",
			Help: "Lake flushes that failed; their changes wait in the table's outbox for the next.",
		}, []string{"org", "table"}),
		LakeCommit: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ehrsync", Subsystem: "lake", Name: "commit_duration_seconds",
			Help:    "Duration of one lake commit: its Parquet files written and the catalog swapped.",
			Buckets: prometheus.ExponentialBuckets(0.01, 4, 10),
		}, []string{"org", "table"}),
	}
	if reg != nil {
		reg.MustRegister(m.Rows, m.TableRuns, m.ExpiredPositions, m.RunDuration, m.LastSuccess, m.QueryDuration, m.PositionTime,
			m.LakeCommits, m.LakeRows, m.LakeFiles, m.LakeBytes, m.LakeFailures, m.LakeCommit)
	}
	return m
}

// outcomes are the outcomes TableRuns counts; operations those Rows does.
var (
	outcomes   = []string{"ok", "failed", "canceled"}
	operations = []string{"insert", "update", "delete", "unchanged"}
)

// initLabels makes the counters of (org, table) exist at 0, every outcome and
// operation, before any run.
func (m *Metrics) initLabels(org, table string) {
	for _, o := range outcomes {
		m.TableRuns.WithLabelValues(org, table, o)
	}
	for _, op := range operations {
		m.Rows.WithLabelValues(org, table, op)
	}
	m.ExpiredPositions.WithLabelValues(org, table)
}

// initLake makes the lake counters of (org, table) exist at 0.
func (m *Metrics) initLake(org, table string) {
	for _, c := range []*prometheus.CounterVec{m.LakeCommits, m.LakeRows, m.LakeFiles, m.LakeBytes, m.LakeFailures} {
		c.WithLabelValues(org, table)
	}
}

// observeLake counts one lake flush.
func (m *Metrics) observeLake(org, table string, r lake.Result, failed bool) {
	m.LakeCommits.WithLabelValues(org, table).Add(float64(r.Commits))
	m.LakeRows.WithLabelValues(org, table).Add(float64(r.Rows))
	m.LakeFiles.WithLabelValues(org, table).Add(float64(r.Files))
	m.LakeBytes.WithLabelValues(org, table).Add(float64(r.FileBytes))
	for _, d := range r.CommitTimes {
		m.LakeCommit.WithLabelValues(org, table).Observe(d.Seconds())
	}
	if failed {
		m.LakeFailures.WithLabelValues(org, table).Inc()
	}
}

func (m *Metrics) observe(r TableResult, outcome string) {
	m.TableRuns.WithLabelValues(r.Org, r.Table, outcome).Inc()
	m.RunDuration.WithLabelValues(r.Org, r.Table, r.Strategy).Observe(r.Duration.Seconds())
	if outcome == "ok" {
		m.LastSuccess.WithLabelValues(r.Org, r.Table).SetToCurrentTime()
		if !r.Started.IsZero() {
			m.PositionTime.WithLabelValues(r.Org, r.Table).Set(float64(r.Started.UnixNano()) / 1e9)
		}
	}
	for op, n := range map[string]int64{"insert": r.Totals.Inserted, "update": r.Totals.Updated, "delete": r.Totals.Deleted, "unchanged": r.Totals.Unchanged} {
		if n > 0 {
			m.Rows.WithLabelValues(r.Org, r.Table, op).Add(float64(n))
		}
	}
}
