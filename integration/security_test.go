package integration

// Issue 7 section 5, security checks: the admin API's authentication, a
// read-only source login, a sentinel sweep for leaked row values and
// secrets, TLS verification that cannot be turned off silently. (Key file
// permissions are unit-tested beside the code: pkg/secrets, pkg/config,
// pkg/source.)

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// startDaemonWith starts `ehrsync run` on the configuration file cfg with
// extra environment, at addr, and waits until it answers /healthz.
func (e *env) startDaemonWith(t *testing.T, cfg, addr string, environ []string) *daemonProc {
	t.Helper()
	d := &daemonProc{out: &lockedBuffer{}, addr: addr, done: make(chan error, 1)}
	d.cmd = e.command("--log-format", "json", "run", "--config", cfg, "--jitter", "0s", "--grace", "20s", "--backoff", "100ms")
	d.cmd.Env = append(d.cmd.Env, environ...)
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	require.NoError(t, d.cmd.Start())
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		if d.cmd.ProcessState == nil {
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	})
	require.Eventually(t, func() bool {
		code, _ := d.get(t, "/readyz", "")
		return code == http.StatusOK
	}, 30*time.Second, 50*time.Millisecond, "daemon never became ready:\n%s", d.out.String())
	return d
}

// rawResponse is an HTTP response with the headers that may differ between
// two identical answers (Date) removed.
type rawResponse struct {
	Status int
	Header http.Header
	Body   string
}

// request sends method path with the Authorization header auth (none when
// nil) and returns the whole response.
func (d *daemonProc) request(t *testing.T, method, path string, auth *string) rawResponse {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+d.addr+path, nil)
	require.NoError(t, err)
	if auth != nil {
		req.Header["Authorization"] = []string{*auth}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	h := resp.Header.Clone()
	h.Del("Date")
	return rawResponse{Status: resp.StatusCode, Header: h, Body: string(b)}
}

func ptr(s string) *string { return &s }

