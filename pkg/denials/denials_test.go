package denials_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/denials"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/schemas"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func TestEnsureKeepsTheViewWhereItsTablesAre(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	views := denials.Views{Pool: pool}
	_, err := pool.Exec(ctx, "CREATE SCHEMA partial; CREATE TABLE partial.charges (charge_id uuid)")
	require.NoError(t, err)
	made, err := views.Ensure(ctx, "partial")
	require.NoError(t, err)
	require.False(t, made, "a view was made in a schema without its tables")

	// The synthetic source has every table (in dbo), and some denials.
	require.NoError(t, synth.CreatePostgres(ctx, pool, schemas.NextGen()))
	_, err = synth.Populate(ctx, synth.NewPostgresWriter(pool, "dbo"), synth.Options{Seed: 5}, 40)
	require.NoError(t, err)
	made, err = views.Ensure(ctx, "dbo")
	require.NoError(t, err)
	require.True(t, made)
	var lines, claims, want int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*), count(DISTINCT claim_id) FROM dbo.denied_claim_lines").Scan(&lines, &claims))
	var adjudicated int
	var rate float64
	require.NoError(t, pool.QueryRow(ctx, synth.DenialRateSQL("dbo")).Scan(&adjudicated, &want, &rate))
	require.Positive(t, want)
	require.Equal(t, want, claims)
	require.GreaterOrEqual(t, lines, claims)

	// An outdated view (another version's definition) is replaced.
	_, err = pool.Exec(ctx, "DROP VIEW dbo.denied_claim_lines; CREATE VIEW dbo.denied_claim_lines AS SELECT 1 AS old")
	require.NoError(t, err)
	_, err = views.Ensure(ctx, "dbo")
	require.NoError(t, err)
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(DISTINCT claim_id) FROM dbo.denied_claim_lines").Scan(&claims))
	require.Equal(t, want, claims)
}
