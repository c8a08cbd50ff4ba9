package integration

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// run runs the binary with args and returns its combined output and error.
func (e *env) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	cmd := e.command(append([]string{"--log-format", "json"}, args...)...)
	cmd.Env = append(cmd.Env, "USER=alice")
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestBackfillAndPositionsCLI: `ehrsync backfill` re-snapshots a table
// under its lease, prints progress, records the operator in the position
// history and the audit; `ehrsync positions list|show|reset` show and move
// positions with a confirmation.
func TestBackfillAndPositionsCLI(t *testing.T) {
	e := newEnv(t, 6, 200)
	ctx := context.Background()
	e.sync(t)

	out, err := e.run(t, "positions", "list", "--config", e.config)
	require.NoError(t, err, out)
	require.Contains(t, out, "dbo.claims")

	// A backfill while the source changes; the store still converges.
	e.simulate(t, 1)
	out, err = e.run(t, "backfill", "--config", e.config, "--org", org, "--table", "dbo.claims", "--table", "dbo.charges")
	require.NoError(t, err, out)
	require.Contains(t, out, org+" dbo.claims: ")
	require.Contains(t, out, "rows/s")
	require.Contains(t, out, ", done")
	var resets, chunks int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FILTER (WHERE reason = 'reset'), count(*) FILTER (WHERE reason <> 'reset')
		FROM ehrsync.position_history WHERE org = $1 AND table_name = 'dbo.claims' AND actor = 'alice'`, org).Scan(&resets, &chunks))
	require.Equal(t, 1, resets, "the backfill's reset is recorded with the operator")
	require.Positive(t, chunks, "the backfill's chunks are recorded with the operator")
	var audited int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.audit WHERE action = 'backfill' AND actor = 'alice' AND outcome = 'ok'`).Scan(&audited))
	require.Equal(t, 2, audited)
	var unfinished int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.backfills WHERE finished_at IS NULL`).Scan(&unfinished))
	require.Zero(t, unfinished)
	e.sync(t)
	e.requireEqual(t)
	e.requireNoDoubleAppliedChunk(t)

	out, err = e.run(t, "positions", "show", "--config", e.config, "--org", org, "--table", "dbo.claims")
	require.NoError(t, err, out)
	require.Contains(t, out, "alice")
	require.Contains(t, out, "backfill: re-snapshot")

	// Reset needs the confirmation.
	out, err = e.run(t, "positions", "reset", "--config", e.config, "--org", org, "--table", "dbo.claims")
	require.Error(t, err)
	require.Contains(t, out, "--confirm "+org+"/dbo.claims")
	out, err = e.run(t, "positions", "reset", "--config", e.config, "--org", org, "--table", "dbo.claims",
		"--confirm", org+"/dbo.claims", "--note", "test reset")
	require.NoError(t, err, out)
	require.True(t, strings.Contains(out, "reset:") && strings.Contains(out, "-> -"), out)
	var n int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.positions WHERE org = $1 AND table_name = 'dbo.claims'`, org).Scan(&n))
	require.Zero(t, n)
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.audit WHERE action = 'admin' AND what = 'reset' AND actor = 'alice'`).Scan(&n))
	require.Equal(t, 1, n)
	e.sync(t)
	e.requireEqual(t)
}
