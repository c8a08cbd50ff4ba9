package storedb_test

import (
	"context"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type applied struct {
	Version int
	Name    string
}

func appliedMigrations(t *testing.T, pool *pgxpool.Pool) []applied {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT version, name FROM ehrsync.schema_migrations ORDER BY version")
	require.NoError(t, err)
	var out []applied
	for rows.Next() {
		var a applied
		require.NoError(t, rows.Scan(&a.Version, &a.Name))
		out = append(out, a)
	}
	require.NoError(t, rows.Err())
	return out
}

func TestMigrateCreatesTheSchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	v, err := storedb.CurrentVersion(ctx, pool)
	require.NoError(t, err)
	require.Zero(t, v, "a fresh database has no schema")

	require.NoError(t, storedb.Migrate(ctx, pool))
	v, err = storedb.CurrentVersion(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, storedb.LatestVersion(), v)
	require.Equal(t, applied{1, "positions"}, appliedMigrations(t, pool)[0])

	for _, table := range []string{"ehrsync.positions", "ehrsync.position_history", "ehrsync.schema_migrations"} {
		var ok bool
		require.NoError(t, pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&ok))
		require.True(t, ok, table)
	}
	// The constraints hold the tables to the position format.
	_, err = pool.Exec(ctx, `INSERT INTO ehrsync.positions (org, table_name, kind, position, updated_by)
		VALUES ('o', 't', 'ct', '{"v":1,"kind":"cdc"}', 'test')`)
	require.Error(t, err, "kind column and position kind disagree")
	_, err = pool.Exec(ctx, `INSERT INTO ehrsync.position_history (org, table_name, reason, actor) VALUES ('o', 't', 'oops', 'test')`)
	require.Error(t, err, "unknown reason")
}

func TestMigrateIsIdempotent(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(ctx, pool))
	before := appliedMigrations(t, pool)
	require.NoError(t, storedb.Migrate(ctx, pool))
	require.Equal(t, before, appliedMigrations(t, pool))
}

func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	errs := make([]error, 4)
	var wg sync.WaitGroup
	for i := range errs {
		wg.Go(func() {
			// Each replica has its own pool, as separate processes would.
			p, err := pgxpool.New(ctx, pool.Config().ConnString())
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			errs[i] = storedb.Migrate(ctx, p)
		})
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}
	got := appliedMigrations(t, pool)
	require.Len(t, got, storedb.LatestVersion())
	for i, a := range got {
		require.Equal(t, i+1, a.Version)
	}
}

func TestMigrateRefusesANewerSchema(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(ctx, pool))
	newer := storedb.LatestVersion() + 1
	_, err := pool.Exec(ctx, "INSERT INTO ehrsync.schema_migrations (version, name, checksum) VALUES ($1, 'from_the_future', 'x')", newer)
	require.NoError(t, err)

	err = storedb.Migrate(ctx, pool)
	require.ErrorIs(t, err, storedb.ErrSchemaNewer)
	var ve *storedb.VersionError
	require.ErrorAs(t, err, &ve)
	require.Equal(t, storedb.VersionError{Database: newer, Binary: storedb.LatestVersion()}, *ve)
	require.Contains(t, err.Error(), "newer than this binary")
}

func TestMigrateRefusesAnEditedMigration(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(ctx, pool))
	_, err := pool.Exec(ctx, "UPDATE ehrsync.schema_migrations SET checksum = 'edited' WHERE version = 1")
	require.NoError(t, err)
	require.ErrorIs(t, storedb.Migrate(ctx, pool), storedb.ErrSchemaMismatch)

	_, err = pool.Exec(ctx, "UPDATE ehrsync.schema_migrations SET name = 'renamed' WHERE version = 1")
	require.NoError(t, err)
	require.ErrorIs(t, storedb.Migrate(ctx, pool), storedb.ErrSchemaMismatch)
}

func TestParseMigrations(t *testing.T) {
	tests := []struct {
		name  string
		files []string
		ok    bool
	}{
		{"in order", []string{"0001_a.sql", "0002_b.sql"}, true},
		{"gap", []string{"0001_a.sql", "0003_c.sql"}, false},
		{"bad name", []string{"0001_a.sql", "2_b.sql"}, false},
		{"not from 1", []string{"0002_b.sql"}, false},
		{"none", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{"m/README": &fstest.MapFile{}}
			delete(fsys, "m/README")
			for _, f := range tc.files {
				fsys["m/"+f] = &fstest.MapFile{Data: []byte("SELECT 1;")}
			}
			_, err := storedb.ParseMigrationsForTest(fsys, "m")
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
			}
		})
	}
}
