package integration

// Issue 17 §3 and §4, end to end: positions out of the admin API and the
// audit (the full position only in `ehrsync positions show`), and the admin
// API on its own listener with per-operator tokens.

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
	"github.com/ehrsync/ehrsync/watermarks"
)

// adminRequest sends method url with carol's (or anyone's) bearer token and
// an X-Ehrsync-Operator header naming mallory, which must change nothing.
func adminRequest(t *testing.T, client *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Ehrsync-Operator", "mallory")
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// serverConfig writes the environment's configuration with a server
// section.
func (e *env) serverConfig(t *testing.T, server string) string {
	t.Helper()
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "server.yaml")
	require.NoError(t, os.WriteFile(path, []byte("server:\n"+server+string(b)), 0o600))
	return path
}

// TestSecurityAdminOperators: `ehrsync admin token` makes an operator's
// token and writes only its hash, in a private file; the daemon serves the
// admin API on its own listener (not beside /metrics), takes the actor
// from the token (never from a header), checks and canonicalizes names and
// refuses control characters; a position whose key holds a sentinel is in
// no admin response and no audit row, while `positions show` prints it;
// `positions list` escapes a hostile table name.
func TestSecurityAdminOperators(t *testing.T) {
	const section = "Security: admin API operators"
	e := newEnv(t, 1, 2000)
	ctx := context.Background()
	e.sync(t)

	tokens := filepath.Join(t.TempDir(), "admin-tokens")
	var stdout, stderr bytes.Buffer
	cmd := e.command("admin", "token", "--operator", "carol", "--tokens-file", tokens)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), stderr.String())
	carol := strings.TrimSpace(stdout.String())
	require.NoError(t, admin.CheckToken(carol))
	fi, err := os.Stat(tokens)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	file, err := os.ReadFile(tokens)
	require.NoError(t, err)
	require.Equal(t, admin.TokenLine("carol", carol)+"\n", string(file))
	require.NotContains(t, string(file)+stderr.String(), carol, "only the token's hash is kept")

	addr, adminAddr := freeAddr(t), freeAddr(t)
	cfg := e.serverConfig(t, "  listen: "+addr+"\n  admin_listen: "+adminAddr+"\n  admin_token: env:TEST_ADMIN_TOKEN\n  admin_tokens_file: "+tokens+"\n")
	d := e.startDaemonWith(t, cfg, addr, nil)
	adminURL := "http://" + adminAddr

	// Not on the metrics listener; on its own, to carol and to "admin".
	code, body := adminRequest(t, http.DefaultClient, http.MethodGet, "http://"+addr+"/admin/orgs", carol, "")
	require.Equal(t, http.StatusNotFound, code, body)
	require.Contains(t, body, "server.admin_listen")
	code, body = adminRequest(t, http.DefaultClient, http.MethodGet, adminURL+"/metrics", carol, "")
	require.Equal(t, http.StatusNotFound, code, "metrics on the admin listener: %s", body)
	for _, token := range []string{carol, adminToken} {
		code, body = adminRequest(t, http.DefaultClient, http.MethodGet, adminURL+"/admin/orgs", token, "")
		require.Equal(t, http.StatusOK, code, body)
	}

	// Names: any case, canonical in effect and audit; control characters refused.
	code, body = adminRequest(t, http.DefaultClient, http.MethodPost, adminURL+"/admin/orgs/ST-MARY/pause", carol, "")
	require.Equal(t, http.StatusOK, code, body)
	code, body = adminRequest(t, http.DefaultClient, http.MethodPost, adminURL+"/admin/orgs/st-mary/resume", adminToken, "")
	require.Equal(t, http.StatusOK, code, body)
	code, body = adminRequest(t, http.DefaultClient, http.MethodPost, adminURL+"/admin/orgs/st-mary%1b%5b2J/pause", carol, "")
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "org name: control character U+001B")
	code, body = adminRequest(t, http.DefaultClient, http.MethodPost, adminURL+"/admin/orgs/st-mary/sync", carol, `{"tables": ["dbo.claims\r"]}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	require.Contains(t, body, "table name: control character U+000D")

	// §3: a rewind to a position whose key holds a sentinel, through the
	// admin API, by the table's name in another case.
	sentinel := "PHI-" + sentinelID(t) + "-KEY"
	pos, err := watermarks.Encode(watermarks.Snapshot{LastKey: watermarks.Key{watermarks.String("varchar(40)", sentinel)}})
	require.NoError(t, err)
	code, body = adminRequest(t, http.DefaultClient, http.MethodPost, adminURL+"/admin/orgs/st-mary/tables/CLAIMS/position", carol,
		`{"confirm": "st-mary/CLAIMS", "position": `+string(pos)+`}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"table": "dbo.claims"`)
	require.Contains(t, body, `"key_values": 1`)
	var responses []string
	responses = append(responses, body)
	code, body = adminRequest(t, http.DefaultClient, http.MethodGet, adminURL+"/admin/orgs", carol, "")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "snapshot after <key of 1 value>")
	responses = append(responses, body)
	d.stop(t)
	for _, r := range append(responses, d.out.String()) {
		require.NotContains(t, r, sentinel, "the key value left the store")
	}
	var leaked, kept int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.audit a WHERE a::text LIKE '%' || $1 || '%'`, sentinel).Scan(&leaked))
	require.Zero(t, leaked, "an audit row holds the key value")
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.position_history h WHERE h::text LIKE '%' || $1 || '%'`, sentinel).Scan(&kept))
	require.Positive(t, kept)
	out, err := e.run(t, "positions", "show", "--config", e.config, "--org", org, "--table", "dbo.claims")
	require.NoError(t, err, out)
	require.Contains(t, out, `snapshot after key ("`+sentinel+`")`, "positions show prints the full position")
	out, err = e.run(t, "positions", "list", "--config", e.config)
	require.NoError(t, err, out)
	require.NotContains(t, out, sentinel)

	// Actors: the credential's operator, never the header's.
	rows, err := e.store.Query(ctx, `SELECT actor || ' ' || what || ' ' || coalesce(table_name, '-') FROM ehrsync.audit WHERE action = 'admin' ORDER BY id`)
	require.NoError(t, err)
	var actors []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		actors = append(actors, s)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"admin-api:carol pause -", "admin-api:admin resume -", "admin-api:carol rewind dbo.claims"}, actors)
	var mallory int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT (SELECT count(*) FROM ehrsync.audit a WHERE a::text LIKE '%mallory%')
		+ (SELECT count(*) FROM ehrsync.position_history h WHERE h::text LIKE '%mallory%')`).Scan(&mallory))
	require.Zero(t, mallory)

	// A hostile table name in the positions store is printed escaped.
	require.NoError(t, watermarks.NewStore(e.store).Reset(ctx, org, "dbo.evil\x1b[2J\rname", watermarks.CT{Version: 1}, "test", "test"))
	out, err = e.run(t, "positions", "list", "--config", e.config)
	require.NoError(t, err, out)
	require.Contains(t, out, `dbo.evil\x1b[2J\rname`)
	require.NotContains(t, out, "\x1b")
	require.NotContains(t, out, "\r")

	figure(section, "operators (admin_token and tokens file)", 2)
	figure(section, "sentinel key values in admin responses and audit rows", leaked)
	figure(section, "actors taken from a header", mallory)
}

