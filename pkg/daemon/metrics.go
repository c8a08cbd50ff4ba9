package daemon

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the daemon's Prometheus metrics. Labels are bounded: org,
// table, outcome, reason, class (error class codes, never error text).
type Metrics struct {
	Runs        *prometheus.CounterVec   // org runs by outcome
	RunDuration *prometheus.HistogramVec // one org run, retries included
	InFlight    prometheus.Gauge         // org runs in progress
	Skipped     *prometheus.CounterVec   // scheduled runs not started, by reason
	Retries     *prometheus.CounterVec   // table or org retries after a transient error
	Errors      *prometheus.CounterVec   // failed table or org runs, by error class
	SourceUp    *prometheus.GaugeVec     // 1 when the org's last connection to its source succeeded
	// CaptureAgentUp is 1 when the org's SQL Server CDC capture agent keeps
	// up, 0 when it is stopped or stalled; absent when unknown.
	CaptureAgentUp *prometheus.GaugeVec
	NextRun        *prometheus.GaugeVec   // unix time of the org's next scheduled run
	Interval       *prometheus.GaugeVec   // seconds between the org's next two scheduled runs (staleness alerts)
	Paused         *prometheus.GaugeVec   // 1 while an operator has paused the org
	Schedules      prometheus.Gauge       // orgs with a loaded schedule
	Reloads        *prometheus.CounterVec // configuration reloads by outcome
}

// NewMetrics creates the daemon's metrics and registers them on reg (nil:
// not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "runs_total",
			Help: "Organization runs by outcome: ok, failed (some table failed), canceled.",
		}, []string{"org", "outcome"}),
		RunDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "run_duration_seconds",
			Help:    "Duration of one organization run, retries included.",
			Buckets: prometheus.ExponentialBuckets(0.1, 4, 10),
		}, []string{"org"}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "runs_in_flight",
			Help: "Organization runs in progress.",
		}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "skipped_runs_total",
			Help: "Scheduled runs not started: overlap (the previous run is still going) or paused.",
		}, []string{"org", "reason"}),
		Retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "retries_total",
			Help: "Retries after a transient error (timeouts, deadlocks, dropped connections).",
		}, []string{"org"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "sync", Name: "errors_total",
			Help: "Failed table runs (table \"*\": the organization's source) by error class.",
		}, []string{"org", "table", "class"}),
		SourceUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "source", Name: "up",
			Help: "1 when the organization's last connection to its source (through its relay, tunnel or directly) succeeded, 0 when it failed.",
		}, []string{"org"}),
		CaptureAgentUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "source", Name: "capture_agent_up",
			Help: "1 when the organization's SQL Server CDC capture job keeps up, 0 when it is stopped, stalled or failing (checked at each scheduled run; absent when it cannot be told).",
		}, []string{"org"}),
		NextRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "next_run_timestamp_seconds",
			Help: "Unix time of the organization's next scheduled run.",
		}, []string{"org"}),
		Interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "schedule_interval_seconds",
			Help: "Seconds between the organization's next two scheduled runs; data is stale after a few of them.",
		}, []string{"org"}),
		Paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "paused",
			Help: "1 while an operator has paused the organization's schedule.",
		}, []string{"org"}),
		Schedules: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "schedules",
			Help: "Organizations with a loaded schedule.",
		}),
		Reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "daemon", Name: "config_reloads_total",
			Help: "Configuration reloads (SIGHUP) by outcome: ok, failed (the old configuration stays).",
		}, []string{"outcome"}),
	}
	for _, o := range []string{"ok", "failed"} {
		m.Reloads.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.Runs, m.RunDuration, m.InFlight, m.Skipped, m.Retries, m.Errors, m.SourceUp, m.CaptureAgentUp, m.NextRun, m.Interval,
			m.Paused, m.Schedules, m.Reloads)
	}
	return m
}
