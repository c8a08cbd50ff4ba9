package storedb_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

// roles is a store database with an owner role (CREATE on the database)
// that migrated the ehrsync schema, and a writer role granted by
// GrantWriter; admin is the server's superuser on the same database.
type roles struct {
	admin, owner, writer *pgxpool.Pool
	writerName           string
}

func newRoles(t *testing.T) roles {
	t.Helper()
	ctx := context.Background()
	db := pgtest.URL(t)
	ownerURL := pgtest.Role(t, db, "owner", "GRANT CREATE ON DATABASE "+pgtest.Database(t, db)+" TO %s")
	writerURL := pgtest.Role(t, db, "writer")
	open := func(u string) *pgxpool.Pool {
		p, err := pgxpool.New(ctx, u)
		require.NoError(t, err)
		t.Cleanup(p.Close)
		return p
	}
	r := roles{admin: open(db), owner: open(ownerURL), writer: open(writerURL)}
	require.NoError(t, storedb.Migrate(ctx, r.owner))
	var err error
	r.writerName, err = storedb.CurrentRole(ctx, r.writer)
	require.NoError(t, err)
	require.NoError(t, storedb.GrantWriter(ctx, r.owner, r.writerName))
	return r
}

// sqlstate is err's SQLSTATE, "" when it has none.
func sqlstate(err error) string {
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		return pg.Code
	}
	return ""
}

// changes are the statements that would change or remove rows of an
// append-only table.
func changes(table string) []string {
	return []string{
		"UPDATE " + table + " SET actor = 'mallory'",
		"DELETE FROM " + table,
		"TRUNCATE " + table,
	}
}

// TestWriterCannotChangeTheAuditOrHistory: the writer role appends to the
// audit and the position history, and may neither change nor remove a row
// of them, nor lift the triggers that refuse it; the owner is warned about
// as unprotected, the writer is not.
func TestWriterCannotChangeTheAuditOrHistory(t *testing.T) {
	ctx := context.Background()
	r := newRoles(t)
	_, err := r.writer.Exec(ctx, "INSERT INTO ehrsync.audit (actor, action, outcome) VALUES ('w', 'run', 'ok')")
	require.NoError(t, err, "the writer appends to the audit")
	_, err = r.writer.Exec(ctx, `INSERT INTO ehrsync.position_history (id, org, table_name, reason, actor)
		VALUES (nextval(pg_get_serial_sequence('ehrsync.position_history', 'id')), 'o', 't', 'sync', 'w')`)
	require.NoError(t, err, "the writer appends to the position history")
	_, err = r.writer.Exec(ctx, "INSERT INTO ehrsync.positions (org, table_name, kind, position, updated_by) VALUES ('o', 't', 'ct', '{\"v\":1,\"kind\":\"ct\",\"version\":1}', 'w')")
	require.NoError(t, err, "the writer moves positions")

	for _, table := range []string{"ehrsync.audit", "ehrsync.position_history"} {
		for _, stmt := range append(changes(table),
			"ALTER TABLE "+table+" DISABLE TRIGGER USER",
			"DROP TABLE "+table,
		) {
			_, err := r.writer.Exec(ctx, stmt)
			require.Error(t, err, "the writer ran %s", stmt)
			require.Equal(t, "42501", sqlstate(err), "%s: %v", stmt, err)
		}
	}
	for _, stmt := range []string{"UPDATE ehrsync.audit_chain SET head_hash = sha256('x')", "DROP FUNCTION ehrsync.refuse_change() CASCADE"} {
		_, err := r.writer.Exec(ctx, stmt)
		require.Error(t, err, "the writer ran %s", stmt)
	}
	var n int
	require.NoError(t, r.admin.QueryRow(ctx, "SELECT count(*) FROM ehrsync.audit").Scan(&n))
	require.Equal(t, 1, n)

	problems, err := storedb.Protection(ctx, r.writer)
	require.NoError(t, err)
	require.Empty(t, problems, "the writer cannot change the audit")
	problems, err = storedb.Protection(ctx, r.owner)
	require.NoError(t, err)
	require.Len(t, problems, 2, "the owner could lift the triggers: %v", problems)
	require.Contains(t, problems[0], "owns ehrsync.audit")
	problems, err = storedb.Protection(ctx, r.admin)
	require.NoError(t, err)
	require.Len(t, problems, 1, "%v", problems)
	require.Contains(t, problems[0], "is a superuser")
}

