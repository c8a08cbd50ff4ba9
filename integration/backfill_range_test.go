package integration

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
)

// claimRows returns "claim_id|status|claim_id_nbr|cob" of the claims whose
// key is in [lo, hi] (in == true) or outside it, from the source's dbo or
// the store's org schema.
func claimRows(t *testing.T, pool *pgxpool.Pool, schema, lo, hi string, in bool) []string {
	t.Helper()
	cond := "claim_id BETWEEN $1::uuid AND $2::uuid"
	if !in {
		cond = "NOT (" + cond + ")"
	}
	rows, err := pool.Query(context.Background(), fmt.Sprintf(
		`SELECT claim_id::text || '|' || status || '|' || claim_id_nbr::text || '|' || cob::text FROM %s.claims WHERE %s`, schema, cond), lo, hi)
	require.NoError(t, err)
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	sort.Strings(out)
	return out
}

// TestRangedBackfillKilledMidRangeResumes runs the real binary's
// `backfill --from --to` on claims while the store's copy is damaged,
// SIGKILLs it part way through the range, and runs it again: it resumes
// after its last committed chunk, and in the end the rows in the range
// equal the source (damaged rows repaired, missing rows back, rows deleted
// at the source removed), the rows outside the range are untouched, and the
// table's incremental position never moved.
func TestRangedBackfillKilledMidRangeResumes(t *testing.T) {
	e := newEnv(t, 20, 10)
	ctx := context.Background()
	e.sync(t)
	const schema = "st_mary"

	var keys []string
	rows, err := e.src.Query(ctx, "SELECT claim_id::text FROM dbo.claims ORDER BY claim_id")
	require.NoError(t, err)
	for rows.Next() {
		var k string
		require.NoError(t, rows.Scan(&k))
		keys = append(keys, k)
	}
	require.NoError(t, rows.Err())
	lo, hi := keys[len(keys)/5], keys[len(keys)*4/5]
	require.Greater(t, len(keys)*3/5, 60, "too few claims for a range of several chunks")

	var incremental []byte
	require.NoError(t, e.store.QueryRow(ctx, `SELECT position::text FROM ehrsync.positions WHERE org = $1 AND table_name = 'dbo.claims'`, org).Scan(&incremental))

	// Damage the store's copy everywhere; lose two rows of the range; and
	// delete two rows of the range at the source.
	_, err = e.store.Exec(ctx, "UPDATE "+schema+".claims SET status = 'damaged'")
	require.NoError(t, err)
	_, err = e.store.Exec(ctx, "DELETE FROM "+schema+".claims WHERE claim_id = ANY($1::uuid[])", []string{keys[len(keys)/2], keys[len(keys)/2+3]})
	require.NoError(t, err)
	_, err = e.src.Exec(ctx, "DELETE FROM dbo.claims WHERE claim_id = ANY($1::uuid[])", []string{keys[len(keys)/3], keys[len(keys)/3+1]})
	require.NoError(t, err)
	outside := claimRows(t, e.store, schema, lo, hi, false)
	require.NotEmpty(t, outside)

	args := []string{"--log-format", "json", "backfill", "--config", e.config, "--org", org, "--table", "dbo.claims", "--from", lo, "--to", hi}
	var out1 bytes.Buffer
	cmd := e.command(args...)
	cmd.Env = append(cmd.Env, "USER=alice")
	cmd.Stdout, cmd.Stderr = &out1, &out1
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	chunks := func() int {
		var n int
		require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.position_history
			WHERE org = $1 AND table_name = 'dbo.claims#backfill' AND reason = 'backfill'`, org).Scan(&n))
		return n
	}
	await(t, time.Millisecond, func() bool { return chunks() >= 2 }, "no chunk committed:\n%s", &out1)
	require.NoError(t, cmd.Process.Kill()) // SIGKILL: no cleanup at all
	<-done
	var unfinished int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.backfills
		WHERE org = $1 AND table_name = 'dbo.claims#backfill' AND finished_at IS NULL`, org).Scan(&unfinished))
	require.Equal(t, 1, unfinished, "the backfill finished before the kill: the test proves nothing (make the range longer)")
	committed := chunks()
	var saved int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.positions
		WHERE org = $1 AND table_name = 'dbo.claims#backfill' AND kind = 'snapshot'`, org).Scan(&saved))
	require.Equal(t, 1, saved, "the backfill's own position is saved with its chunks")

	var out2 bytes.Buffer
	cmd = e.command(args...)
	cmd.Env = append(cmd.Env, "USER=alice")
	cmd.Stdout, cmd.Stderr = &out2, &out2
	require.NoError(t, cmd.Run(), out2.String())
	require.Contains(t, out2.String(), "(resumed)")
	require.Contains(t, out2.String(), ", done")
	require.Greater(t, chunks(), committed)

	// The range equals the source; outside it nothing changed.
	require.Equal(t, claimRows(t, e.src, "dbo", lo, hi, true), claimRows(t, e.store, schema, lo, hi, true))
	require.Equal(t, outside, claimRows(t, e.store, schema, lo, hi, false))
	// The incremental position did not move; the backfill's is gone.
	var after []byte
	require.NoError(t, e.store.QueryRow(ctx, `SELECT position::text FROM ehrsync.positions WHERE org = $1 AND table_name = 'dbo.claims'`, org).Scan(&after))
	require.Equal(t, string(incremental), string(after))
	var left int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.positions WHERE table_name LIKE '%#backfill'`).Scan(&left))
	require.Zero(t, left)
	var moves int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.position_history
		WHERE org = $1 AND table_name = 'dbo.claims' AND id > (SELECT min(id) FROM ehrsync.position_history WHERE table_name = 'dbo.claims#backfill')`, org).Scan(&moves))
	require.Zero(t, moves, "the table's position history is untouched")

	// Resumed, not restarted: only the very first chunk started from no position.
	var fromStart int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.position_history
		WHERE table_name = 'dbo.claims#backfill' AND reason = 'backfill' AND from_position IS NULL`).Scan(&fromStart))
	require.Equal(t, 1, fromStart)
	e.requireNoDoubleAppliedChunk(t)

	// The operator is in the history (start, chunks, end) and the audit;
	// key values are in neither the output nor the logs.
	var byAlice, starts int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FILTER (WHERE actor = 'alice'), count(*) FILTER (WHERE note LIKE 'backfill of a key range on (claim_id)%')
		FROM ehrsync.position_history WHERE table_name = 'dbo.claims#backfill'`).Scan(&byAlice, &starts))
	require.Equal(t, 1, starts)
	require.Greater(t, byAlice, committed)
	var audited int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM ehrsync.audit
		WHERE action = 'backfill' AND actor = 'alice' AND table_name = 'dbo.claims' AND what LIKE 'key range%' AND outcome = 'ok'`).Scan(&audited))
	require.Equal(t, 1, audited)
	for _, out := range []string{out1.String(), out2.String()} {
		require.NotContains(t, out, lo)
		require.NotContains(t, out, hi)
	}

	// A range that does not parse is refused, naming the column, not the value.
	out, err := e.run(t, "backfill", "--config", e.config, "--org", org, "--table", "dbo.claims", "--from", "patient-42")
	require.Error(t, err)
	require.Contains(t, out, "column claim_id (uniqueidentifier): want a GUID")
	require.NotContains(t, out, "patient-42")
	out, err = e.run(t, "backfill", "--config", e.config, "--org", org, "--from", lo)
	require.Error(t, err)
	require.Contains(t, out, "give exactly one --table")
}
