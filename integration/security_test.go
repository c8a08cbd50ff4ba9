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
	"regexp"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
	"github.com/ehrsync/ehrsync/schemas"
)

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
	req, err := http.NewRequest(method, d.url(path), nil)
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
	token := "adm-" + sentinelID(t) + "-tok-0123456789abcdefghijklmnopqrstuvwxyz"
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
			require.JSONEq(t, `{"error": "unauthorized"}`, r.Body, name)
			require.Equal(t, "application/json", r.Header.Get("Content-Type"), name)
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
	host, _, err = net.SplitHostPort(c.Server.AdminListen)
	require.NoError(t, err)
	require.True(t, net.ParseIP(host).IsLoopback(), "default admin listen address %s is not loopback", c.Server.AdminListen)
	require.NotEqual(t, c.Server.Listen, c.Server.AdminListen, "the admin API shares the metrics listener")
	figure(section, "default admin listen address", c.Server.AdminListen)
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
	await(t, 200*time.Millisecond, func() bool {
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
	})
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

// capture is everything a test saw, by where it came from, for the
// sentinel sweep.
type capture struct {
	parts []capturePart
}

type capturePart struct {
	name, text string
}

func (c *capture) add(name, text string) { c.parts = append(c.parts, capturePart{name, text}) }

// sweep counts the lines scanned and, per sentinel, the lines of each part
// that hold it.
func (c *capture) sweep(sentinels []string) (lines int, hits map[string][]string) {
	hits = map[string][]string{}
	for _, p := range c.parts {
		for i, line := range strings.Split(p.text, "\n") {
			lines++
			for _, s := range sentinels {
				if strings.Contains(line, s) {
					hits[s] = append(hits[s], fmt.Sprintf("%s line %d: %.300s", p.name, i+1, line))
				}
			}
		}
	}
	return lines, hits
}

// rowSentinels writes a sentinel string into up to three rows of a text
// column (not a key, long enough) of every table that has one, and returns
// the sentinels by table.
func (e *env) rowSentinels(t *testing.T, id string) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for i, tb := range schemas.NextGen().Tables() {
		rows, err := e.src.Query(ctx, `SELECT column_name FROM information_schema.columns
			WHERE table_schema = 'dbo' AND table_name = $1 AND data_type IN ('character varying', 'text')
			  AND coalesce(character_maximum_length, 1000) >= 16 AND column_name <> ALL($2)
			ORDER BY ordinal_position LIMIT 1`, tb.Name, tb.Key)
		require.NoError(t, err)
		cols, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		if len(cols) == 0 {
			continue
		}
		s := fmt.Sprintf("v%s%02d", id, i)
		tag, err := e.src.Exec(ctx, fmt.Sprintf("UPDATE dbo.%s SET %s = $1 WHERE ctid IN (SELECT ctid FROM dbo.%[1]s LIMIT 3)",
			pgx.Identifier{tb.Name}.Sanitize(), pgx.Identifier{cols[0]}.Sanitize()), s)
		require.NoError(t, err)
		if tag.RowsAffected() > 0 {
			out[tb.QualifiedName()] = s
		}
	}
	return out
}