// TestAppendOnlyTriggerRefusesEvenWithPrivileges: privileges granted by
// mistake do not let a role change the audit or the history, the owner's
// neither: the triggers refuse; Protection names the stray privileges, and
// GrantWriter takes them back.
func TestAppendOnlyTriggerRefusesEvenWithPrivileges(t *testing.T) {
	ctx := context.Background()
	r := newRoles(t)
	_, err := r.owner.Exec(ctx, "INSERT INTO ehrsync.audit (actor, action, outcome) VALUES ('o', 'run', 'ok')")
	require.NoError(t, err)
	_, err = r.owner.Exec(ctx, "GRANT UPDATE, DELETE, TRUNCATE ON ehrsync.audit, ehrsync.position_history TO "+pgx.Identifier{r.writerName}.Sanitize())
	require.NoError(t, err)
	for _, db := range []*pgxpool.Pool{r.writer, r.owner, r.admin} {
		for _, table := range []string{"ehrsync.audit", "ehrsync.position_history"} {
			for _, stmt := range changes(table) {
				_, err := db.Exec(ctx, stmt)
				require.Error(t, err, "%s ran", stmt)
				require.Contains(t, err.Error(), table+" is append-only", stmt)
			}
		}
	}
	problems, err := storedb.Protection(ctx, r.writer)
	require.NoError(t, err)
	require.Len(t, problems, 2, "%v", problems)
	require.Contains(t, problems[0], "may UPDATE, DELETE or TRUNCATE ehrsync.audit")

	require.NoError(t, storedb.GrantWriter(ctx, r.owner, r.writerName))
	problems, err = storedb.Protection(ctx, r.writer)
	require.NoError(t, err)
	require.Empty(t, problems, "GrantWriter revokes what the writer should not hold")

	// A disabled trigger is reported too.
	_, err = r.owner.Exec(ctx, "ALTER TABLE ehrsync.position_history DISABLE TRIGGER position_history_append_only")
	require.NoError(t, err)
	problems, err = storedb.Protection(ctx, r.writer)
	require.NoError(t, err)
	require.Equal(t, []string{"the append-only trigger of ehrsync.position_history is missing or disabled"}, problems)
}

// TestGrantWriterCoversEveryTable: every table of the ehrsync schema has
// its writer privileges listed, so a migration that adds one cannot leave
// the writer without it (or with more).
func TestGrantWriterCoversEveryTable(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(ctx, pool))
	rows, err := pool.Query(ctx, "SELECT tablename FROM pg_tables WHERE schemaname = 'ehrsync' ORDER BY 1")
	require.NoError(t, err)
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	var listed []string
	for _, p := range storedb.WriterPrivileges {
		listed = append(listed, p.Table)
	}
	slices.Sort(listed)
	require.Equal(t, tables, listed)
}

// TestWriterStartsOnAMigratedSchema: the writer runs Migrate at every
// start; on a schema the owner migrated it changes nothing and succeeds;
// on a database nobody migrated it fails with ErrNotOwner.
func TestWriterStartsOnAMigratedSchema(t *testing.T) {
	ctx := context.Background()
	r := newRoles(t)
	require.NoError(t, storedb.Migrate(ctx, r.writer))

	fresh := pgtest.URL(t)
	w, err := pgxpool.New(ctx, pgtest.Role(t, fresh, "writer"))
	require.NoError(t, err)
	defer w.Close()
	require.ErrorIs(t, storedb.Migrate(ctx, w), storedb.ErrNotOwner)
}

// TestEnsureSchemasLetsTheWriterCreateTables: the writer, without CREATE
// on the database, cannot make an organization's schema, and creates its
// tables in the one the owner made for it.
func TestEnsureSchemasLetsTheWriterCreateTables(t *testing.T) {
	ctx := context.Background()
	r := newRoles(t)
	_, err := r.writer.Exec(ctx, "CREATE SCHEMA st_mary")
	require.Error(t, err)
	require.NoError(t, storedb.EnsureSchemas(ctx, r.owner, r.writerName, "st_mary"))
	require.NoError(t, storedb.EnsureSchemas(ctx, r.owner, r.writerName, "st_mary"), "idempotent")
	_, err = r.writer.Exec(ctx, "CREATE TABLE st_mary.claims (id int PRIMARY KEY)")
	require.NoError(t, err)
}

