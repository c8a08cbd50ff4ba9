package integration

import (
	"context"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/service"
)

// roleEnv is an end-to-end setup whose store has the roles of
// docs/operations-store.md: an owner that migrates, and a writer that syncs.
type roleEnv struct {
	*env
	ownerURL, writerURL string
	writer              string // the writer role's name
	// ownerCfg has store.owner_url (migrate, and every start, as the
	// owner); writerCfg only store.url: a daemon's, when the owner
	// migrates in a separate step.
	ownerCfg, writerCfg string
	environ             []string
}

// newRoleEnv creates the owner and writer roles with the database
// privileges docs/operations-store.md grants, on an empty store.
func newRoleEnv(t *testing.T) *roleEnv {
	t.Helper()
	ctx := context.Background()
	e := newEnv(t, 2, 500)
	// newEnv migrated the store as the server's superuser: start empty.
	_, err := e.store.Exec(ctx, "DROP SCHEMA ehrsync, ehrsync_lake CASCADE")
	require.NoError(t, err)
	db := pgtest.Database(t, e.storeURL)
	r := &roleEnv{env: e}
	// As in docs/operations-store.md.
	_, err = e.store.Exec(ctx, "REVOKE ALL ON DATABASE "+db+" FROM PUBLIC")
	require.NoError(t, err)
	r.ownerURL = pgtest.Role(t, e.storeURL, "ehrsync_owner", "GRANT CONNECT, CREATE ON DATABASE "+db+" TO %s")
	r.writerURL = pgtest.Role(t, e.storeURL, "ehrsync_writer", "GRANT CONNECT, TEMPORARY ON DATABASE "+db+" TO %s")
	u, err := url.Parse(r.writerURL)
	require.NoError(t, err)
	r.writer = u.User.Username()

	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	const store = "store:\n  url: env:TEST_STORE_URL\n"
	require.Contains(t, string(b), store)
	write := func(name, section string) string {
		p := filepath.Join(t.TempDir(), name)
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(b), store, section, 1)), 0o600))
		return p
	}
	r.ownerCfg = write("owner.yaml", "store:\n  url: env:TEST_WRITER_URL\n  owner_url: env:TEST_OWNER_URL\n")
	r.writerCfg = write("writer.yaml", "store:\n  url: env:TEST_WRITER_URL\n")
	r.environ = []string{"TEST_WRITER_URL=" + r.writerURL, "TEST_OWNER_URL=" + r.ownerURL, "USER=alice"}
	return r
}

func (r *roleEnv) run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return r.runWith(t, r.environ, args...)
}

func (r *roleEnv) pool(t *testing.T, u string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), u)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// exitCodeOf is a finished command's exit code.
func exitCodeOf(t *testing.T, err error) int {
	t.Helper()
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	return ee.ExitCode()
}