// TestReliabilitySecuritySentinelSweep seeds unique sentinel strings into
// source row values, the source password (an enc: value), the enc: key, the
// store URL's password and the admin token; runs a sync, a sync where two
// tables fail (a value the store refuses, a value that does not convert),
// the daemon with its metrics and admin API, check (text and JSON), a
// backfill and positions list/show; then greps everything captured (every
// process's output, HTTP bodies, the metrics scrape, the ehrsync schema's
// rows: audit, position history, backfills; NOTIFY payloads) for each
// sentinel: none may appear.
func TestReliabilitySecuritySentinelSweep(t *testing.T) {
	const section = "Security: sentinel sweep"
	e := newEnv(t, 6, 200)
	ctx := context.Background()
	id := sentinelID(t)
	var all capture

	// Secrets.
	key, err := secrets.NewKey()
	require.NoError(t, err)
	password := "pw" + id + "srcpass"
	encPassword, err := secrets.Encrypt(key, "org:"+org+"/source.password", password)
	require.NoError(t, err)
	token := "tok" + id + "admin-Zk9xLw2RtYq3mNc8vBp1hJd6sFa4uGe0iKo5"
	storePassword := "sp" + id + "store"
	su, err := url.Parse(e.storeURL)
	require.NoError(t, err)
	su.User = url.UserPassword(su.User.Username(), storePassword) // the test server trusts; the engine must still hide it
	e.storeURL = su.String()
	environ := []string{secrets.EnvKey + "=" + key.Encode(), "TEST_ADMIN_TOKEN=" + token, "USER=alice"}
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	srcUser := strings.SplitN(strings.SplitN(string(b), "      user: ", 2)[1], "\n", 2)[0]
	cfg := strings.Replace(string(b), "      user: "+srcUser+"\n", "      user: "+srcUser+"\n      password: "+encPassword+"\n", 1)
	require.Contains(t, cfg, encPassword)
	e.config = filepath.Join(t.TempDir(), "sentinel.yaml")
	require.NoError(t, os.WriteFile(e.config, []byte(cfg), 0o600))

	// Every NOTIFY payload of the whole test.
	listen, err := pgx.Connect(ctx, e.storeURL)
	require.NoError(t, err)
	_, err = listen.Exec(ctx, "LISTEN "+sink.NotifyChannel)
	require.NoError(t, err)
	var notifies lockedBuffer
	nctx, stopListen := context.WithCancel(ctx)
	listened := make(chan struct{})
	go func() {
		defer close(listened)
		for {
			n, err := listen.WaitForNotification(nctx)
			if err != nil {
				return
			}
			fmt.Fprintln(&notifies, n.Payload)
		}
	}()
	defer func() {
		stopListen()
		<-listened
		listen.Close(context.Background())
	}()

	run := func(name string, wantOK bool, args ...string) string {
		t.Helper()
		out, err := e.runWith(t, environ, append([]string{"--log-level", "debug"}, args...)...)
		if wantOK {
			require.NoError(t, err, "%s:\n%s", name, out)
		}
		all.add(name, out)
		return out
	}

	// Row values, then a clean sync: the sentinels reach the store.
	rowSentinels := e.rowSentinels(t, id)
	require.GreaterOrEqual(t, len(rowSentinels), 4, "too few tables with a text column to seed: %v", rowSentinels)
	run("sync", true, "sync", "--config", e.config)
	e.requireEqual(t)
	reached := 0
	for table, s := range rowSentinels {
		tb, ok := schemas.NextGen().Table(table)
		require.True(t, ok)
		var n int
		require.NoError(t, e.store.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s x WHERE x::text LIKE '%%' || $1 || '%%'",
			pgx.Identifier{sink.SchemaFor(org), tb.Name}.Sanitize()), s).Scan(&n))
		if n > 0 {
			reached++
		}
	}
	require.Equal(t, len(rowSentinels), reached, "a seeded value did not reach the store: the sweep would prove nothing")

	// Two failing tables. The store refuses a value (a CHECK constraint:
	// PostgreSQL's detail quotes the failing row), and a source value does
	// not convert (a column that became text holds a non-number).
	refused := "x" + id + "refused"
	_, err = e.store.Exec(ctx, fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT no_refused CHECK (payer_name <> %s) NOT VALID",
		pgx.Identifier{sink.SchemaFor(org), "payer_mstr"}.Sanitize(), "'"+refused+"'"))
	require.NoError(t, err)
	_, err = e.src.Exec(ctx, "UPDATE dbo.payer_mstr SET payer_name = $1 WHERE ctid = (SELECT ctid FROM dbo.payer_mstr LIMIT 1)", refused)
	require.NoError(t, err)
	unconvertible := "n" + id + "bad"
	_, err = e.src.Exec(ctx, "ALTER TABLE dbo.charges ALTER COLUMN created_by TYPE text")
	require.NoError(t, err)
	_, err = e.src.Exec(ctx, "UPDATE dbo.charges SET created_by = $1 WHERE ctid = (SELECT ctid FROM dbo.charges LIMIT 1)", unconvertible)
	require.NoError(t, err)
	// And a source view whose cast fails on one row: PostgreSQL's message
	// quotes the value (invalid input syntax for type integer: "...").
	poison := "p" + id + "cast"
	for _, stmt := range []string{
		"ALTER TABLE dbo.tran_code_mstr RENAME TO tran_code_mstr_raw",
		"ALTER TABLE dbo.tran_code_mstr_raw ADD COLUMN poison text",
		"UPDATE dbo.tran_code_mstr_raw SET poison = '" + poison + "' WHERE ctid = (SELECT ctid FROM dbo.tran_code_mstr_raw LIMIT 1)",
	} {
		_, err = e.src.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}
	var cols []string
	for _, c := range must(schemas.NextGen().Table("dbo.tran_code_mstr")).Columns {
		q := pgx.Identifier{c.Name}.Sanitize()
		if c.Name == "created_by" {
			q = "coalesce(poison::int, created_by) AS created_by"
		}
		cols = append(cols, q)
	}
	_, err = e.src.Exec(ctx, "CREATE VIEW dbo.tran_code_mstr AS SELECT "+strings.Join(cols, ", ")+" FROM dbo.tran_code_mstr_raw")
	require.NoError(t, err)
	failed := run("failing sync", false, "sync", "--config", e.config)
	require.Contains(t, failed, "dbo.tran_code_mstr", failed)
	require.Contains(t, failed, "dbo.payer_mstr", failed)
	require.Contains(t, failed, "dbo.charges", failed)
	require.Contains(t, failed, `"level":"ERROR"`, "the failing sync did not fail:\n%s", failed)

	// The daemon: scheduled runs (failing ones too), metrics, admin API.
	addr := freeAddr(t)
	d := e.startDaemonWith(t, e.daemonConfig(t, "1s", addr), addr, environ, "--log-level", "debug")
	await(t, 100*time.Millisecond, func() bool {
		_, s := d.get(t, "/metrics", "")
		return metric(s, "ehrsync_daemon_runs_total") >= 2
	}, "the daemon ran nothing:\n%s", d.out.String())
	http := func(name, method, path, auth, body string) {
		code, text := d.do(t, method, path, auth, body)
		all.add(fmt.Sprintf("HTTP %s: %s %s (%d)", name, method, path, code), text)
	}
	http("metrics", "GET", "/metrics", "", "")
	http("healthz", "GET", "/healthz", "", "")
	http("readyz", "GET", "/readyz", "", "")
	http("orgs", "GET", "/admin/orgs", token, "")
	http("orgs, wrong token", "GET", "/admin/orgs", token[:len(token)-1], "")
	http("sync", "POST", "/admin/orgs/"+org+"/sync", token, `{"tables": ["dbo.charges", "dbo.payer_mstr", "dbo.claims"]}`)
	http("sync unknown table", "POST", "/admin/orgs/"+org+"/sync", token, `{"tables": ["dbo.`+id+`"]}`)
	http("backfill", "POST", "/admin/orgs/"+org+"/backfill", token, `{"tables": ["dbo.claims"]}`)
	http("bad body", "POST", "/admin/orgs/"+org+"/sync", token, `{"tables": [`)
	http("pause", "POST", "/admin/orgs/"+org+"/pause", token, "")
	http("resume", "POST", "/admin/orgs/"+org+"/resume", token, "")
	http("position, no confirm", "POST", "/admin/orgs/"+org+"/tables/dbo.claims/position", token, `{"confirm": "nope"}`)
	await(t, 100*time.Millisecond, func() bool {
		var n int
		require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.backfills WHERE finished_at IS NOT NULL").Scan(&n))
		return n > 0
	}, "the admin backfill never finished:\n%s", d.out.String())
	http("orgs after", "GET", "/admin/orgs", token, "")
	http("metrics after", "GET", "/metrics", "", "")
	d.stop(t)
	all.add("daemon", d.out.String())
	require.Contains(t, d.out.String(), "dbo.charges")

	// The CLI.
	run("check", false, "check", "--config", e.config)
	run("check --json", false, "check", "--json", "--config", e.config)
	run("backfill", true, "backfill", "--config", e.config, "--org", org, "--table", "dbo.claims", "--table", "dbo.transactions")
	run("backfill of a failing table", false, "backfill", "--config", e.config, "--org", org, "--table", "dbo.charges")
	run("positions list", true, "positions", "list", "--config", e.config)
	run("positions list --json", true, "positions", "list", "--json", "--config", e.config)
	for _, table := range []string{"dbo.claims", "dbo.charges", "dbo.payer_mstr"} {
		run("positions show "+table, false, "positions", "show", "--config", e.config, "--org", org, "--table", table, "--history", "0")
		run("positions show --json "+table, false, "positions", "show", "--json", "--config", e.config, "--org", org, "--table", table)
	}
	run("validate", true, "validate", "--config", e.config)
	// secrets encrypt prints the enc: value, never the plaintext or the key.
	var encOut bytes.Buffer
	enc := e.command("secrets", "encrypt", "--for", "orgs[0].source.password", "--config", e.config)
	enc.Env = append(enc.Env, environ...)
	enc.Stdin = strings.NewReader(password + "\n")
	enc.Stdout, enc.Stderr = &encOut, &encOut
	require.NoError(t, enc.Run(), encOut.String())
	got, _, err := secrets.NewKeyring(key).Decrypt("org:"+org+"/source.password", strings.TrimSpace(encOut.String()))
	require.NoError(t, err)
	require.Equal(t, password, got)
	all.add("secrets encrypt", encOut.String())

	// The store's own records: every row of every ehrsync table.
	rows, err := e.store.Query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'ehrsync' ORDER BY 1")
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Contains(t, tables, "audit")
	for _, tb := range tables {
		rows, err := e.store.Query(ctx, fmt.Sprintf("SELECT x::text FROM ehrsync.%s x", pgx.Identifier{tb}.Sanitize()))
		require.NoError(t, err)
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		all.add("ehrsync."+tb, strings.Join(texts, "\n"))
	}
	var failedRuns int
	require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.audit WHERE outcome <> 'ok'").Scan(&failedRuns))
	require.Positive(t, failedRuns, "no failed run was audited")
	stopListen()
	<-listened
	all.add("NOTIFY payloads", notifies.String())
	require.NotEmpty(t, notifies.String())

	sentinels := []string{password, token, key.Encode(), storePassword, refused, unconvertible, poison}
	for _, s := range rowSentinels {
		sentinels = append(sentinels, s)
	}
	lines, hits := all.sweep(sentinels)
	for s, where := range hits {
		t.Errorf("sentinel %q leaked %d times:\n%s", s, len(where), strings.Join(where, "\n"))
	}
	// The sweep finds what is there: the store's tables hold the row values.
	var control capture
	for table := range rowSentinels {
		tb, _ := schemas.NextGen().Table(table)
		rows, err := e.store.Query(ctx, fmt.Sprintf("SELECT x::text FROM %s x", pgx.Identifier{sink.SchemaFor(org), tb.Name}.Sanitize()))
		require.NoError(t, err)
		texts, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		control.add(table, strings.Join(texts, "\n"))
	}
	_, found := control.sweep(sentinels)
	require.Len(t, found, len(rowSentinels), "the sweep does not find the row values in the store's own tables")

	figure(section, "captured sources (processes, HTTP bodies, store tables, NOTIFY)", len(all.parts))
	figure(section, "lines scanned", lines)
	figure(section, "sentinels (row values, source password, enc: key, store password, admin token)", len(sentinels))
	figure(section, "hits", len(hits))
}

