package synth

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// source creates the synthetic schema in a fresh database.
func source(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.Pool(t)
	require.NoError(t, CreatePostgres(context.Background(), pool, schemas.NextGen()))
	return pool
}

// populated creates a source and runs days of opts into it.
func populated(t *testing.T, opts Options, days int) (*pgxpool.Pool, Stats) {
	t.Helper()
	pool := source(t)
	start := time.Now()
	st, err := Populate(context.Background(), NewPostgresWriter(pool, "dbo"), opts, days)
	require.NoError(t, err)
	t.Logf("%d days of %s (seed %d) in %s", days, opts.Preset, opts.Seed, time.Since(start).Round(time.Millisecond))
	return pool, st
}
