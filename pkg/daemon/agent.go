package daemon

import (
	"context"
	"database/sql"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
)

// AgentHealth is what a probe found of a CDC capture agent: Stale when it
// is stopped or stalled (Reason says why); a Reason without Stale when its
// health cannot be told (no VIEW DATABASE STATE grant, a source that
// cannot report).
type AgentHealth struct {
	Stale  bool
	Reason string
}

// AgentProbe reports the health of the SQL Server CDC capture agent of an
// organization's source, through db, the sync run's own connection pool
// (it must not close it). service.CaptureAgent is the real one; tests pass
// a fake or the in-process CDC model.
type AgentProbe func(ctx context.Context, org *config.Org, db *sql.DB) (AgentHealth, error)

// capturesCDC reports whether org may read a table through SQL Server CDC:
// a SQL Server source with a table whose strategy is cdc or auto.
func capturesCDC(org *config.Org) bool {
	if org.Source.Dialect != config.SQLServer {
		return false
	}
	for _, t := range org.Tables {
		if t.Strategy == config.StrategyCDC || t.Strategy == config.StrategyAuto || t.Strategy == "" {
			return true
		}
	}
	return false
}

// checkAgent polls org's capture agent, on the org's schedule (at the start
// of each of its sync runs, on the run's source connection db), and sets ehrsync_source_capture_agent_up: 1
// when it keeps up, 0 when it is stopped, stalled or failing. When its
// health cannot be told (no VIEW DATABASE STATE grant, a source that cannot
// report) the gauge is removed rather than guessed; an unreachable source
// leaves it as it was (ehrsync_source_up says so).
func (d *Daemon) checkAgent(ctx context.Context, org *config.Org, db *sql.DB) {
	if d.opts.Agent == nil || !capturesCDC(org) {
		return
	}
	h, err := d.opts.Agent(ctx, org, db)
	log := d.log.With("org", org.Name)
	switch {
	case err != nil:
		log.Warn("capture agent not checked", "class", engine.Class(err))
	case h.Stale:
		d.metrics.CaptureAgentUp.WithLabelValues(org.Name).Set(0)
		log.Warn("the CDC capture agent is stopped or stalled: changes are not harvested", "why", h.Reason)
	case h.Reason != "":
		d.metrics.CaptureAgentUp.DeleteLabelValues(org.Name)
		log.Debug("capture agent health unknown", "why", h.Reason)
	default:
		d.metrics.CaptureAgentUp.WithLabelValues(org.Name).Set(1)
	}
}