// TestMigrationChainsEarlierRows: audit rows written before migration 0005
// are chained by it, in id order, and the rows after continue the chain.
func TestMigrationChainsEarlierRows(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.MigrateToForTest(ctx, pool, 4))
	_, err := pool.Exec(ctx, `INSERT INTO ehrsync.audit (actor, action, what, org, table_name, columns, rows_inserted, to_position, outcome, at) VALUES
		('daemon', 'run', '', 'st-mary', 'dbo.claims', '{claim_id,status}', 12, '{"v": 1, "kind": "ct", "version": 7}', 'ok', now() - interval '2 days'),
		('ålice', 'admin', 'reset', 'st-mary', 'dbo.claims', NULL, NULL, NULL, 'ok', now() - interval '1 day'),
		('sync', 'run', '', 'o', 't', '{}', 0, NULL, 'failed', now())`)
	require.NoError(t, err)
	require.NoError(t, storedb.Migrate(ctx, pool))
	c, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.EqualValues(t, 3, c.Rows)

	require.NoError(t, audit.New(pool).Write(ctx, audit.Record{Actor: "daemon", Action: audit.ActionRun, Outcome: "ok"}))
	c, err = audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, audit.Chain{Rows: 4, FirstID: 1, LastID: 4, Head: c.Head}, c)
}

// TestMissingWriterPrivileges: a writer GrantWriter and EnsureSchemas
// prepared lacks nothing; each privilege taken away is named with the
// GRANT that gives it back; an organization schema not created yet needs
// CREATE on the database only when the writer creates it; the owner lacks
// nothing.
func TestMissingWriterPrivileges(t *testing.T) {
	ctx := context.Background()
	r := newRoles(t)
	require.NoError(t, storedb.EnsureSchemas(ctx, r.owner, r.writerName, "st_mary"))
	orgs := []string{"st_mary", "north"}

	missing, err := storedb.MissingWriterPrivileges(ctx, r.writer, orgs, false)
	require.NoError(t, err)
	require.Empty(t, missing)
	may, err := storedb.MayMigrate(ctx, r.writer)
	require.NoError(t, err)
	require.False(t, may, "the writer may not migrate")
	may, err = storedb.MayMigrate(ctx, r.owner)
	require.NoError(t, err)
	require.True(t, may, "the owner may")
	missing, err = storedb.MissingWriterPrivileges(ctx, r.owner, orgs, true)
	require.NoError(t, err)
	require.Empty(t, missing, "the owner created the database's schemas: it may create more")

	w := pgx.Identifier{r.writerName}.Sanitize()
	_, err = r.owner.Exec(ctx, "REVOKE INSERT ON ehrsync.audit FROM "+w+"; REVOKE CREATE ON SCHEMA st_mary FROM "+w)
	require.NoError(t, err)
	missing, err = storedb.MissingWriterPrivileges(ctx, r.writer, orgs, true)
	require.NoError(t, err)
	require.Equal(t, []storedb.Grant{
		{Privilege: "INSERT on ehrsync.audit", Statement: `GRANT INSERT ON "ehrsync"."audit" TO ` + w + ";"},
		{Privilege: "CREATE on schema st_mary", Statement: `GRANT CREATE ON SCHEMA "st_mary" TO ` + w + ";"},
	}, missing[:2])
	require.Len(t, missing, 3)
	require.Contains(t, missing[2].Privilege, "CREATE on database ")
	require.Contains(t, missing[2].Privilege, "(to create schema north)")

	for _, g := range missing {
		_, err := r.admin.Exec(ctx, g.Statement)
		require.NoError(t, err, g.Statement)
	}
	missing, err = storedb.MissingWriterPrivileges(ctx, r.writer, orgs, true)
	require.NoError(t, err)
	require.Empty(t, missing, "the GRANTs named fix it")
}

// TestMayMigrateAFreshStore: before the ehrsync schema exists, a role may
// migrate the store when it may create schemas in its database.
func TestMayMigrateAFreshStore(t *testing.T) {
	ctx := context.Background()
	db := pgtest.URL(t)
	for _, c := range []struct {
		prefix string
		grants []string
		may    bool
	}{
		{"plain", nil, false},
		{"creator", []string{"GRANT CREATE ON DATABASE " + pgtest.Database(t, db) + " TO %s"}, true},
	} {
		pool, err := pgxpool.New(ctx, pgtest.Role(t, db, c.prefix, c.grants...))
		require.NoError(t, err)
		may, err := storedb.MayMigrate(ctx, pool)
		pool.Close()
		require.NoError(t, err)
		require.Equal(t, c.may, may, c.prefix)
	}
}