// TestAuditWriterRoleCannotEditTheAudit: the owner
// migrates, the writer syncs, backfills and reconciles with only the
// privileges the documentation grants it, and then cannot UPDATE, DELETE
// or TRUNCATE the audit or the position history, nor lift their triggers;
// it verifies the chain but cannot prune it; the owner can.
func TestAuditWriterRoleCannotEditTheAudit(t *testing.T) {
	ctx := context.Background()
	r := newRoleEnv(t)
	out, err := r.run(t, "migrate", "--config", r.ownerCfg)
	require.NoError(t, err, out)
	require.Contains(t, out, "store schema ehrsync at version")
	require.NotContains(t, out, "audit is not protected", out)

	out, err = r.run(t, "sync", "--config", r.writerCfg)
	require.NoError(t, err, out)
	require.NotContains(t, out, "audit is not protected", out)
	r.simulate(t, 1)
	out, err = r.run(t, "backfill", "--config", r.writerCfg, "--org", org, "--table", "dbo.claims")
	require.NoError(t, err, out)
	out, err = r.run(t, "sync", "--config", r.ownerCfg) // the owner's grants at start change nothing for the writer
	require.NoError(t, err, out)
	require.NotContains(t, out, "audit is not protected", out)
	r.requireEqual(t)

	var runs, backfills, reconciled, history int
	require.NoError(t, r.store.QueryRow(ctx, `SELECT (SELECT count(*) FROM ehrsync.audit WHERE action = 'run' AND actor = 'alice' AND outcome = 'ok'),
		(SELECT count(*) FROM ehrsync.audit WHERE action = 'backfill' AND actor = 'alice'),
		(SELECT count(*) FROM ehrsync.reconciliations), (SELECT count(*) FROM ehrsync.position_history)`).Scan(&runs, &backfills, &reconciled, &history))
	require.Positive(t, runs)
	require.Equal(t, 1, backfills)
	require.Positive(t, reconciled, "a reconciliation ran as the writer")
	var tableOwner string
	require.NoError(t, r.store.QueryRow(ctx, "SELECT tableowner FROM pg_tables WHERE schemaname = 'st_mary' AND tablename = 'claims'").Scan(&tableOwner))
	require.Equal(t, r.writer, tableOwner, "the writer synced into the schema the owner made for it")

	writer := r.pool(t, r.writerURL)
	refused := 0
	for _, table := range []string{"ehrsync.audit", "ehrsync.position_history"} {
		for _, stmt := range []string{
			"UPDATE " + table + " SET actor = 'mallory'",
			"DELETE FROM " + table,
			"TRUNCATE " + table,
			"ALTER TABLE " + table + " DISABLE TRIGGER USER",
			"DROP TABLE " + table,
		} {
			_, err := writer.Exec(ctx, stmt)
			var pg *pgconn.PgError
			require.ErrorAs(t, err, &pg, "the writer ran %s", stmt)
			require.Equal(t, "42501", pg.Code, "%s: %v", stmt, err)
			refused++
		}
	}
	var historyAfter int
	require.NoError(t, r.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.position_history").Scan(&historyAfter))
	require.Equal(t, history, historyAfter)

	out, err = r.run(t, "audit", "verify", "--config", r.writerCfg)
	require.NoError(t, err, out)
	require.Contains(t, out, "audit chain intact")
	out, err = r.run(t, "audit", "prune", "--config", r.writerCfg, "--older-than", "1d")
	require.Equal(t, 1, exitCodeOf(t, err), out)
	require.Contains(t, out, "only the ehrsync schema's owner may")
	out, err = r.run(t, "audit", "prune", "--config", r.ownerCfg, "--older-than", "400d")
	require.NoError(t, err, out)
	require.Contains(t, out, "pruned 0 audit rows and 0 position history rows")
	var pruned int
	require.NoError(t, r.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.audit WHERE action = 'admin' AND actor = 'alice' AND what LIKE 'prune:%'").Scan(&pruned))
	require.Equal(t, 1, pruned, "the prune is audited")
	figure("Security: the audit", "statements the writer role was refused (UPDATE, DELETE, TRUNCATE, DISABLE TRIGGER, DROP on audit and position history)", refused)
}

// TestAuditWriteRevokedFailsTheSync: with INSERT on
// the audit revoked from the writer, a sync exits 1 naming the audit (it
// used to exit 0 with a log line), and so do a backfill and a position
// reset. `ehrsync migrate` grants it back.
func TestAuditWriteRevokedFailsTheSync(t *testing.T) {
	ctx := context.Background()
	r := newRoleEnv(t)
	out, err := r.run(t, "migrate", "--config", r.ownerCfg)
	require.NoError(t, err, out)
	owner := r.pool(t, r.ownerURL)
	_, err = owner.Exec(ctx, "REVOKE INSERT ON ehrsync.audit FROM "+pgx.Identifier{r.writer}.Sanitize())
	require.NoError(t, err)

	out, err = r.run(t, "sync", "--config", r.writerCfg)
	require.Equal(t, 1, exitCodeOf(t, err), out)
	require.Contains(t, out, "audit record not written to ehrsync.audit")
	require.Contains(t, out, "permission denied for table audit")
	out, err = r.run(t, "backfill", "--config", r.writerCfg, "--org", org, "--table", "dbo.claims")
	require.Equal(t, 1, exitCodeOf(t, err), out)
	require.Contains(t, out, "audit record not written to ehrsync.audit")
	out, err = r.run(t, "positions", "reset", "--config", r.writerCfg, "--org", org, "--table", "dbo.claims", "--confirm", org+"/dbo.claims")
	require.Equal(t, 1, exitCodeOf(t, err), out)
	require.Contains(t, out, "reset done, but not audited: audit record not written to ehrsync.audit")
	var audited int
	require.NoError(t, r.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.audit").Scan(&audited))
	require.Zero(t, audited)

	out, err = r.run(t, "migrate", "--config", r.ownerCfg)
	require.NoError(t, err, out)
	out, err = r.run(t, "sync", "--config", r.writerCfg)
	require.NoError(t, err, out)
	r.requireEqual(t)
}

// TestAuditVerifyFindsEditsAndDeletes: on a store of
// one role (as the demo's), start and check warn that the audit is not
// protected; an edit of an audit row, or a row deleted, by a role that can
// lift the triggers makes `ehrsync audit verify` exit 1 naming the row;
// CLI runs record the operating-system user, or --actor.
func TestAuditVerifyFindsEditsAndDeletes(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, 1, 2000)
	out, err := e.runWith(t, []string{"USER="}, "sync", "--config", e.config)
	require.NoError(t, err, out)
	require.Contains(t, out, `"level":"WARN","msg":"`+service.AuditUnprotected)
	require.Contains(t, out, "is a superuser")
	out, _ = e.run(t, "check", "--config", e.config)
	require.Contains(t, out, service.AuditUnprotected, "check warns too")
	out, err = e.run(t, "sync", "--config", e.config, "--actor", "bob")
	require.NoError(t, err, out)

	u, err := user.Current()
	require.NoError(t, err)
	actors := func(table string) []string {
		rows, err := e.store.Query(ctx, "SELECT DISTINCT actor FROM "+table+" ORDER BY 1")
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return got
	}
	require.ElementsMatch(t, []string{"bob", u.Username}, actors("ehrsync.audit"), "without $USER, the operating system's user")
	require.Contains(t, actors("ehrsync.position_history"), u.Username, "the first sync moved the positions")

	out, err = e.run(t, "audit", "verify", "--config", e.config)
	require.NoError(t, err, out)
	ids := func() []int64 {
		rows, err := e.store.Query(ctx, "SELECT id FROM ehrsync.audit ORDER BY id")
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[int64])
		require.NoError(t, err)
		return got
	}
	id := ids()
	require.Greater(t, len(id), 3)
	tamper := func(stmt string, arg int64) {
		t.Helper()
		tx, err := e.store.Begin(ctx)
		require.NoError(t, err)
		defer tx.Rollback(ctx) //nolint:errcheck
		_, err = tx.Exec(ctx, "ALTER TABLE ehrsync.audit DISABLE TRIGGER audit_append_only")
		require.NoError(t, err)
		tag, err := tx.Exec(ctx, stmt, arg)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected())
		_, err = tx.Exec(ctx, "ALTER TABLE ehrsync.audit ENABLE TRIGGER audit_append_only")
		require.NoError(t, err)
		require.NoError(t, tx.Commit(ctx))
	}
	detected := 0
	verifyFails := func(want string) {
		t.Helper()
		out, err := e.run(t, "audit", "verify", "--config", e.config)
		require.Equal(t, 1, exitCodeOf(t, err), out)
		require.Contains(t, out, want)
		detected++
	}

	// Without lifting the trigger, even the superuser cannot.
	_, err = e.store.Exec(ctx, "UPDATE ehrsync.audit SET rows_inserted = 0 WHERE id = $1", id[1])
	require.ErrorContains(t, err, "append-only")

	tamper("UPDATE ehrsync.audit SET rows_inserted = rows_inserted + 1 WHERE id = $1", id[1])
	verifyFails("audit chain broken at row " + strconv.FormatInt(id[1], 10) + ": its fields do not match its hash: the row was edited")
	tamper("UPDATE ehrsync.audit SET rows_inserted = rows_inserted - 1 WHERE id = $1", id[1])
	out, err = e.run(t, "audit", "verify", "--config", e.config)
	require.NoError(t, err, "the row as it was verifies again:\n%s", out)

	tamper("DELETE FROM ehrsync.audit WHERE id = $1", id[2])
	verifyFails("audit chain broken at row " + strconv.FormatInt(id[3], 10) + ": it does not follow row " + strconv.FormatInt(id[1], 10))
	figure("Security: the audit", "audit edits and deletes detected by ehrsync audit verify", detected)
}
