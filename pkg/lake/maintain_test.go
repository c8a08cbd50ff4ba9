package lake

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/apache/iceberg-go/table"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// loadTable loads the claims lake table.
func (f *fixture) loadTable(t *testing.T) *table.Table {
	t.Helper()
	tbl, err := f.lake.Catalog().LoadTable(context.Background(), claims.Ident())
	require.NoError(t, err)
	return tbl
}

// liveFiles counts the data files the table's current snapshot holds.
func (f *fixture) liveFiles(t *testing.T) int {
	t.Helper()
	tasks, err := f.loadTable(t).Scan().PlanFiles(context.Background())
	require.NoError(t, err)
	return len(tasks)
}

// flushEach commits n one-row chunks, keys from first, and flushes them
// one commit (one data file) each.
func (f *fixture) flushEach(t *testing.T, first, n int) {
	t.Helper()
	f.lake.cfg.FlushBytes = 1
	for k := first; k < first+n; k++ {
		f.commit(t, row{schemas.OpInsert, k, "1.00", "D"})
	}
	res, err := f.lake.Flush(context.Background(), claims)
	require.NoError(t, err)
	require.Equal(t, n, res.Commits)
}

func TestMaintainCompactsSmallFilesKeepingRowsAndClaim(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.flushEach(t, 1, 4)
	require.Equal(t, 4, f.liveFiles(t))
	rows := f.lakeRows(t)
	require.Len(t, rows, 4)
	before, err := f.lake.State(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, int64(4), before.Claim)
	require.NotEmpty(t, before.PositionSummary)

	res, err := f.lake.Maintain(ctx, claims, MaintainOptions{})
	require.NoError(t, err)
	require.False(t, res.Busy)
	require.Equal(t, 4, res.FilesRewritten)
	require.Equal(t, 1, res.FilesAdded)
	require.Positive(t, res.BytesAdded)
	require.Zero(t, res.SnapshotsExpired, "the default keeps 10 snapshots")
	require.Empty(t, res.Orphans, "nothing is 72 hours old")
	require.Equal(t, 1, f.liveFiles(t))
	require.Equal(t, rows, f.lakeRows(t))

	after, err := f.lake.State(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, before.Claim, after.Claim)
	require.Equal(t, before.PositionSummary, after.PositionSummary)
	require.NotEqual(t, before.SnapshotID, after.SnapshotID)
	tbl := f.loadTable(t)
	require.Equal(t, before.PositionSummary, tbl.Properties()[PropPosition])
	snap := tbl.CurrentSnapshot()
	require.Equal(t, "replace", string(snap.Summary.Operation))
	require.Equal(t, "4", snap.Summary.Properties[PropClaim])
	require.Equal(t, before.PositionSummary, snap.Summary.Properties[PropPosition])

	// Nothing small enough left to pair: no commit.
	res, err = f.lake.Maintain(ctx, claims, MaintainOptions{})
	require.NoError(t, err)
	require.Zero(t, res.FilesRewritten)
	st, err := f.lake.State(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, after.SnapshotID, st.SnapshotID)

	// The next flush appends after the compaction, once.
	f.commit(t, row{schemas.OpInsert, 9, "9.00", "P"})
	fr, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, 1, fr.Commits)
	require.Equal(t, int64(5), fr.State.Claim)
	got := f.lakeRows(t)
	require.Len(t, got, 5)
	require.Subset(t, got, rows)
	require.Equal(t, 1, countPrefix(got, "1|"+keyOf(9).String()+"|9.00|P|"))
	n, _ := f.outbox(t)
	require.Zero(t, n)
}

func countPrefix(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

// A flush stopped before its commit leaves its files orphans: a dry run
// lists them, a run deletes them, and the table reads as before.
func TestMaintainDeletesAStoppedFlushsOrphanFiles(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	_, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	f.commit(t, row{schemas.OpInsert, 2, "20.50", "D"})
	stop := errors.New("killed")
	f.lake.testHook = func(step string) error {
		if step == "appended" {
			return stop
		}
		return nil
	}
	_, err = f.lake.Flush(ctx, claims)
	require.ErrorIs(t, err, stop)
	f.lake.testHook = nil
	require.Equal(t, 2, f.parquetFiles(t), "the committed file and the stopped flush's")
	rows := f.lakeRows(t)
	require.Len(t, rows, 1)

	// The default age: the files are too young.
	res, err := f.lake.Maintain(ctx, claims, MaintainOptions{DryRun: true})
	require.NoError(t, err)
	require.Empty(t, res.Orphans)

	res, err = f.lake.Maintain(ctx, claims, MaintainOptions{OrphanAge: -1, DryRun: true})
	require.NoError(t, err)
	require.Equal(t, 1, countSuffix(res.Orphans, ".parquet"), "%v", res.Orphans)
	require.Positive(t, res.OrphanBytes)
	require.Zero(t, res.OrphansDeleted)
	for _, p := range res.Orphans {
		_, err := os.Stat(strings.TrimPrefix(p, "file://"))
		require.NoError(t, err, "a dry run deletes nothing")
	}
	require.Equal(t, 2, f.parquetFiles(t))
	listed := res.Orphans

	res, err = f.lake.Maintain(ctx, claims, MaintainOptions{OrphanAge: -1})
	require.NoError(t, err)
	require.ElementsMatch(t, listed, res.Orphans)
	require.Equal(t, len(listed), res.OrphansDeleted)
	require.Equal(t, 1, f.parquetFiles(t))
	require.Equal(t, rows, f.lakeRows(t))
	t.Logf("orphans of the stopped flush: %v", baseNames(listed))

	// The stopped claim is appended by the next flush, once.
	fr, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, 1, fr.Commits)
	require.Len(t, f.lakeRows(t), 2)
	res, err = f.lake.Maintain(ctx, claims, MaintainOptions{OrphanAge: -1, DryRun: true})
	require.NoError(t, err)
	require.Empty(t, res.Orphans)
}

