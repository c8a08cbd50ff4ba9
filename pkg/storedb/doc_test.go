package storedb_test

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

var sqlBlock = regexp.MustCompile("(?s)```sql\n(.*?)```")

// TestOperationsStoreSQL runs the SQL of docs/operations-store.md as it is
// written: a one-role store (the superuser's) is moved to an owner and a
// writer, migrated and granted as the owner; the writer then syncs into
// its organization's tables and cannot change the audit; the reader reads
// its organization's tables, present and future, and nothing of ehrsync's.
func TestOperationsStoreSQL(t *testing.T) {
	ctx := context.Background()
	doc, err := os.ReadFile("../../docs/operations-store.md")
	require.NoError(t, err)
	blocks := sqlBlock.FindAllStringSubmatch(string(doc), -1)
	require.Len(t, blocks, 3, "the roles, a reader, the move from one role")

	db := pgtest.URL(t)
	admin, err := pgxpool.New(ctx, db)
	require.NoError(t, err)
	defer admin.Close()
	// The store as one role left it.
	require.NoError(t, storedb.Migrate(ctx, admin))
	_, err = admin.Exec(ctx, `CREATE SCHEMA st_mary; CREATE TABLE st_mary.claims (id int PRIMARY KEY);
		INSERT INTO ehrsync.audit (actor, action, outcome) VALUES ('sync', 'run', 'ok')`)
	require.NoError(t, err)

	// The roles are the test's own (role names are global to the server);
	// the doc's CREATE ROLE lines are what pgtest.Role does.
	ownerURL, writerURL, readerURL := pgtest.Role(t, db, "ehrsync_owner"), pgtest.Role(t, db, "ehrsync_writer"), pgtest.Role(t, db, "st_mary_reader")
	names := map[string]string{}
	pools := map[string]*pgxpool.Pool{}
	for role, u := range map[string]string{"ehrsync_owner": ownerURL, "ehrsync_writer": writerURL, "st_mary_reader": readerURL} {
		p, err := pgxpool.New(ctx, u)
		require.NoError(t, err)
		defer p.Close()
		pools[role] = p
		names[role] = p.Config().ConnConfig.User
	}
	run := func(block string) {
		t.Helper()
		var stmts []string
		for _, line := range strings.Split(block, "\n") {
			if strings.HasPrefix(line, "CREATE ROLE ") {
				continue
			}
			stmts = append(stmts, line)
		}
		sql := strings.ReplaceAll(strings.Join(stmts, "\n"), "DATABASE store ", "DATABASE "+pgtest.Database(t, db)+" ")
		for role, name := range names {
			sql = regexp.MustCompile(`\b`+role+`\b`).ReplaceAllString(sql, `"`+name+`"`)
		}
		_, err := admin.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	run(blocks[0][1]) // the roles' database privileges
	run(blocks[2][1]) // the move from one role
	owner, writer, reader := pools["ehrsync_owner"], pools["ehrsync_writer"], pools["st_mary_reader"]
	require.NoError(t, storedb.Migrate(ctx, owner))
	require.NoError(t, storedb.GrantWriter(ctx, owner, names["ehrsync_writer"]))
	require.NoError(t, storedb.EnsureSchemas(ctx, owner, names["ehrsync_writer"], "st_mary"))

	problems, err := storedb.Protection(ctx, writer)
	require.NoError(t, err)
	require.Empty(t, problems)
	for _, stmt := range []string{
		"INSERT INTO st_mary.claims VALUES (1)",
		"ALTER TABLE st_mary.claims ADD COLUMN status text",
		"CREATE TABLE st_mary.charges (id int PRIMARY KEY)",
		"CREATE TEMP TABLE staging (id int)",
		"INSERT INTO ehrsync.audit (actor, action, outcome) VALUES ('sync', 'run', 'ok')",
	} {
		_, err := writer.Exec(ctx, stmt)
		require.NoError(t, err, "the writer cannot %s", stmt)
	}
	for _, stmt := range []string{"DELETE FROM ehrsync.audit", "CREATE SCHEMA elsewhere"} {
		_, err := writer.Exec(ctx, stmt)
		require.Error(t, err, "the writer may %s", stmt)
	}

	run(blocks[1][1]) // the reader
	_, err = writer.Exec(ctx, "CREATE TABLE st_mary.payers (id int)")
	require.NoError(t, err)
	for _, table := range []string{"st_mary.claims", "st_mary.charges", "st_mary.payers"} {
		_, err := reader.Exec(ctx, "SELECT count(*) FROM "+table)
		require.NoError(t, err, "the reader cannot read %s", table)
	}
	_, err = reader.Exec(ctx, "SELECT count(*) FROM ehrsync.positions")
	require.Error(t, err, "the reader reads positions")
}