// TestReliabilitySecurityAdminAPI: the admin API refuses a missing,
// malformed, wrong-scheme or wrong token with a bare 401 (nothing about the
// token in it), answers a near miss (the real token less its last
// character, or plus one) exactly as a far miss, and is off without a
// token while /metrics and /healthz still answer. The listen address
// defaults to loopback.
func TestReliabilitySecurityAdminAPI(t *testing.T) {
	const section = "Security: admin API"
	e := newEnv(t, 2, 2000)
	token := "adm-" + sentinelID(t) + "-tok-0123456789abcdef"
	addr := freeAddr(t)
	d := e.startDaemonWith(t, e.daemonConfig(t, "24h", addr), addr, []string{"TEST_ADMIN_TOKEN=" + token})

	// The real token works (so the refusals below are about the token).
	ok := d.request(t, http.MethodGet, "/admin/orgs", ptr("Bearer "+token))
	require.Equal(t, http.StatusOK, ok.Status, ok.Body)

	refused := map[string]*string{
		"missing":               nil,
		"empty":                 ptr(""),
		"scheme only":           ptr("Bearer"),
		"scheme and space":      ptr("Bearer "),
		"wrong scheme":          ptr("Basic " + token),
		"token without scheme":  ptr(token),
		"space inside":          ptr("Bearer " + token[:4] + " " + token[4:]),
		"wrong":                 ptr("Bearer wrong"),
		"near miss, one short":  ptr("Bearer " + token[:len(token)-1]),
		"near miss, one longer": ptr("Bearer " + token + "0"),
		"near miss, last char":  ptr("Bearer " + token[:len(token)-1] + "X"),
		"far miss, same length": ptr("Bearer " + strings.Repeat("z", len(token))),
		"far miss, long":        ptr("Bearer " + strings.Repeat("z", 4096)),
	}
	names := make([]string, 0, len(refused))
	for n := range refused {
		names = append(names, n)
	}
	slices.Sort(names)
	var reference *rawResponse
	for _, name := range names {
		for _, path := range []struct{ method, path string }{
			{http.MethodGet, "/admin/orgs"},
			{http.MethodPost, "/admin/orgs/" + org + "/sync"},
			{http.MethodPost, "/admin/orgs/nope/pause"},
		} {
			r := d.request(t, path.method, path.path, refused[name])
			require.Equal(t, http.StatusUnauthorized, r.Status, "%s %s: %s", name, path.path, r.Body)
			require.Equal(t, "unauthorized\n", r.Body, name)
			if reference == nil {
				reference = &r
			}
			// Identical answers whatever was tried and wherever: status,
			// body and every header.
			require.Equal(t, *reference, r, "%s %s answers differently from other refusals", name, path.path)
		}
	}
	// Not one refusal reached the audit (they did nothing) nor changed a
	// thing: the org is not paused.
	var admins int
	require.NoError(t, e.store.QueryRow(context.Background(), "SELECT count(*) FROM ehrsync.audit WHERE action = 'admin'").Scan(&admins))
	require.Zero(t, admins)
	require.NotContains(t, d.out.String(), token)
	d.stop(t)
	figure(section, "refused token variants (× 3 endpoints)", len(refused))

	// Without a token the admin API is off: any token, even an empty
	// bearer, gets 404, never a 2xx; metrics and health still answer.
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	addr = freeAddr(t)
	cfg := filepath.Join(t.TempDir(), "no-token.yaml")
	require.NoError(t, os.WriteFile(cfg, []byte("server:\n  listen: "+addr+"\n"+string(b)), 0o600))
	d = e.startDaemonWith(t, cfg, addr, nil)
	for _, auth := range []*string{nil, ptr("Bearer "), ptr("Bearer " + token), ptr("Bearer x")} {
		for _, p := range []struct{ method, path string }{
			{http.MethodGet, "/admin/orgs"},
			{http.MethodPost, "/admin/orgs/" + org + "/sync"},
			{http.MethodPost, "/admin/orgs/" + org + "/backfill"},
			{http.MethodPost, "/admin/orgs/" + org + "/pause"},
		} {
			r := d.request(t, p.method, p.path, auth)
			require.Equal(t, http.StatusNotFound, r.Status, "%s %s with no token configured: %s", p.method, p.path, r.Body)
		}
	}
	require.Equal(t, http.StatusOK, d.request(t, http.MethodGet, "/metrics", nil).Status)
	require.Equal(t, http.StatusOK, d.request(t, http.MethodGet, "/healthz", nil).Status)
	require.Contains(t, d.out.String(), "admin API is off")
	d.stop(t)
	var triggered int
	require.NoError(t, e.store.QueryRow(context.Background(), "SELECT count(*) FROM ehrsync.audit").Scan(&triggered))
	require.Zero(t, triggered, "a request to the admin API that is off did something")

	// Loopback by default: a configuration without server.listen listens
	// on a loopback address.
	plain := filepath.Join(t.TempDir(), "plain.yaml")
	require.NoError(t, os.WriteFile(plain, b, 0o600))
	t.Setenv("TEST_STORE_URL", e.storeURL)
	c, err := config.Load(plain)
	require.NoError(t, err)
	host, _, err := net.SplitHostPort(c.Server.Listen)
	require.NoError(t, err)
	require.True(t, net.ParseIP(host).IsLoopback(), "default listen address %s is not loopback", c.Server.Listen)
	figure(section, "default listen address", c.Server.Listen)
}

var sentinelCounter atomic.Int64

// sentinelID is a short string unique to this run and call, found nowhere
// by chance.
func sentinelID(t *testing.T) string {
	t.Helper()
	return fmt.Sprintf("Q%05dZ%dj", testSeed(t.Name())%100000, sentinelCounter.Add(1))
}