// selfSignedPair writes a certificate for 127.0.0.1 and its private key
// (0600) and returns their paths and a pool trusting it.
func selfSignedPair(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	ca := sourcetest.NewCA(t)
	certFile, keyFile = ca.IssueFiles(t, "127.0.0.1", 0o600)
	return certFile, keyFile, ca.Pool()
}

// TestSecurityAdminListenerRefusals: the daemon refuses to start with an
// admin API off loopback without TLS (validate too, naming the fix), a
// weak admin token, or a tokens file others may read; off loopback with
// TLS, validate warns, and the daemon serves the admin API over TLS only.
func TestSecurityAdminListenerRefusals(t *testing.T) {
	const section = "Security: admin API listener"
	e := newEnv(t, 1, 2000)
	_, port, err := net.SplitHostPort(freeAddr(t))
	require.NoError(t, err)
	everywhere := "0.0.0.0:" + port
	readable := filepath.Join(t.TempDir(), "admin-tokens")
	require.NoError(t, os.WriteFile(readable, []byte(admin.TokenLine("carol", adminToken)+"\n"), 0o644))
	require.NoError(t, os.Chmod(readable, 0o644))

	refusals := 0
	for _, tc := range []struct {
		name, server string
		environ      []string
		want         string
		validate     bool // validate refuses it too (the others need the secret or the file)
	}{
		{"off loopback without tls", "  admin_listen: " + everywhere + "\n  admin_token: env:TEST_ADMIN_TOKEN\n", nil,
			"server.admin_listen: " + everywhere + " is not a loopback address, and bearer tokens must not cross a network in clear text: set server.admin_tls (cert_file, key_file), or listen on 127.0.0.1", true},
		{"weak admin token", "  admin_listen: " + freeAddr(t) + "\n  admin_token: env:WEAK_TOKEN\n", []string{"WEAK_TOKEN=s3cret-but-short"},
			"server.admin_token: admin token too weak", false},
		{"tokens file others may read", "  admin_listen: " + freeAddr(t) + "\n  admin_tokens_file: " + readable + "\n", nil,
			"server.admin_tokens_file: " + readable + " is open to group or others (mode 0644): run chmod 600", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := e.serverConfig(t, "  listen: "+freeAddr(t)+"\n"+tc.server)
			out, err := e.runWith(t, append([]string{"TEST_ADMIN_TOKEN=" + adminToken}, tc.environ...), "run", "--config", cfg)
			require.Error(t, err, "the daemon started:\n%s", out)
			require.Contains(t, out, tc.want)
			require.NotContains(t, out, "s3cret-but-short")
			require.NotContains(t, out, adminToken)
			refusals++
			out, err = e.run(t, "validate", "--config", cfg)
			if tc.validate {
				require.Error(t, err, out)
				require.Contains(t, out, tc.want)
			} else {
				require.NoError(t, err, out)
			}
		})
	}

	// Off loopback with TLS: validate warns; the daemon answers over TLS
	// and not in clear text.
	certFile, keyFile, pool := selfSignedPair(t)
	addr := freeAddr(t)
	cfg := e.serverConfig(t, "  listen: "+addr+"\n  admin_listen: "+everywhere+"\n  admin_token: env:TEST_ADMIN_TOKEN\n"+
		"  admin_tls: {cert_file: "+certFile+", key_file: "+keyFile+"}\n")
	out, err := e.run(t, "validate", "--config", cfg)
	require.NoError(t, err, out)
	require.Contains(t, out, "warning: server.admin_listen "+everywhere+" is not a loopback address: the admin API (TLS, per-operator tokens) is reachable from other machines")
	d := e.startDaemonWith(t, cfg, addr, nil)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	code, body := adminRequest(t, client, http.MethodGet, "https://127.0.0.1:"+port+"/admin/orgs", adminToken, "")
	require.Equal(t, http.StatusOK, code, body)
	resp, err := http.Get("http://127.0.0.1:" + port + "/admin/orgs")
	if err == nil {
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode, "the admin API answered in clear text")
	}
	d.stop(t)
	require.Contains(t, d.out.String(), "admin API reachable from other machines")
	require.NotContains(t, d.out.String(), adminToken)

	figure(section, "start refusals (off loopback without TLS, weak token, readable tokens file)", refusals)
	figure(section, "admin API off loopback", "TLS only, warned by validate and at start")
}
