package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// requireSample requires the scrape to hold the sample name{labels} with
// value (labels in Prometheus' order: by name).
func requireSample(t *testing.T, scrape, name, labels, value string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name+"{"+labels+"} "+value) + `$`)
	require.Regexp(t, re, scrape, "no sample %s{%s} %s", name, labels, value)
}

// tableStates are the tables' states in GET /admin/orgs.
func tableStates(t *testing.T, d *daemonProc) (map[string]string, string) {
	t.Helper()
	code, body := d.get(t, "/admin/orgs", adminToken)
	require.Equal(t, http.StatusOK, code, body)
	var got struct {
		Orgs []struct {
			Tables []struct {
				Name  string `json:"name"`
				State string `json:"state"`
			} `json:"tables"`
		} `json:"orgs"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	states := map[string]string{}
	for _, o := range got.Orgs {
		for _, tb := range o.Tables {
			states[tb.Name] = tb.State
		}
	}
	return states, body
}

// reportLine is the line of a sync report (or positions list) naming
// table.
func reportLine(t *testing.T, out, table string) string {
	t.Helper()
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " "+table+" ") && !strings.HasPrefix(l, "{") {
			return l
		}
	}
	t.Fatalf("no line of %s in:\n%s", table, out)
	return ""
}

// TestStatesAndPositionsTellTheTruth syncs, with the real binary, a table
// snapshotted every run and a high-water mark on a timestamp whose last
// row's key is a sentinel, beside a daemon that has not run them:
//   - before any sync the daemon's counters of the configured tables exist
//     at 0, and both tables are "never synced";
//   - after the sync the report and positions list show the timestamp
//     cursor's value and the completed snapshot pass, never the key; the
//     admin API says both are synced, without the key or the timestamp;
//   - a reset table is "reset: full re-sync next run" until a sync.
func TestStatesAndPositionsTellTheTruth(t *testing.T) {
	sentinel := "PHI-" + sentinelID(t) + "-KEY"
	snap := hostileTable(t, "dbo", "truth_snap", "", [2]string{"code", "varchar(40)"}, [2]string{"note", "text"})
	hwm := hostileTable(t, "dbo", "truth_hwm", "modified_at", [2]string{"code", "varchar(40)"}, [2]string{"note", "text"},
		[2]string{"modified_at", "timestamp(3) without time zone"})
	// Chunks of one row: the high-water mark's position keeps the last
	// row's key (the sentinel) as its tie-break.
	c := newCustomEnv(t, 1, customTable{table: snap, settings: "strategy: snapshot"},
		customTable{table: hwm, settings: "strategy: hwm, cursor: modified_at"})
	last := time.Date(2026, 11, 1, 8, 30, 0, 123_000_000, time.UTC)
	c.insert(t, snap, [][]any{{"code-1", "a"}, {sentinel, "b"}})
	c.insert(t, hwm, [][]any{{"code-1", "a", last.Add(-time.Hour)}, {sentinel, "b", last}})
	e := &env{src: c.src, store: c.store, srcURL: c.srcURL, storeURL: c.storeURL, config: c.config}
	ctx := context.Background()

	// The daemon's configuration is next to the sync's: the catalog's
	// files are named relative to it.
	addr := freeAddr(t)
	cfg, err := os.ReadFile(e.daemonConfig(t, "24h", addr))
	require.NoError(t, err)
	daemonCfg := filepath.Join(c.dir, "daemon.yaml")
	require.NoError(t, os.WriteFile(daemonCfg, cfg, 0o600))
	d := e.spawnDaemon(t, daemonCfg, addr, nil, nil, daemonFlags)
	code, scrape := d.get(t, "/metrics", "")
	require.Equal(t, http.StatusOK, code)
	for _, tb := range []string{"dbo.truth_snap", "dbo.truth_hwm"} {
		requireSample(t, scrape, "ehrsync_lease_busy_total", `org="st-mary",table="`+tb+`"`, "0")
		requireSample(t, scrape, "ehrsync_sync_expired_positions_total", `org="st-mary",table="`+tb+`"`, "0")
		requireSample(t, scrape, "ehrsync_backfill_rows_total", `org="st-mary",table="`+tb+`"`, "0")
		for _, outcome := range []string{"ok", "failed", "canceled"} {
			requireSample(t, scrape, "ehrsync_sync_table_runs_total", `org="st-mary",outcome="`+outcome+`",table="`+tb+`"`, "0")
		}
		requireSample(t, scrape, "ehrsync_sync_rows_total", `operation="insert",org="st-mary",table="`+tb+`"`, "0")
	}
	requireSample(t, scrape, "ehrsync_daemon_runs_total", `org="st-mary",outcome="failed"`, "0")
	requireSample(t, scrape, "ehrsync_daemon_skipped_runs_total", `org="st-mary",reason="overlap"`, "0")
	requireSample(t, scrape, "ehrsync_daemon_config_reloads_total", `outcome="failed"`, "0")
	states, _ := tableStates(t, d)
	require.Equal(t, map[string]string{"dbo.truth_snap": "never synced", "dbo.truth_hwm": "never synced"}, states)

	report := e.sync(t)
	require.Contains(t, reportLine(t, report, "dbo.truth_snap"), "snapshot complete, next pass from the start")
	hwmLine := reportLine(t, report, "dbo.truth_hwm")
	require.Contains(t, hwmLine, "cursor modified_at 2026-11-01")
	require.Contains(t, hwmLine, "08:30:00.123")
	// The high-water mark's position as a chunk that ends on the
	// sentinel's row leaves it: the cursor's value, and the sentinel's key
	// (from the first run's snapshot) as tie-break.
	positions := watermarks.NewStore(e.store)
	pos, err := positions.Load(ctx, org, "dbo.truth_hwm")
	require.NoError(t, err)
	cur := pos.(watermarks.Cursor)
	hist, err := positions.History(ctx, org, "dbo.truth_hwm", 0)
	require.NoError(t, err)
	for _, h := range hist {
		if s, ok := h.To.(watermarks.Snapshot); ok && strings.Contains(s.LastKey.Text(), sentinel) {
			cur.Key = s.LastKey
		}
	}
	require.NotNil(t, cur.Key, "the sentinel's key is in no position of the history")
	mid, err := watermarks.Encode(cur)
	require.NoError(t, err)
	out, err := e.run(t, "positions", "reset", "--config", e.config, "--org", org, "--table", "dbo.truth_hwm",
		"--confirm", org+"/dbo.truth_hwm", "--to", string(mid))
	require.NoError(t, err, out)
	list, err := e.run(t, "positions", "list", "--config", e.config)
	require.NoError(t, err, list)
	require.Contains(t, reportLine(t, list, "dbo.truth_snap"), "snapshot complete, next pass from the start")
	require.Contains(t, reportLine(t, list, "dbo.truth_hwm"), "cursor modified_at 2026-11-01T08:30:00.123, after <key of 1 value>")
	states, orgs := tableStates(t, d)
	require.Equal(t, map[string]string{"dbo.truth_snap": "synced", "dbo.truth_hwm": "synced"}, states)
	require.NotContains(t, orgs, "08:30:00.123", "the admin API answered a timestamp cursor's value")

	out, err = e.run(t, "positions", "reset", "--config", e.config, "--org", org, "--table", "dbo.truth_snap", "--confirm", org+"/dbo.truth_snap")
	require.NoError(t, err, out)
	states, _ = tableStates(t, d)
	require.Equal(t, "reset: full re-sync next run", states["dbo.truth_snap"])
	require.Equal(t, "synced", states["dbo.truth_hwm"])
	again := e.sync(t)
	states, _ = tableStates(t, d)
	require.Equal(t, "synced", states["dbo.truth_snap"])

	d.stop(t)
	for name, text := range map[string]string{"sync": report + again, "positions list": list, "admin API": orgs, "daemon log": d.out.String()} {
		require.NotContains(t, text, sentinel, "the key value is in the %s", name)
	}
	show, err := e.run(t, "positions", "show", "--config", e.config, "--org", org, "--table", "dbo.truth_hwm")
	require.NoError(t, err, show)
	require.Contains(t, show, sentinel, "positions show prints the key: the sentinel is where the test looks")
	require.Contains(t, again, "after <key of 1 value>", "the sync from the rewound position did not show it")
}