// readOnlyRole creates a login that may only connect to the source database
// and read its dbo tables: no other privilege (PUBLIC's CONNECT and TEMP on
// the database and CREATE on schema public are revoked too). It is dropped
// when the test ends.
func (e *env) readOnlyRole(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	u, err := url.Parse(e.srcURL)
	require.NoError(t, err)
	db := pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
	role := fmt.Sprintf("ehrsync_ro_%d_%d", os.Getpid(), sentinelCounter.Add(1))
	r := pgx.Identifier{role}.Sanitize()
	for _, stmt := range []string{
		"CREATE ROLE " + r + " LOGIN",
		"REVOKE ALL ON DATABASE " + db + " FROM PUBLIC",
		"REVOKE CREATE ON SCHEMA public FROM PUBLIC",
		"GRANT CONNECT ON DATABASE " + db + " TO " + r,
		"GRANT USAGE ON SCHEMA dbo TO " + r,
		"GRANT SELECT ON ALL TABLES IN SCHEMA dbo TO " + r,
	} {
		_, err := e.src.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		// The role's sessions may linger a moment after the binary exits.
		_, _ = e.src.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", role)
		_, err := e.src.Exec(ctx, "DROP OWNED BY "+r)
		require.NoError(t, err)
		_, err = e.src.Exec(ctx, "DROP ROLE "+r)
		require.NoError(t, err)
	})
	// The login really is that narrow.
	var write, temp, create, createDbo, connect bool
	require.NoError(t, e.src.QueryRow(ctx, `SELECT
			has_table_privilege($1, 'dbo.claims', 'INSERT,UPDATE,DELETE,TRUNCATE,TRIGGER,REFERENCES'),
			has_database_privilege($1, current_database(), 'TEMP'),
			has_schema_privilege($1, 'public', 'CREATE'),
			has_schema_privilege($1, 'dbo', 'CREATE'),
			has_database_privilege($1, current_database(), 'CONNECT')`, role).Scan(&write, &temp, &create, &createDbo, &connect))
	require.False(t, write || temp || create || createDbo)
	require.True(t, connect)
	u.User = url.User(role)
	conn, err := pgx.Connect(ctx, u.String())
	require.NoError(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "UPDATE dbo.payer_mstr SET payer_name = payer_name")
	require.ErrorContains(t, err, "permission denied", "the read-only login can write")
	_, err = conn.Exec(ctx, "CREATE TEMP TABLE x (id int)")
	require.ErrorContains(t, err, "permission denied", "the read-only login can create temporary tables")
	return role
}