func countSuffix(paths []string, suffix string) int {
	n := 0
	for _, p := range paths {
		if strings.HasSuffix(p, suffix) {
			n++
		}
	}
	return n
}

// baseNames are paths' file names with their directory's, sorted.
func baseNames(paths []string) []string {
	out := make([]string, 0, len(paths))
	for _, p := range paths {
		out = append(out, filepath.Join(filepath.Base(filepath.Dir(p)), filepath.Base(p)))
	}
	slices.Sort(out)
	return out
}

// Expiring all but the last snapshot after a compaction leaves the replace
// snapshot alone, with the claim and position in the table's properties
// and its summary; the replaced files go.
func TestMaintainExpiresSnapshotsKeepingThePosition(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.flushEach(t, 1, 3)
	before, err := f.lake.State(ctx, claims)
	require.NoError(t, err)
	rows := f.lakeRows(t)
	require.Len(t, f.loadTable(t).Metadata().Snapshots(), 3)

	res, err := f.lake.Maintain(ctx, claims, MaintainOptions{RetainSnapshots: 1, SnapshotAge: -1})
	require.NoError(t, err)
	require.Equal(t, 3, res.FilesRewritten)
	require.Equal(t, 3, res.SnapshotsExpired, "the three appends; the replace stays")
	tbl := f.loadTable(t)
	snaps := tbl.Metadata().Snapshots()
	require.Len(t, snaps, 1)
	require.Equal(t, "replace", string(snaps[0].Summary.Operation))
	require.Equal(t, before.PositionSummary, snaps[0].Summary.Properties[PropPosition])
	require.Equal(t, before.PositionSummary, tbl.Properties()[PropPosition])
	require.Equal(t, "3", tbl.Properties()[PropClaim])
	after, err := f.lake.State(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, before.Claim, after.Claim)
	require.Equal(t, before.PositionSummary, after.PositionSummary)
	require.Equal(t, 1, f.parquetFiles(t), "expiry deleted the replaced files")
	require.Equal(t, rows, f.lakeRows(t))

	f.flushEach(t, 10, 1)
	require.Len(t, f.lakeRows(t), 4)
}

// Maintenance of a table a flush holds does nothing and says busy.
func TestMaintainWhileAFlushHoldsTheTableIsBusy(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.flushEach(t, 1, 2)
	f.commit(t, row{schemas.OpInsert, 3, "3.00", "D"})
	release, done := f.holdFlush(t)
	res, err := f.lake.Maintain(ctx, claims, MaintainOptions{OrphanAge: -1})
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, err)
	require.True(t, res.Busy)
	require.Zero(t, res.FilesRewritten)
	require.Empty(t, res.Orphans, "the flush's files were left alone")
	require.Equal(t, 3, f.liveFiles(t))
	require.Len(t, f.lakeRows(t), 3)

	f.lake.testHook = nil
	res, err = f.lake.Maintain(ctx, claims, MaintainOptions{})
	require.NoError(t, err)
	require.False(t, res.Busy)
	require.Equal(t, 3, res.FilesRewritten)
}

// A table not created yet has nothing to maintain.
func TestMaintainOfNoTableDoesNothing(t *testing.T) {
	f := newFixture(t)
	res, err := f.lake.Maintain(context.Background(), claims, MaintainOptions{OrphanAge: -1})
	require.NoError(t, err)
	require.Equal(t, MaintainResult{}, res)
}

// A failed step is named with the table in the error.
func TestMaintainErrorsNameTheTableAndStep(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.flushEach(t, 1, 2)
	// A data file lost from under the table: compaction cannot read it.
	var lost string
	for _, p := range dataFilePaths(t, f) {
		lost = p
	}
	require.NoError(t, os.Remove(lost))
	_, err := f.lake.Maintain(ctx, claims, MaintainOptions{})
	var me *MaintainError
	require.ErrorAs(t, err, &me)
	require.Equal(t, StepCompact, me.Step)
	require.Contains(t, err.Error(), claims.String())
	require.Contains(t, err.Error(), string(StepCompact))
}

func dataFilePaths(t *testing.T, f *fixture) []string {
	t.Helper()
	tasks, err := f.loadTable(t).Scan().PlanFiles(context.Background())
	require.NoError(t, err)
	var out []string
	for _, tk := range tasks {
		out = append(out, strings.TrimPrefix(tk.File.FilePath(), "file://"))
	}
	return out
}

// Files written before the source gained a column compact with those
// after it; the older rows read NULL there.
func TestMaintainCompactsAcrossASchemaChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.flushEach(t, 1, 2)
	f.cols = append(f.cols, "payer_name varchar(40)")
	f.flushEach(t, 3, 2)
	rows := f.lakeRows(t)
	require.Len(t, rows, 4)
	require.Equal(t, 4, f.liveFiles(t))

	res, err := f.lake.Maintain(ctx, claims, MaintainOptions{})
	require.NoError(t, err)
	require.Equal(t, 4, res.FilesRewritten)
	require.Equal(t, 1, f.liveFiles(t))
	require.Equal(t, rows, f.lakeRows(t))
	_, ok := f.loadTable(t).Schema().FindFieldByName("payer_name")
	require.True(t, ok)
}
