package engine_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/watermarks"
)

// snapshotPlanner plans every table as a real keyset snapshot of db.
type snapshotPlanner struct{ db *sql.DB }

func (p snapshotPlanner) Plan(_ context.Context, req engine.PlanRequest) (engine.Plan, error) {
	x, err := snapshot.New(p.db, req.Dialect, req.Table, snapshot.Options{ChunkRows: 3})
	return engine.Plan{Strategy: "snapshot", Extractor: x}, err
}

// TestResumedSnapshotPassStillSeesRowsAddedBehindIt: a snapshot-strategy
// table whose pass was interrupted (position saved between chunks) gains a
// row behind that pass's cursor. The next sync finishes the old pass and
// reads the table once more, so the row that existed when it began is in
// the store when it ends (found by the reliability suite's kills during a
// workload).
func TestResumedSnapshotPassStillSeesRowsAddedBehindIt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", &fake{table: table(t, "t")})
	src, err := sql.Open("pgx", f.srcURL)
	require.NoError(t, err)
	defer src.Close()
	_, err = src.ExecContext(ctx, `CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY, v varchar(10));
		INSERT INTO dbo.t SELECT i * 10, 'v' || i FROM generate_series(1, 10) i`)
	require.NoError(t, err)
	f.eng.Planner = snapshotPlanner{src}

	// An interrupted pass: keys up to 50 were read by an earlier run.
	require.NoError(t, f.eng.Positions.Reset(ctx, f.org.Name, "dbo.t",
		watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(50)}}, "test", "an interrupted pass"))
	_, err = src.ExecContext(ctx, `INSERT INTO dbo.t VALUES (5, 'behind')`)
	require.NoError(t, err)

	res := f.eng.SyncOrg(ctx, f.org, nil)
	require.NoError(t, res.Err)
	require.Len(t, res.Tables, 1)
	require.NoError(t, res.Tables[0].Err)
	var n int
	require.NoError(t, f.store.QueryRow(ctx, `SELECT count(*) FROM st_mary.t WHERE id = 5`).Scan(&n))
	require.Equal(t, 1, n, "a row that existed when the sync began is missing from the store")
	require.NoError(t, f.store.QueryRow(ctx, `SELECT count(*) FROM st_mary.t`).Scan(&n))
	require.Equal(t, 11, n)
}
