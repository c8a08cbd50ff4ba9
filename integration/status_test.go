package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/status"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// outputs runs the binary with args and returns its stdout, its stderr and
// its exit code.
func (e *env) outputs(t *testing.T, environ []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := e.command(append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(cmd.Env, environ...)
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if err != nil {
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%s\n%s", out.String(), errOut.String())
		code = ee.ExitCode()
	}
	return out.String(), errOut.String(), code
}

// statusJSON runs `ehrsync status --json` with args and decodes its report.
func (e *env) statusJSON(t *testing.T, environ []string, args ...string) (*status.Report, string, int) {
	t.Helper()
	out, errOut, code := e.outputs(t, environ, append([]string{"status", "--json"}, args...)...)
	var rep status.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), "stdout:\n%s\nstderr:\n%s", out, errOut)
	return &rep, errOut, code
}

// TestStatusCommand: `ehrsync status` on the real binary, from the store
// without a daemon: every table never run, then synced; a key value in a
// position never printed; stale past --stale-after and failing tables make
// it exit 1, naming them.
func TestStatusCommand(t *testing.T) {
	e := newEnv(t, 1, 500)
	ctx := context.Background()
	tables := len(schemas.NextGen().Tables())

	out, errOut, code := e.outputs(t, nil, "status", "--config", e.config)
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	require.Equal(t, tables, strings.Count(out, "never run  "), out)
	require.Contains(t, out, fmt.Sprintf("%d tables: %d never run; 0 need attention", tables, tables))

	e.sync(t)
	rep, errOut, code := e.statusJSON(t, nil, "--config", e.config)
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "store", rep.From)
	require.Len(t, rep.Orgs, 1)
	require.Len(t, rep.Orgs[0].Tables, tables)
	for _, tb := range rep.Orgs[0].Tables {
		require.Equal(t, status.StateSynced, tb.State, tb.Name)
		require.Equal(t, status.OutcomeOK, tb.LastRun.Outcome, tb.Name)
		require.NotEqual(t, "auto", tb.Strategy, tb.Name)
		require.False(t, tb.NextRun.IsZero(), tb.Name)
	}

	// --watch redraws until interrupted, then exits as its last report says.
	watch := e.command("status", "--config", e.config, "--watch=1s")
	var watched lockedBuffer
	watch.Stdout, watch.Stderr = &watched, &watched
	require.NoError(t, watch.Start())
	require.Eventually(t, func() bool { return strings.Count(watched.String(), "status as of") >= 2 }, time.Minute, 50*time.Millisecond)
	require.NoError(t, watch.Process.Signal(os.Interrupt))
	require.NoError(t, watch.Wait(), watched.String())

	// A position after a key of the store's own rows: its summary only.
	claims, ok := schemas.NextGen().Table("dbo.claims")
	require.True(t, ok)
	var key string
	require.NoError(t, e.store.QueryRow(ctx, "SELECT claim_id::text FROM "+
		pgx.Identifier{sink.SchemaFor(org), sink.TableName(claims)}.Sanitize()+" LIMIT 1").Scan(&key))
	pos, err := watermarks.Encode(watermarks.Snapshot{LastKey: watermarks.Key{watermarks.String("uniqueidentifier", key)}})
	require.NoError(t, err)
	out, err = e.run(t, "positions", "reset", "--config", e.config, "--org", org, "--table", "dbo.claims",
		"--to", string(pos), "--confirm", org+"/dbo.claims")
	require.NoError(t, err, out)
	var stored string
	require.NoError(t, e.store.QueryRow(ctx, "SELECT position::text FROM ehrsync.positions WHERE table_name = 'dbo.claims'").Scan(&stored))
	require.Contains(t, stored, key, "the position holds the key value")
	text, errOut, code := e.outputs(t, nil, "status", "--config", e.config, "--org", org, "--table", "claims")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, text, "snapshotting")
	require.Equal(t, 1, strings.Count(text, "dbo."), "only the table asked for:\n%s", text)
	js, _, _ := e.outputs(t, nil, "status", "--config", e.config, "--json")
	for _, o := range []string{text, js, errOut} {
		require.NotContains(t, o, key)
	}
	// The hand-made position goes: the next sync re-snapshots the table.
	out, err = e.run(t, "positions", "reset", "--config", e.config, "--org", org, "--table", "dbo.claims", "--confirm", org+"/dbo.claims")
	require.NoError(t, err, out)

	// Stale past the threshold: exit 1, every table named.
	_, errOut, code = e.outputs(t, nil, "status", "--config", e.config, "--stale-after", "1ns")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, org+"/dbo.payer_mstr (stale)")

	// A table the source lost fails its sync: failing, exit 1.
	_, err = e.src.Exec(ctx, "ALTER TABLE dbo.payer_mstr RENAME TO payer_mstr_gone")
	require.NoError(t, err)
	out, err = e.run(t, "sync", "--config", e.config)
	require.Error(t, err, out)
	rep, errOut, code = e.statusJSON(t, nil, "--config", e.config)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, org+"/dbo.payer_mstr (failing)")
	require.NotContains(t, errOut, "dbo.claims")
	for _, tb := range rep.Orgs[0].Tables {
		if tb.Name == "dbo.payer_mstr" {
			require.Equal(t, status.StateFailing, tb.State)
			require.Equal(t, 1, tb.Failures)
			require.NotEmpty(t, tb.LastRun.ErrorClass)
		}
	}

	_, errOut, code = e.outputs(t, nil, "status", "--config", e.config, "--table", "dbo.claims")
	require.Equal(t, 2, code, "--table without --org is a usage error: %s", errOut)
	_, errOut, code = e.outputs(t, nil, "status", "--config", e.config, "--watch=1ms")
	require.Equal(t, 2, code, errOut)
}

