package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/verify"
	"github.com/ehrsync/ehrsync/schemas"
)

// adminToken is the daemons' admin_token: strong enough (admin.CheckToken).
const adminToken = "test-admin-token-Zk9xLw2RtYq3mNc8vBp1hJd6sFa4uGe0iKo5"

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// daemonProc is a running `ehrsync run`.
type daemonProc struct {
	cmd  *exec.Cmd
	out  *lockedBuffer
	addr string // metrics and health
	// adminAddr is the admin API's listener (server.admin_listen); ""
	// when the configuration sets none.
	adminAddr string
	done      chan error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// daemonConfig writes the environment's configuration with schedule every
// and the daemon's server section: metrics at addr, the admin API at a
// free loopback address of its own.
func (e *env) daemonConfig(t *testing.T, every, addr string) string {
	t.Helper()
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	cfg := strings.Replace(string(b), "schedule: {every: 10m}", "schedule: {every: "+every+"}", 1)
	cfg = fmt.Sprintf("server:\n  listen: %s\n  admin_listen: %s\n  admin_token: env:TEST_ADMIN_TOKEN\n", addr, freeAddr(t)) + cfg
	path := filepath.Join(t.TempDir(), "daemon.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// daemonFlags are the `ehrsync run` flags the tests use unless they say
// otherwise: no jitter, a 20 s grace period, quick retries.
var daemonFlags = []string{"--jitter", "0s", "--grace", "20s", "--backoff", "100ms"}

// startDaemon starts `ehrsync run` on the environment's configuration with
// schedule every, and the extra run flags.
func (e *env) startDaemon(t *testing.T, every string, extra ...string) *daemonProc {
	t.Helper()
	addr := freeAddr(t)
	return e.spawnDaemon(t, e.daemonConfig(t, every, addr), addr, nil, nil, append(slices.Clone(daemonFlags), extra...))
}

// startDaemonWith starts `ehrsync run` on the configuration file cfg with
// extra environment and global flags, at addr.
func (e *env) startDaemonWith(t *testing.T, cfg, addr string, environ []string, globals ...string) *daemonProc {
	t.Helper()
	return e.spawnDaemon(t, cfg, addr, environ, globals, daemonFlags)
}

// spawnDaemon starts `ehrsync [globals] run --config cfg [runFlags]`
// listening at addr, with the admin token (then environ) in its
// environment, and waits until it answers /readyz. It is killed at the
// test's end if still running, and its error lines are logged if the test
// failed.
func (e *env) spawnDaemon(t *testing.T, cfg, addr string, environ, globals, runFlags []string) *daemonProc {
	t.Helper()
	d := &daemonProc{out: &lockedBuffer{}, addr: addr, adminAddr: adminListen(t, cfg), done: make(chan error, 1)}
	args := append(append(append([]string{"--log-format", "json"}, globals...), "run", "--config", cfg), runFlags...)
	d.cmd = e.command(args...)
	d.cmd.Env = append(append(d.cmd.Env, "TEST_ADMIN_TOKEN="+adminToken), environ...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	require.NoError(t, d.cmd.Start())
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil && t.Failed() {
			// Go dumps every goroutine on SIGQUIT: where a daemon that
			// stopped making progress waits.
			_ = d.cmd.Process.Signal(syscall.SIGQUIT)
			select {
			case <-d.done:
			case <-time.After(10 * time.Second):
				_ = d.cmd.Process.Kill()
				<-d.done
			}
			t.Logf("the daemon's goroutines in ehrsync's code at the failure:\n%s", ehrsyncGoroutines(d.out.String()))
		}
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		if t.Failed() {
			lines := d.errorLines()
			t.Logf("the daemon's last error lines (%d in all):\n%s", len(lines), strings.Join(lines[max(0, len(lines)-20):], "\n"))
		}
	})
	await(t, 50*time.Millisecond, func() bool {
		code, _ := d.get(t, "/readyz", "")
		return code == http.StatusOK
	}, "daemon never became ready:\n%s", d.out.String())
	return d
}

// ehrsyncGoroutines is the goroutines of a Go goroutine dump in out whose
// stacks pass through ehrsync's packages, at most 300 lines of them.
func ehrsyncGoroutines(out string) string {
	i := strings.Index(out, "\ngoroutine ")
	if i < 0 {
		return "(no goroutine dump)"
	}
	var keep []string
	for _, g := range strings.Split(out[i+1:], "\n\n") {
		if strings.Contains(g, "github.com/ehrsync/ehrsync/") {
			keep = append(keep, g)
		}
	}
	lines := strings.Split(strings.Join(keep, "\n\n"), "\n")
	return strings.Join(lines[:min(len(lines), 300)], "\n")
}

func (d *daemonProc) get(t *testing.T, path, token string) (int, string) {
	t.Helper()
	return d.do(t, http.MethodGet, path, token, "")
}

// adminListen is the server.admin_listen of the configuration file cfg
// ("" when it has none).
func adminListen(t *testing.T, cfg string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	if m := adminListenRE.FindStringSubmatch(string(b)); m != nil {
		return m[1]
	}
	return ""
}

var adminListenRE = regexp.MustCompile(`(?m)^\s+admin_listen:\s*(\S+)`)

// url is where the daemon answers path: the admin listener for /admin/
// (when the daemon has one), the metrics listener otherwise.
func (d *daemonProc) url(path string) string {
	if strings.HasPrefix(path, "/admin/") && d.adminAddr != "" {
		return "http://" + d.adminAddr + path
	}
	return "http://" + d.addr + path
}

func (d *daemonProc) do(t *testing.T, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, d.url(path), strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metric sums a metric's samples in a scrape (all label sets).
func metric(scrape, name string) float64 {
	var sum float64
	for _, line := range strings.Split(scrape, "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// stop sends SIGTERM and requires exit 0 (the grace period, then the runs'
// cancellation, end the daemon: the wait has no bound of its own).
func (d *daemonProc) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-d.done:
		require.NoError(t, err, "ehrsync run did not exit 0 on SIGTERM:\n%s", d.out.String())
	case <-giveUp(t):
		t.Fatalf("ehrsync run did not exit after SIGTERM:\n%s", d.out.String())
	}
}

// errorLines are the daemon's error-level log lines.
func (d *daemonProc) errorLines() []string {
	var out []string
	for _, l := range strings.Split(d.out.String(), "\n") {
		if strings.Contains(l, `"level":"ERROR"`) {
			out = append(out, l)
		}
	}
	return out
}

// converged reports whether every table in the store equals the source.
func (e *env) converged(t *testing.T) bool {
	t.Helper()
	for _, tb := range schemas.NextGen().Tables() {
		d, err := verify.Table(context.Background(), e.src, e.store, "dbo", sink.SchemaFor(org), tb)
		if err != nil || !d.Equal() {
			return false
		}
	}
	return true
}

// requireNoDoubleAppliedChunk checks the position history: the chunks of
// two runs of one table never interleave (one runner per table at a time),
// and no chunk was applied twice from the same position.
func (e *env) requireNoDoubleAppliedChunk(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var interleaved []string
	rows, err := e.store.Query(ctx, `SELECT table_name FROM (
			SELECT org, table_name, run_id, lag(run_id) OVER (PARTITION BY org, table_name ORDER BY id) AS prev
			FROM ehrsync.position_history WHERE reason IN ('sync', 'snapshot', 'backfill')) x
		GROUP BY org, table_name
		HAVING count(*) FILTER (WHERE run_id IS DISTINCT FROM prev) <> count(DISTINCT run_id)`)
	require.NoError(t, err)
	for rows.Next() {
		var tb string
		require.NoError(t, rows.Scan(&tb))
		interleaved = append(interleaved, tb)
	}
	require.NoError(t, rows.Err())
	require.Empty(t, interleaved, "two runs of a table applied chunks at the same time")

	// An incremental table's positions only advance between operator moves
	// (reset, rewind), so each from_position appears once per such epoch.
	// Tables snapshotted in full each run (no rowversion or modify time)
	// legitimately start over every run; the check above covers them.
	var full []string
	for _, tb := range schemas.NextGen().Tables() {
		if tb.RowVersion == "" && tb.ModifiedAt == "" {
			full = append(full, tb.QualifiedName())
		}
	}
	var dup int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM (
		SELECT 1 FROM (
			SELECT h.org, h.table_name, h.from_position,
				(SELECT count(*) FROM ehrsync.position_history r WHERE r.org = h.org AND r.table_name = h.table_name
					AND r.id < h.id AND r.reason IN ('reset', 'rewind')) AS epoch
			FROM ehrsync.position_history h WHERE h.reason IN ('sync', 'snapshot', 'backfill') AND h.table_name <> ALL($1)) x
		GROUP BY org, table_name, from_position, epoch HAVING count(*) > 1) d`, full).Scan(&dup))
	require.Zero(t, dup, "a chunk was applied twice from the same position")
}

// TestDaemonEndToEnd runs the real binary as a daemon on a synthetic
// PostgreSQL source with a short schedule while a workload runs: the store
// converges, metrics move, the admin API answers, audit rows and NOTIFY
// payloads are written, and SIGTERM exits 0 with no half chunk.
func TestDaemonEndToEnd(t *testing.T) {
	e := newEnv(t, 8, 500)
	ctx := context.Background()
	listen, err := e.store.Acquire(ctx)
	require.NoError(t, err)
	defer listen.Release()
	_, err = listen.Exec(ctx, "LISTEN "+sink.NotifyChannel)
	require.NoError(t, err)

	d := e.startDaemon(t, "2s")
	code, body := d.get(t, "/healthz", "")
	require.Equal(t, http.StatusOK, code, body)

	await(t, 200*time.Millisecond, func() bool { return e.converged(t) },
		"the store never converged:\n%s", d.out.String())
	_, first := d.get(t, "/metrics", "")
	rows1 := metric(first, "ehrsync_sync_rows_total")
	require.Positive(t, rows1, "no rows counted:\n%s", first)

	// A NOTIFY per committed chunk, with the org and table.
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	n, err := listen.Conn().WaitForNotification(wctx)
	cancel()
	require.NoError(t, err)
	var payload map[string]any
	require.NoError(t, json.Unmarshal([]byte(n.Payload), &payload), n.Payload)
	require.Equal(t, org, payload["org"])

	// The workload runs while the daemon syncs on its schedule.
	e.simulate(t, 2)
	await(t, 200*time.Millisecond, func() bool { return e.converged(t) },
		"the store never caught up with the workload:\n%s", d.out.String())
	await(t, 100*time.Millisecond, func() bool {
		_, s := d.get(t, "/metrics", "")
		return metric(s, "ehrsync_sync_rows_total") > rows1
	}, "metrics did not move")
	_, scrape := d.get(t, "/metrics", "")
	for _, name := range []string{"ehrsync_sync_table_runs_total", "ehrsync_sync_last_success_timestamp_seconds",
		"ehrsync_daemon_runs_total", "ehrsync_source_up", "ehrsync_daemon_next_run_timestamp_seconds"} {
		require.Positive(t, metric(scrape, name), name)
	}
	checkMetricsWithPromtool(t, scrape)

	// The admin API: authenticated, lists tables with positions, triggers.
	code, _ = d.get(t, "/admin/orgs", "")
	require.Equal(t, http.StatusUnauthorized, code)
	code, _ = d.get(t, "/admin/orgs", "wrong")
	require.Equal(t, http.StatusUnauthorized, code)
	code, body = d.get(t, "/admin/orgs", adminToken)
	require.Equal(t, http.StatusOK, code, body)
	var list struct {
		Orgs []struct {
			Name   string
			Tables []struct {
				Name     string
				Strategy string
				Position map[string]any
				State    string
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &list), body)
	require.Len(t, list.Orgs, 1)
	require.Len(t, list.Orgs[0].Tables, len(schemas.NextGen().Tables()), body)
	for _, tb := range list.Orgs[0].Tables {
		require.Equal(t, "synced", tb.State, "%s: %s", tb.Name, body)
		if tb.Strategy != "snapshot" { // a full snapshot each run keeps no position
			require.NotNil(t, tb.Position, "%s has no position: %s", tb.Name, body)
		}
	}
	code, body = d.do(t, http.MethodPost, "/admin/orgs/"+org+"/sync", adminToken, `{"tables": ["dbo.claims"]}`)
	require.Equal(t, http.StatusAccepted, code, body)
	code, body = d.do(t, http.MethodPost, "/admin/orgs/"+org+"/tables/dbo.claims/position", adminToken, `{"confirm": "nope"}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	code, _ = d.do(t, http.MethodPost, "/admin/orgs/"+org+"/pause", adminToken, "")
	require.Equal(t, http.StatusOK, code)
	code, _ = d.do(t, http.MethodPost, "/admin/orgs/"+org+"/resume", adminToken, "")
	require.Equal(t, http.StatusOK, code)

	// Audit: table runs and admin actions, never row values.
	var runs, admins int
	require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FILTER (WHERE action = 'run'), count(*) FILTER (WHERE action = 'admin') FROM ehrsync.audit").Scan(&runs, &admins))
	require.Positive(t, runs)
	require.GreaterOrEqual(t, admins, 3)
	var withColumns int
	require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.audit WHERE action = 'run' AND actor = 'daemon' AND outcome = 'ok' AND cardinality(columns) > 0").Scan(&withColumns))
	require.Positive(t, withColumns)

	// SIGHUP reloads the configuration.
	require.NoError(t, d.cmd.Process.Signal(syscall.SIGHUP))
	await(t, 20*time.Millisecond, func() bool { return strings.Contains(d.out.String(), "configuration reloaded") })

	// SIGTERM in the middle of work: exit 0, and no half chunk.
	e.simulate(t, 1)
	code, _ = d.do(t, http.MethodPost, "/admin/orgs/"+org+"/sync", adminToken, "")
	require.Equal(t, http.StatusAccepted, code)
	d.stop(t)
	require.Empty(t, d.errorLines())
	e.requirePositionsCovered(t)
	e.sync(t)
	e.requireEqual(t)
	e.requireNoDuplicateChanges(t)
	e.requireNoDoubleAppliedChunk(t)
}

// TestTwoDaemonsAndAManualSyncShareOneStore: two replicas on a 1-second
// schedule and repeated manual syncs, all against one store while a workload
// runs. The leases let one runner at a time sync a table: every table is
// synced, no chunk is applied twice, and the only "errors" are busy skips.
func TestTwoDaemonsAndAManualSyncShareOneStore(t *testing.T) {
	e := newEnv(t, 8, 300)
	a := e.startDaemon(t, "1s")
	b := e.startDaemon(t, "1s")
	for i := 0; i < 3; i++ {
		e.simulate(t, 1)
		out := e.sync(t) // exits 0 even when tables are busy
		require.NotContains(t, out, "table sync failed")
	}
	await(t, 200*time.Millisecond, func() bool { return e.converged(t) },
		"the store never converged:\nA:\n%s\nB:\n%s", a.out.String(), b.out.String())
	// The replicas fire on the same second: they meet at leases.
	var sa, sb string
	await(t, 100*time.Millisecond, func() bool {
		_, sa = a.get(t, "/metrics", "")
		_, sb = b.get(t, "/metrics", "")
		return metric(sa, "ehrsync_lease_busy_total")+metric(sb, "ehrsync_lease_busy_total") > 0
	}, "two replicas on one schedule never met at a lease: the test proves nothing")
	a.stop(t)
	b.stop(t)
	require.Empty(t, a.errorLines())
	require.Empty(t, b.errorLines())
	busy := metric(sa, "ehrsync_lease_busy_total") + metric(sb, "ehrsync_lease_busy_total")
	t.Logf("leases found busy by the daemons: %.0f", busy)
	require.Positive(t, busy, "two replicas on one schedule never met at a lease: the test proves nothing")
	// Both replicas did work.
	require.Positive(t, metric(sa, "ehrsync_sync_table_runs_total"))
	require.Positive(t, metric(sb, "ehrsync_sync_table_runs_total"))

	e.requireEqual(t)
	e.requirePositionsCovered(t)
	e.requireNoDuplicateChanges(t)
	e.requireNoDoubleAppliedChunk(t)
}

// TestSIGTERMDuringABackfillThenResume starts a backfill through the admin
// API, sends SIGTERM part way with a tiny grace period (the open chunk
// transaction rolls back), and resumes the backfill from the CLI.
func TestSIGTERMDuringABackfillThenResume(t *testing.T) {
	e := newEnv(t, 20, 40)
	ctx := context.Background()
	e.sync(t)
	d := e.startDaemon(t, "24h", "--grace", "1ms")
	code, body := d.do(t, http.MethodPost, "/admin/orgs/"+org+"/backfill", adminToken, `{"tables": ["dbo.claims"]}`)
	require.Equal(t, http.StatusAccepted, code, body)
	landed := false
	await(t, 2*time.Millisecond, func() bool {
		var chunks, finished int
		require.NoError(t, e.store.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM ehrsync.position_history WHERE actor = 'admin-api' AND reason <> 'reset'),
			(SELECT count(*) FROM ehrsync.backfills WHERE finished_at IS NOT NULL)`).Scan(&chunks, &finished))
		landed = finished == 0
		return chunks >= 2 || finished > 0
	})
	d.stop(t)
	// The grace period (1ms) ends mid-chunk: the run is canceled and its
	// open chunk transaction rolls back; nothing else fails.
	for _, l := range d.errorLines() {
		require.Contains(t, l, "context canceled")
	}
	require.Contains(t, d.out.String(), "stopping")
	e.requirePositionsCovered(t)
	if !landed {
		t.Log("the backfill finished before SIGTERM: resume not exercised")
	}
	out, err := e.run(t, "backfill", "--config", e.config, "--org", org, "--table", "dbo.claims")
	require.NoError(t, err, out)
	if landed {
		require.Contains(t, out, "(resumed)")
	}
	e.sync(t)
	e.requireEqual(t)
	// Not requireNoDuplicateChanges: a re-snapshot logs every row again in
	// the claims change log (the sink's behaviour; see the report).
	e.requireNoDoubleAppliedChunk(t)
}