// withSource returns a copy of the environment's configuration with the
// source's host, port and tls lines replaced (tls "" drops the line: the
// default, verified TLS) and a short connect timeout.
func (e *env) withSource(t *testing.T, host, port, tls string) string {
	t.Helper()
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	u, err := url.Parse(e.srcURL)
	require.NoError(t, err)
	cfg := string(b)
	for old, repl := range map[string]string{
		"      host: " + u.Hostname() + "\n": "      host: " + host + "\n      connect_timeout: 300ms\n",
		"      port: " + u.Port() + "\n":     "      port: " + port + "\n",
		"      tls: {mode: disable}\n":       tls,
	} {
		require.Contains(t, cfg, old)
		cfg = strings.Replace(cfg, old, repl, 1)
	}
	path := filepath.Join(t.TempDir(), "tls.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	return path
}

// TestReliabilitySecurityTLSVerificationOff: a source on another machine
// without verified TLS (verification or encryption turned off) is refused
// by every command (validate, check, sync, backfill, run) naming the
// setting and the fix, unless the source says insecure_transport: true,
// and then it is warned about by every command; left alone, TLS is on and
// a certificate the machine does not trust stops the connection, with no
// warning needed. For the store, a connection to another machine without
// sslmode=verify-full is refused unless store.insecure_transport is set,
// and warned about when it is; sslmode given twice is refused.
func TestReliabilitySecurityTLSVerificationOff(t *testing.T) {
	const section = "Security: TLS verification"
	e := newEnv(t, 1, 2000)
	const remote = "192.0.2.10" // TEST-NET-1: not loopback, never answers
	cases := []struct {
		name, tls, refused, warning string
	}{
		{"trust_server_certificate", "      tls: {mode: require, trust_server_certificate: true}\n",
			"orgs[0].source.tls.trust_server_certificate: true accepts any certificate from " + remote, "tls.trust_server_certificate is true"},
		{"mode disable", "      tls: {mode: disable}\n",
			"orgs[0].source.tls.mode: disable sends the connection to " + remote + ", which is not this machine, unencrypted", "tls.mode is disable"},
	}
	commands, refusals := 0, 0
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.withSource(t, remote, "5432", tc.tls)
			for _, args := range [][]string{
				{"validate", "--config", cfg},
				{"check", "--config", cfg},
				{"sync", "--config", cfg},
				{"backfill", "--config", cfg, "--org", org, "--table", "dbo.claims"},
			} {
				out, err := e.run(t, args...)
				require.Error(t, err, "%v accepted an unverified source on another machine:\n%s", args, out)
				require.Contains(t, out, tc.refused, args)
				require.Contains(t, out, "or set insecure_transport: true on the source", args)
				refusals++
			}
			cfg = e.withSource(t, remote, "5432", tc.tls+"      insecure_transport: true\n")
			for _, args := range [][]string{
				{"validate", "--config", cfg},
				{"check", "--config", cfg},
				{"check", "--json", "--config", cfg},
				{"sync", "--config", cfg},
				{"backfill", "--config", cfg, "--org", org, "--table", "dbo.claims"},
			} {
				out, _ := e.run(t, args...)
				require.Contains(t, out, tc.warning, "%v says nothing about verification being off:\n%s", args, out)
				if args[0] != "validate" && !slices.Contains(args, "--json") {
					require.Regexp(t, `"level":"WARN"[^\n]*`+regexpQuote(tc.warning), out, "%v: not a WARN log line", args)
				}
				commands++
			}
			addr := freeAddr(t)
			d := e.startDaemonWith(t, e.withDaemon(t, cfg, addr), addr, nil)
			d.stop(t)
			require.Regexp(t, `"level":"WARN"[^\n]*`+regexpQuote(tc.warning), d.out.String())
			commands++
		})
	}

	// Left alone, TLS is on and verified: a loopback server whose
	// certificate no trusted CA signed is refused, and nothing warns.
	ca := sourcetest.NewCA(t)
	tlsAddr := sourcetest.TLSAddr(t, ca.Issue(t, "localhost", time.Now().Add(-time.Hour), time.Now().Add(time.Hour)), true)
	_, port, err := net.SplitHostPort(tlsAddr)
	require.NoError(t, err)
	cfg := e.withSource(t, "localhost", port, "")
	out, err := e.run(t, "check", "--json", "--config", cfg)
	require.Error(t, err, out)
	require.Contains(t, out, source.ClassTLSUnknownCA.Code, out)
	out, err = e.run(t, "sync", "--config", cfg)
	require.Error(t, err, out)
	require.Contains(t, out, "certificate signed by unknown authority", out)
	require.NotContains(t, out, "insecure", out)
	for _, line := range strings.Split(out, "\n") {
		// A store of one role (the test server's superuser) is warned
		// about at every start: its audit is not protected.
		if strings.Contains(line, `"level":"WARN"`) {
			require.Contains(t, line, service.AuditUnprotected, out)
		}
	}

	// The store on another machine: refused without verify-full unless
	// store.insecure_transport says so, then warned about; sslmode twice
	// is refused even then.
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	insecureStore := filepath.Join(t.TempDir(), "insecure-store.yaml")
	require.NoError(t, os.WriteFile(insecureStore, []byte(strings.Replace(string(b), "store:\n", "store:\n  insecure_transport: true\n", 1)), 0o600))
	storeRefused := 0
	for _, tc := range []struct {
		config, url, want string
	}{
		{e.config, "postgres://ehrsync@" + remote + ":5432/store?connect_timeout=1", "store.url (env:TEST_STORE_URL): no sslmode"},
		{e.config, "postgres://ehrsync@" + remote + ":5432/store?connect_timeout=1&sslmode=require", "store.url (env:TEST_STORE_URL): sslmode=require (TLS without verifying the certificate's name) to the store at " + remote},
		{e.config, "postgres://ehrsync@" + remote + ":5432/store?connect_timeout=1&sslmode=disable", "or set store.insecure_transport: true to accept it"},
		{e.config, "postgres://ehrsync@" + remote + ":5432/store?connect_timeout=1&sslmode=prefer", "use sslmode=verify-full"},
		{insecureStore, "postgres://ehrsync@" + remote + ":5432/store?connect_timeout=1&sslmode=require", `"msg":"insecure store connection"`},
		{insecureStore, "postgres://ehrsync@" + remote + ":5432/store?connect_timeout=1&sslmode=verify-full&sslmode=disable", "store.url (env:TEST_STORE_URL): sslmode is given 2 times"},
	} {
		var buf bytes.Buffer
		cmd := exec.Command(binary, "--log-format", "json", "sync", "--config", tc.config)
		cmd.Env = append(os.Environ(), "TEST_STORE_URL="+tc.url)
		cmd.Stdout, cmd.Stderr = &buf, &buf
		require.Error(t, cmd.Run())
		require.Contains(t, buf.String(), tc.want)
		if tc.config == e.config || strings.Contains(tc.want, "given 2 times") {
			storeRefused++
		}
		commands++
	}
	out, err = e.run(t, "validate", "--config", insecureStore)
	require.NoError(t, err, out)
	require.Contains(t, out, "warning: store.insecure_transport is true")
	figure(section, "source settings that turn verification off, each refused by validate, check, sync, backfill", len(cases))
	figure(section, "refusals of an unverified source on another machine", refusals)
	figure(section, "the same with insecure_transport: true, warned by validate, check, sync, backfill, run", len(cases))
	figure(section, "commands checked", commands)
	figure(section, "untrusted certificate with the default settings", "refused ("+source.ClassTLSUnknownCA.Code+")")
	figure(section, "remote store without sslmode=verify-full, or sslmode twice", fmt.Sprintf("refused (%d cases)", storeRefused))
}