// TestStatusFromTheDaemon: `ehrsync status --admin` reads the report from
// a running daemon's admin API, with the daemon's own next run and state;
// without a token it is refused before any request, with a wrong one the
// daemon's 401 is the error.
func TestStatusFromTheDaemon(t *testing.T) {
	e := newEnv(t, 1, 500)
	d := e.startDaemon(t, "1h")
	code, body := d.do(t, http.MethodPost, "/admin/orgs/"+org+"/sync", adminToken, "")
	require.Equal(t, http.StatusAccepted, code, body)
	require.Eventually(t, func() bool { return e.converged(t) }, 2*time.Minute, 200*time.Millisecond)

	admin := "http://" + d.adminAddr
	token := []string{"TEST_ADMIN_TOKEN=" + adminToken}
	var rep *status.Report
	require.Eventually(t, func() bool {
		var code int
		rep, _, code = e.statusJSON(t, token, "--admin", admin, "--admin-token", "env:TEST_ADMIN_TOKEN", "--org", org)
		return code == 0
	}, time.Minute, 200*time.Millisecond, "status never exited 0 after the daemon's sync")
	require.Equal(t, "daemon", rep.From)
	require.Len(t, rep.Orgs, 1)
	require.NotNil(t, rep.Orgs[0].Daemon)
	next := rep.Orgs[0].Daemon.NextRun
	require.False(t, next.IsZero())
	for _, tb := range rep.Orgs[0].Tables {
		require.Equal(t, status.StateSynced, tb.State, tb.Name)
		require.Equal(t, "daemon", tb.LastRun.Actor, tb.Name)
		require.Equal(t, next, tb.NextRun, tb.Name)
	}

	text, errOut, code := e.outputs(t, token, "status", "--admin", admin, "--admin-token", "env:TEST_ADMIN_TOKEN")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, text, "from the daemon")
	require.Contains(t, text, org+": daemon idle")

	_, errOut, code = e.outputs(t, nil, "status", "--admin", admin, "--admin-token", "env:EHRSYNC_TEST_NO_SUCH_TOKEN")
	require.Equal(t, 2, code, errOut)
	require.Contains(t, errOut, "EHRSYNC_TEST_NO_SUCH_TOKEN")
	_, errOut, code = e.outputs(t, []string{"TEST_ADMIN_TOKEN=wrong"}, "status", "--admin", admin, "--admin-token", "env:TEST_ADMIN_TOKEN")
	require.Equal(t, 1, code)
	require.Contains(t, errOut, "401")
	_, errOut, code = e.outputs(t, token, "status", "--admin", "http://db.example:9465", "--admin-token", "env:TEST_ADMIN_TOKEN")
	require.Equal(t, 2, code, "a token in clear text off loopback: %s", errOut)
}