// writeCounts sums n_tup_ins, n_tup_upd and n_tup_del over the source's dbo
// tables, once the statistics are settled: no session of role left (a
// backend flushes its counts when it exits) and two readings agree.
func (e *env) writeCounts(t *testing.T, role string) [3]int64 {
	t.Helper()
	ctx := context.Background()
	e.src.Reset() // the harness's own sessions flush theirs as they close
	read := func() [3]int64 {
		var c [3]int64
		require.NoError(t, e.src.QueryRow(ctx, `SELECT coalesce(sum(n_tup_ins), 0)::bigint, coalesce(sum(n_tup_upd), 0)::bigint,
			coalesce(sum(n_tup_del), 0)::bigint FROM pg_stat_user_tables WHERE schemaname = 'dbo'`).Scan(&c[0], &c[1], &c[2]))
		return c
	}
	var last [3]int64
	stable := 0
	require.Eventually(t, func() bool {
		var sessions int
		require.NoError(t, e.src.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE usename = $1", role).Scan(&sessions))
		if sessions > 0 {
			stable = 0
			return false
		}
		c := read()
		if c == last {
			stable++
		} else {
			last, stable = c, 0
		}
		return stable >= 3
	}, 30*time.Second, 200*time.Millisecond)
	return last
}

// TestReliabilitySecuritySourceReadOnly runs every strategy the PostgreSQL
// dialect has (keyset snapshot, high-water mark on a row version and on a
// timestamp with look-back, key reconciliation for deletes), a backfill and
// check, with the real binary, as a login that can only read: all pass,
// the store equals the source, and the source's tables count no insert,
// update or delete during the runs.
func TestReliabilitySecuritySourceReadOnly(t *testing.T) {
	const section = "Security: read-only source login"
	e := newEnv(t, 10, 300)
	role := e.readOnlyRole(t)
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	u, err := url.Parse(e.srcURL)
	require.NoError(t, err)
	cfg := strings.Replace(string(b), "      user: "+u.User.Username()+"\n", "      user: "+role+"\n", 1)
	require.Contains(t, cfg, "user: "+role)
	// Every strategy, explicitly: a full snapshot, a row-version HWM, a
	// timestamp HWM with look-back; reconciliation on all of them.
	cfg = strings.Replace(cfg, "{name: dbo.reason_code_mstr, strategy: auto,", "{name: dbo.reason_code_mstr, strategy: snapshot,", 1)
	cfg = strings.Replace(cfg, "{name: dbo.claims, strategy: auto,", "{name: dbo.claims, strategy: hwm,", 1)
	cfg = strings.Replace(cfg, "{name: dbo.charges, strategy: auto,", "{name: dbo.charges, strategy: hwm, cursor: modify_timestamp, look_back: 1m,", 1)
	require.Equal(t, 3, strings.Count(cfg, "strategy: snapshot")+strings.Count(cfg, "strategy: hwm"), cfg)
	e.config = filepath.Join(t.TempDir(), "readonly.yaml")
	require.NoError(t, os.WriteFile(e.config, []byte(cfg), 0o600))

	before := e.writeCounts(t, role)
	out := e.sync(t)
	require.NotContains(t, out, `"level":"ERROR"`, out)
	for _, args := range [][]string{
		{"check", "--config", e.config},
		{"check", "--json", "--config", e.config},
		{"backfill", "--config", e.config, "--org", org, "--table", "dbo.claims", "--table", "dbo.reason_code_mstr"},
		{"positions", "list", "--config", e.config},
	} {
		out, err := e.run(t, args...)
		require.NoError(t, err, "%v:\n%s", args, out)
		require.NotContains(t, out, "permission denied", "%v", args)
	}
	e.sync(t)
	require.Equal(t, before, e.writeCounts(t, role), "the source's tables counted writes (ins, upd, del) during the sync")
	rows := e.requireEqual(t)

	// Changes and deletes (seen by reconciliation under HWM and snapshot),
	// then the read-only sync again.
	stats := e.simulate(t, 3)
	require.Positive(t, stats.Batches)
	before = e.writeCounts(t, role)
	out = e.sync(t)
	require.NotContains(t, out, `"level":"ERROR"`, out)
	require.Equal(t, before, e.writeCounts(t, role), "the source's tables counted writes (ins, upd, del) during the sync")
	rows += e.requireEqual(t)

	// The strategies really ran.
	var kinds []string
	rowsK, err := e.store.Query(context.Background(), "SELECT DISTINCT to_position->>'kind' FROM ehrsync.position_history WHERE org = $1 AND to_position IS NOT NULL ORDER BY 1", org)
	require.NoError(t, err)
	kinds, err = pgx.CollectRows(rowsK, pgx.RowTo[string])
	require.NoError(t, err)
	var reconciled int
	require.NoError(t, e.store.QueryRow(context.Background(), "SELECT count(*) FROM ehrsync.reconciliations").Scan(&reconciled))
	require.Positive(t, reconciled, "no key reconciliation ran")
	figure(section, "source privileges", "CONNECT, USAGE on dbo, SELECT on dbo tables")
	figure(section, "commands run as it", "sync ×3, check (text, JSON), backfill, positions list")
	figure(section, "position kinds written", strings.Join(kinds, ", "))
	figure(section, "key reconciliations", reconciled)
	figure(section, "rows compared", rows)
	figure(section, "source writes during syncs", 0)
}

// runWith runs the binary with args and extra environment, and returns its
// combined output and error.
func (e *env) runWith(t *testing.T, environ []string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := e.command(append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(cmd.Env, environ...)
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

var _ = exec.Command