func regexpQuote(s string) string { return regexp.QuoteMeta(s) }

// withDaemon adds a server section listening on addr, without an admin
// token, to the configuration file cfg.
func (e *env) withDaemon(t *testing.T, cfg, addr string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "daemon.yaml")
	require.NoError(t, os.WriteFile(path, []byte("server:\n  listen: "+addr+"\n"+string(b)), 0o600))
	return path
}

// must returns v, or panics when ok is false.
func must[T any](v T, ok bool) T {
	if !ok {
		panic("must: not found")
	}
	return v
}

// TestReliabilitySecurityKeyFilePermissions: the real binary refuses a
// file: secret and an enc: key file that group or others may read, naming
// the file and chmod 600, in sync and check; at 0600 the same files work.
// (SSH private keys and Kerberos keytabs: pkg/source unit tests.)
func TestReliabilitySecurityKeyFilePermissions(t *testing.T) {
	const section = "Security: key file permissions"
	e := newEnv(t, 1, 2000)
	dir := t.TempDir()
	key, err := secrets.NewKey()
	require.NoError(t, err)
	keyFile := filepath.Join(dir, "secrets.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(key.Encode()+"\n"), 0o600))
	pwFile := filepath.Join(dir, "source-password")
	require.NoError(t, os.WriteFile(pwFile, []byte("pw-"+sentinelID(t)+"\n"), 0o600))
	enc, err := secrets.Encrypt(key, "org:"+org+"/source.password", "pw-"+sentinelID(t))
	require.NoError(t, err)
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	srcUser := strings.SplitN(strings.SplitN(string(b), "      user: ", 2)[1], "\n", 2)[0]
	withPassword := func(ref string) string {
		cfg := strings.Replace(string(b), "      user: "+srcUser+"\n", "      user: "+srcUser+"\n      password: "+ref+"\n", 1)
		path := filepath.Join(t.TempDir(), "perm.yaml")
		require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
		return path
	}
	environ := []string{secrets.EnvKeyFile + "=" + keyFile}
	refused := 0
	for _, tc := range []struct {
		name, file, cfg string
	}{
		{"file: secret", pwFile, withPassword("file:" + pwFile)},
		{"enc: key file", keyFile, withPassword(enc)},
	} {
		for _, mode := range []os.FileMode{0o644, 0o640, 0o604} {
			require.NoError(t, os.Chmod(tc.file, mode))
			for _, args := range [][]string{{"sync", "--config", tc.cfg}, {"check", "--config", tc.cfg}} {
				out, err := e.runWith(t, environ, args...)
				require.Error(t, err, "%s at %04o: %v passed:\n%s", tc.name, mode, args, out)
				require.Contains(t, out, "chmod 600 "+tc.file, "%s at %04o: %v", tc.name, mode, args)
				refused++
			}
		}
		require.NoError(t, os.Chmod(tc.file, 0o600))
		out, err := e.runWith(t, environ, "sync", "--config", tc.cfg)
		require.NoError(t, err, "%s at 0600:\n%s", tc.name, out)
	}
	e.requireEqual(t)
	figure(section, "group/world-readable key files refused (file: secret, enc: key; 3 modes; sync and check)", refused)
	figure(section, "refused by unit tests", "file: secrets, enc: key file, SSH private key, Kerberos keytab (held open), store sslkey")
}
