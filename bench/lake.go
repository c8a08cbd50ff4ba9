package bench

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The change lake's scenario (snapshot_lake): the same initial load as
// snapshot with the table's lake on, each chunk also kept in its lake
// outbox and flushed into an Iceberg table of Parquet files in a directory
// warehouse, committed before the sync exits. Its seconds, rows/s and
// engine CPU cover the store and the lake; LakeMB is the Parquet the lake
// holds, LakeMBPerSec that over the seconds. It runs right after each
// snapshot trial, into an empty store and lake.
const (
	SnapshotLake = "snapshot_lake"
	// SnapshotLakeVsSnapshot is rows/s of snapshot_lake over snapshot's:
	// what the lake costs a sync.
	SnapshotLakeVsSnapshot = "snapshot_lake_vs_snapshot"
	orgLake                = "bench_lake"
)

// writeLakeConfig writes snapshot_lake's configuration: the bench table of
// organization bench_lake, lake on, its warehouse a directory of the run's.
func (r *runner) writeLakeConfig(source string) error {
	r.lakeConfig = filepath.Join(r.dir, "ehrsync-lake.yaml")
	r.lakeDir = filepath.Join(r.dir, "lake")
	if err := r.writeOrgConfig(r.lakeConfig, orgLake, source); err != nil {
		return err
	}
	b, err := os.ReadFile(r.lakeConfig)
	if err != nil {
		return err
	}
	cfg := strings.Replace(string(b), "orgs:\n", fmt.Sprintf("lake:\n  warehouse: %q\norgs:\n", "file://"+r.lakeDir), 1)
	cfg = strings.Replace(cfg, "        strategy: hwm\n", "        strategy: hwm\n        lake: true\n", 1)
	return os.WriteFile(r.lakeConfig, []byte(cfg), 0o600)
}

// checkLake checks that the lake holds every row the sync committed, once,
// and nothing waits in the outbox; it returns the Parquet bytes.
func (r *runner) checkLake(ctx context.Context, rows int64) (int64, error) {
	var inLake, waiting int64
	if err := r.store.QueryRow(ctx, "SELECT coalesce(sum(rows), 0) FROM ehrsync.lake_tables WHERE org = $1", orgLake).Scan(&inLake); err != nil {
		return 0, fmt.Errorf("%s: %w", SnapshotLake, err)
	}
	if err := r.store.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{orgLake, "charges__lake"}.Sanitize()).Scan(&waiting); err != nil {
		return 0, fmt.Errorf("%s: %w", SnapshotLake, err)
	}
	if inLake != rows || waiting != 0 {
		return 0, fmt.Errorf("%s: the lake holds %d rows and %d chunks wait in the outbox; the sync committed %d rows", SnapshotLake, inLake, waiting, rows)
	}
	var size int64
	err := filepath.WalkDir(r.lakeDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		info, err := d.Info()
		if err == nil {
			size += info.Size()
		}
		return err
	})
	return size, err
}

// resetLake empties the store and the lake of snapshot_lake's organization.
func (r *runner) resetLake(ctx context.Context) error {
	if err := r.resetStore(ctx, orgLake); err != nil {
		return err
	}
	for _, q := range []string{
		"DELETE FROM ehrsync_lake.iceberg_tables WHERE table_namespace = '" + orgLake + "'",
		"DELETE FROM ehrsync_lake.iceberg_namespace_properties WHERE namespace = '" + orgLake + "'",
		"DELETE FROM ehrsync.lake_tables WHERE org = '" + orgLake + "'",
	} {
		if _, err := r.store.Exec(ctx, q); err != nil {
			return fmt.Errorf("reset the lake: %w", err)
		}
	}
	return os.RemoveAll(r.lakeDir)
}