// TestVerifyCommand: `ehrsync verify` on the real binary: after a sync
// every table equals the source (exit 0); a store row altered and another
// deleted make it exit 1 naming the tables, with counts and never a row
// value.
func TestVerifyCommand(t *testing.T) {
	e := newEnv(t, 1, 500)
	ctx := context.Background()
	e.sync(t)
	out, errOut, code := e.outputs(t, nil, "verify", "--config", e.config, "--org", org)
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "the store equals the source")
	require.Equal(t, len(schemas.NextGen().Tables()), strings.Count(out, " equal\n"), out)

	// One claim altered in the store, one charge deleted from it.
	cat := schemas.NextGen()
	claims, _ := cat.Table("dbo.claims")
	charges, _ := cat.Table("dbo.charges")
	ident := func(tb *schemas.Table) string {
		return pgx.Identifier{sink.SchemaFor(org), sink.TableName(tb)}.Sanitize()
	}
	const altered = "Alt3red-ICN-Sentinel"
	var claimKey, chargeKey string
	require.NoError(t, e.store.QueryRow(ctx, "UPDATE "+ident(claims)+" SET payer_claim_control_nbr = $1 WHERE claim_id = (SELECT claim_id FROM "+
		ident(claims)+" ORDER BY claim_id LIMIT 1) RETURNING claim_id::text", altered).Scan(&claimKey))
	require.NoError(t, e.store.QueryRow(ctx, "DELETE FROM "+ident(charges)+" WHERE ctid = (SELECT ctid FROM "+
		ident(charges)+" LIMIT 1) RETURNING "+pgx.Identifier{charges.Key[0]}.Sanitize()+"::text").Scan(&chargeKey))

	out, errOut, code = e.outputs(t, nil, "verify", "--config", e.config, "--org", org)
	require.Equal(t, 1, code, "%s\n%s", out, errOut)
	require.Contains(t, errOut, "2 of ")
	require.Contains(t, errOut, "dbo.claims")
	require.Contains(t, errOut, "dbo.charges")
	js, _, code := e.outputs(t, nil, "verify", "--config", e.config, "--org", org, "--json")
	require.Equal(t, 1, code)
	for _, o := range []string{out, errOut, js} {
		require.NotContains(t, o, altered)
		require.NotContains(t, o, claimKey)
		require.NotContains(t, o, chargeKey)
	}
	var rep struct {
		Tables []struct {
			Table     string
			Missing   int64
			Different int64
		}
		Equal bool
	}
	require.NoError(t, json.Unmarshal([]byte(js), &rep), js)
	require.False(t, rep.Equal)
	for _, tb := range rep.Tables {
		switch tb.Table {
		case "dbo.claims":
			require.Equal(t, int64(1), tb.Different)
		case "dbo.charges":
			require.Equal(t, int64(1), tb.Missing)
		}
	}

	// Only the tables asked for.
	out, errOut, code = e.outputs(t, nil, "verify", "--config", e.config, "--org", org, "--table", "dbo.payer_mstr")
	require.Equal(t, 0, code, "%s\n%s", out, errOut)
	require.Contains(t, out, "in 1 table(s): the store equals the source")
	_, errOut, code = e.outputs(t, nil, "verify", "--config", e.config)
	require.Equal(t, 2, code, "--org is required: %s", errOut)
}
