package backfill

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// Metrics are the backfills' Prometheus metrics, by org and table.
type Metrics struct {
	BackfillRows  *prometheus.CounterVec // rows applied by backfills
	BackfillTotal *prometheus.GaugeVec   // estimated rows of a running backfill (0: unknown)
	BackfillDone  *prometheus.GaugeVec   // rows applied so far by a running backfill
}

// NewMetrics creates the backfills' metrics and registers them on reg (nil:
// not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		BackfillRows: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "backfill", Name: "rows_total",
			Help: "Rows applied by backfills.",
		}, []string{"org", "table"}),
		BackfillTotal: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "backfill", Name: "estimated_rows",
			Help: "Estimated rows of the table a running backfill re-snapshots (0: unknown).",
		}, []string{"org", "table"}),
		BackfillDone: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "backfill", Name: "progress_rows",
			Help: "Rows applied so far by the running backfill of the table.",
		}, []string{"org", "table"}),
	}
	if reg != nil {
		reg.MustRegister(m.BackfillRows, m.BackfillTotal, m.BackfillDone)
	}
	return m
}

// InitMetrics makes the backfill row counters of org's configured tables
// exist at 0 before any backfill (the daemon calls it as it loads the
// configuration).
func (b *Runner) InitMetrics(org *config.Org) {
	for _, t := range org.Tables {
		q := t.Name
		if tb, ok := b.eng.Catalog().Table(t.Name); ok {
			q = tb.QualifiedName()
		}
		b.opts.Metrics.BackfillRows.WithLabelValues(org.Name, q)
	}
}
