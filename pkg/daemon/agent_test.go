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
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
)

// TestCaptureAgentGauge: at each sync run of an org with a SQL Server CDC
// source the daemon checks its capture agent (here SQL Server's CDC held
// in a model and served over TDS, through cdc.CheckAgent) and exports
// ehrsync_source_capture_agent_up: 1 while it harvests, 0 once it has
// finished no log scan for longer than the allowed lag, 1 again when
// restarted. An org with a PostgreSQL source is never probed; an unknown
// health removes the gauge.
func TestCaptureAgentGauge(t *testing.T) {
	m := mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true})
	src := &cdc.SQLServer{DB: mssqltest.Serve(t, m).Open(t)}
	id, err := schemas.ParseType(schemas.SQLServer, "int")
	require.NoError(t, err)
	require.NoError(t, m.CreateTable(&schemas.Table{Schema: "dbo", Name: "a", Dialect: schemas.SQLServer, Key: []string{"id"},
		Columns: []schemas.Column{{Name: "id", Type: id}}}))
	m.EnableCDCDatabase()
	_, err = m.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.a"})
	require.NoError(t, err)
	commit := func(id int64) {
		tx := m.Begin()
		require.NoError(t, tx.Insert("dbo.a", map[string]any{"id": id}))
		require.NoError(t, tx.Commit())
	}
	commit(1)

	var unknown atomic.Bool
	probed := map[string]*atomic.Int32{"cdc": {}, "pg": {}}
	probe := func(ctx context.Context, org *config.Org, _ *sql.DB) (AgentHealth, error) {
		probed[org.Name].Add(1)
		var s cdc.Source = src
		if unknown.Load() {
			s = struct{ cdc.Source }{src} // cannot report
		}
		h, err := cdc.CheckAgent(ctx, s, time.Minute)
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

	m.SetAutoHarvest(false) // the capture agent stops
	commit(2)
	m.Advance(2 * time.Minute)
	run("cdc")
	require.Equal(t, 0.0, up(), "a stopped agent is down")

	m.SetAutoHarvest(true)
	m.Harvest()
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
