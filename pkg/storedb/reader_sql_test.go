package storedb_test

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgserver"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

// psql finds the psql of the PostgreSQL the tests run, else on PATH.
func psql(t *testing.T) string {
	t.Helper()
	if dir, err := pgserver.FindBinDir(); err == nil {
		p := filepath.Join(dir, "psql")
		if _, err := exec.LookPath(p); err == nil {
			return p
		}
	}
	p, err := exec.LookPath("psql")
	require.NoError(t, err, "psql runs deploy/sql/reader-role.sql as an operator would (package postgresql-client)")
	return p
}

// TestDeployReaderRoleSQL runs deploy/sql/reader-role.sql with psql, as
// docs/operations-store.md says, against a store of an owner, a writer and
// two organizations: the reader it grants SELECTs its organization's
// tables, present and created later by the writer, and is refused the
// other organization's schema and ehrsync's positions, position history
// and audit; before the script it could read none of them. A reader role
// that does not exist is created without a login.
func TestDeployReaderRoleSQL(t *testing.T) {
	ctx := context.Background()
	db := pgtest.URL(t)
	admin, err := pgxpool.New(ctx, db)
	require.NoError(t, err)
	defer admin.Close()
	database := pgtest.Database(t, db)

	// The owner (here the test server's superuser) migrates and makes the
	// organizations' schemas; the writer creates and fills their tables.
	writerURL := pgtest.Role(t, db, "ehrsync_writer", "GRANT CONNECT, TEMPORARY ON DATABASE "+database+" TO %s")
	writer, err := pgxpool.New(ctx, writerURL)
	require.NoError(t, err)
	defer writer.Close()
	writerName := writer.Config().ConnConfig.User
	require.NoError(t, storedb.Migrate(ctx, admin))
	require.NoError(t, storedb.GrantWriter(ctx, admin, writerName))
	require.NoError(t, storedb.EnsureSchemas(ctx, admin, writerName, "st_mary", "north"))
	for _, stmt := range []string{
		"CREATE TABLE st_mary.claims (id int PRIMARY KEY)", "INSERT INTO st_mary.claims VALUES (1)",
		"CREATE VIEW st_mary.denied_claim_lines AS SELECT id FROM st_mary.claims",
		"CREATE TABLE north.claims (id int PRIMARY KEY)", "INSERT INTO north.claims VALUES (2)",
		"INSERT INTO ehrsync.audit (actor, action, outcome) VALUES ('sync', 'run', 'ok')",
	} {
		_, err := writer.Exec(ctx, stmt)
		require.NoError(t, err, stmt)
	}

	readerURL := pgtest.Role(t, db, "st_mary_reader")
	reader, err := pgxpool.New(ctx, readerURL)
	require.NoError(t, err)
	defer reader.Close()
	readerName := reader.Config().ConnConfig.User

	denied := func(stmt string) {
		t.Helper()
		_, err := reader.Exec(ctx, stmt)
		var pe *pgconn.PgError
		require.True(t, errors.As(err, &pe) && pe.Code == "42501", "the reader may %s (err %v)", stmt, err)
	}
	allowed := func(stmt string) {
		t.Helper()
		_, err := reader.Exec(ctx, stmt)
		require.NoError(t, err, "the reader may not %s", stmt)
	}
	denied("SELECT * FROM st_mary.claims") // nothing before the script

	script, err := filepath.Abs("../../deploy/sql/reader-role.sql")
	require.NoError(t, err)
	run := func(schema, role string) {
		t.Helper()
		cmd := exec.Command(psql(t), db, "-X", "-q", "-v", "ON_ERROR_STOP=1",
			"-v", "org_schema="+schema, "-v", "reader="+role, "-v", "writer="+writerName, "-f", script)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "psql -f deploy/sql/reader-role.sql:\n%s", out)
	}
	run("st_mary", readerName)
	run("st_mary", readerName) // idempotent

	_, err = writer.Exec(ctx, "CREATE TABLE st_mary.payers (id int PRIMARY KEY); INSERT INTO st_mary.payers VALUES (3)")
	require.NoError(t, err)
	for _, table := range []string{"st_mary.claims", "st_mary.denied_claim_lines", "st_mary.payers"} {
		allowed("SELECT count(*) FROM " + table)
	}
	for _, stmt := range []string{
		"SELECT * FROM north.claims",
		"SELECT * FROM ehrsync.positions", "SELECT * FROM ehrsync.position_history", "SELECT * FROM ehrsync.audit",
		"INSERT INTO st_mary.claims VALUES (4)", "UPDATE st_mary.claims SET id = 5", "DELETE FROM st_mary.claims",
		"CREATE TABLE st_mary.mine (id int)",
	} {
		denied(stmt)
	}

	// A reader that does not exist yet is created, without a login.
	name := strings.ToLower(readerName) + "_new"
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), db)
		require.NoError(t, err)
		defer conn.Close(context.Background())
		_, err = conn.Exec(context.Background(), "DROP OWNED BY "+pgx.Identifier{name}.Sanitize()+"; DROP ROLE IF EXISTS "+pgx.Identifier{name}.Sanitize())
		require.NoError(t, err)
	})
	run("north", name)
	var canLogin bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT rolcanlogin FROM pg_roles WHERE rolname = $1", name).Scan(&canLogin))
	require.False(t, canLogin)
	var readsNorth, readsMary bool
	require.NoError(t, admin.QueryRow(ctx, "SELECT has_table_privilege($1, 'north.claims', 'SELECT'), has_schema_privilege($1, 'st_mary', 'USAGE')", name).Scan(&readsNorth, &readsMary))
	require.True(t, readsNorth)
	require.False(t, readsMary)
}
