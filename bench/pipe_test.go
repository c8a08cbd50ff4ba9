package bench

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgserver"
)

// baseline_pipe moves every source row into the store, and its row check
// fails the scenario when the rows that reach the store are not the rows
// the runner wrote at the source.
func TestBaselinePipeCopiesTheSourceAndItsCheckCanFail(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL")
	}
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "ehrsync-bench-test-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	// As root the server runs as postgres, which must reach its directory.
	require.NoError(t, os.Chmod(dir, 0o755))
	srv, err := pgserver.Start(ctx, pgserver.Options{Dir: filepath.Join(dir, "pg"), Settings: serverSettings})
	require.NoError(t, err)
	t.Cleanup(func() { srv.Stop() })
	r := &runner{opts: Options{Rows: 2500, Log: io.Discard}, dir: dir, srv: srv, trials: map[string][]Scenario{}, rep: &Report{}}
	t.Cleanup(r.closePools)
	require.NoError(t, r.setup(ctx))

	require.NoError(t, r.baselinePipe(ctx))
	require.Len(t, r.trials[BaselinePipe], 1)
	s := r.trials[BaselinePipe][0]
	require.Equal(t, int64(2500), s.Rows)
	require.Equal(t, "count", s.Verified)
	require.Equal(t, "client", s.CPUOf)

	// A row lost on the way: the source now holds one row fewer than the
	// runner wrote there.
	tag, err := r.src.Exec(ctx, "DELETE FROM dbo.charges WHERE charge_id = (SELECT charge_id FROM dbo.charges ORDER BY charge_id LIMIT 1)")
	require.NoError(t, err)
	require.Equal(t, int64(1), tag.RowsAffected())
	err = r.baselinePipe(ctx)
	require.ErrorContains(t, err, "the store has 2499 rows (2499 sent), the source 2500")
	require.Len(t, r.trials[BaselinePipe], 1, "the failed trial is not recorded")
}
