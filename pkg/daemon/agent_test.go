package daemon

import (
	"context"
	"database/sql"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/cdc/cdcmodel"
	"github.com/ehrsync/ehrsync/pkg/config"
)

// TestCaptureAgentGauge: at each sync run of an org with a SQL Server CDC
// source the daemon checks its capture agent (here the in-process CDC
// model, through cdc.CheckAgent) and exports
// ehrsync_source_capture_agent_up: 1 while it harvests, 0 once it is
// stopped with commits waiting, 1 again when restarted. An org with a
// PostgreSQL source is never probed; an unknown health removes the gauge.
func TestCaptureAgentGauge(t *testing.T) {
	m := cdcmodel.New()
	m.CreateTable(cdcmodel.TableDef{Schema: "dbo", Name: "a", Columns: []string{"id"}, Key: []string{"id"}})
	m.EnableCDC("dbo", "a", "dbo_a")
	commit := func(id int64) {
		tx := m.Begin()
		tx.Insert("dbo", "a", cdcmodel.Row{"id": id})
		tx.Commit()
	}
	commit(1)

	var unknown atomic.Bool
	probed := map[string]*atomic.Int32{"cdc": {}, "pg": {}}
	probe := func(ctx context.Context, org *config.Org, _ *sql.DB) (AgentHealth, error) {
		probed[org.Name].Add(1)
		var src cdc.Source = m
		if unknown.Load() {
			src = struct{ cdc.Source }{m} // cannot report
		}
		h, err := cdc.CheckAgent(ctx, src, time.Minute)
		return AgentHealth{Stale: h.Stale, Reason: h.Reason}, err
	}
	cfg := testConfig(time.Hour, "cdc", "pg")
	cfg.Orgs[0].Source.Dialect = config.SQLServer
	cfg.Orgs[0].Tables[0].Strategy = config.StrategyCDC
	cfg.Orgs[1].Source.Dialect = config.Postgres
	metrics := NewMetrics(nil)
	d, err := New(cfg, &fakeSyncer{}, nil, quiet(), metrics, Options{Agent: probe})
	require.NoError(t, err)
	start(t, d)
	runs := 0
	run := func(org string) {
		t.Helper()
		runs++
		want := runs
		_, err := d.Trigger(org, nil, false, "tester")
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			return int(testutil.ToFloat64(metrics.Runs.WithLabelValues("cdc", "ok"))+testutil.ToFloat64(metrics.Runs.WithLabelValues("pg", "ok"))) == want
		}, 5*time.Second, time.Millisecond)
	}
	up := func() float64 { return testutil.ToFloat64(metrics.CaptureAgentUp.WithLabelValues("cdc")) }

	run("cdc")
	require.Equal(t, 1.0, up(), "a harvesting agent is up")

	m.StopAgent()
	commit(2)
	run("cdc")
	require.Equal(t, 0.0, up(), "a stopped agent with commits waiting is down")

	m.StartAgent()
	run("cdc")
	require.Equal(t, 1.0, up())

	run("pg")
	require.Zero(t, probed["pg"].Load(), "an org without a SQL Server CDC source is not probed")
	require.Equal(t, int32(3), probed["cdc"].Load(), "the agent is checked at each run")

	unknown.Store(true)
	run("cdc")
	require.Zero(t, testutil.CollectAndCount(metrics.CaptureAgentUp), "an unknown health is not reported as up or down")
}

func TestCaptureAgentProbeErrorKeepsTheGauge(t *testing.T) {
	fail := atomic.Bool{}
	probe := func(context.Context, *config.Org, *sql.DB) (AgentHealth, error) {
		if fail.Load() {
			return AgentHealth{}, errors.New("dial: connection refused")
		}
		return AgentHealth{Stale: true, Reason: "stopped"}, nil
	}
	cfg := testConfig(time.Hour, "cdc")
	cfg.Orgs[0].Source.Dialect = config.SQLServer
	metrics := NewMetrics(nil)
	d, err := New(cfg, &fakeSyncer{}, nil, quiet(), metrics, Options{Agent: probe})
	require.NoError(t, err)
	start(t, d)
	for i, f := range []bool{false, true} {
		fail.Store(f)
		_, err := d.Trigger("cdc", nil, false, "tester")
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			return testutil.ToFloat64(metrics.Runs.WithLabelValues("cdc", "ok")) == float64(i+1)
		}, 5*time.Second, time.Millisecond)
		require.Equal(t, 0.0, testutil.ToFloat64(metrics.CaptureAgentUp.WithLabelValues("cdc")))
	}
}
