package bench_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/bench"
)

// TestRunReportsEveryScenarioAndKeepsTheStoreEqual runs the benchmark small:
// every scenario and ratio is in the JSON, after each ehrsync scenario
// every store row equals the source's (Options.Verify), snapshot_mssql's
// read from the TDS test server with TLS required, and baseline_pipe's table
// holds as many rows as the source. It asserts behaviour, never timings.
func TestRunReportsEveryScenarioAndKeepsTheStoreEqual(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ehrsync and starts PostgreSQL")
	}
	dir := t.TempDir()
	bin := buildEhrsync(t)

	rep, err := bench.Run(context.Background(), bench.Options{Rows: 3000, SmallRows: 400, BatchRows: 1000, Trials: 2, Binary: bin, Verify: true})
	require.NoError(t, err)
	path := filepath.Join(dir, "latest.json")
	require.NoError(t, rep.WriteJSON(path))

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var got struct {
		Scenarios []struct {
			Name       string    `json:"name"`
			Rows       int64     `json:"rows"`
			RowsPerSec float64   `json:"rows_per_sec"`
			Verified   string    `json:"verified"`
			PeakRSSMB  float64   `json:"peak_rss_mb"`
			LakeMB     float64   `json:"lake_mb"`
			Trials     []float64 `json:"trial_seconds"`
			CPU        float64   `json:"cpu_us_per_row"`
			ServerCPU  float64   `json:"server_cpu_us_per_row"`
			TotalCPU   float64   `json:"total_cpu_us_per_row"`
			Bound      float64   `json:"cpu_bound_seconds"`
		} `json:"scenarios"`
		Ratios map[string]float64 `json:"ratios"`
	}
	require.NoError(t, json.Unmarshal(b, &got))
	want := map[string]int64{
		bench.BaselineCopy: 3000, bench.BaselinePipe: 3000, bench.Snapshot: 3000, bench.SnapshotMSSQL: 3000, bench.BaselineUpsert: 3000,
		bench.Incremental: 3000, bench.IncrementalSmall: 400, bench.SnapshotLake: 3000,
	}
	seen := map[string]bool{}
	for _, s := range got.Scenarios {
		rows, ok := want[s.Name]
		require.True(t, ok, "unexpected scenario %s", s.Name)
		require.Equal(t, rows, s.Rows, s.Name)
		require.Positive(t, s.RowsPerSec, s.Name)
		if s.Name == bench.Snapshot || s.Name == bench.SnapshotMSSQL || s.Name == bench.SnapshotLake || s.Name == bench.Incremental || s.Name == bench.IncrementalSmall {
			require.Equal(t, "rows", s.Verified, "%s: store compared row by row with the source", s.Name)
			require.Positive(t, s.PeakRSSMB, s.Name)
			// The store's backends work for every sync: PostgreSQL's CPU
			// shows, and the total holds it and the engine's.
			require.Positive(t, s.ServerCPU, "%s: PostgreSQL's CPU", s.Name)
			require.GreaterOrEqual(t, s.TotalCPU, s.ServerCPU+s.CPU, s.Name)
			require.InDelta(t, s.TotalCPU*float64(s.Rows)/1e6/float64(runtime.NumCPU()), s.Bound, 1e-6, s.Name)
		}
		if s.Name == bench.SnapshotLake {
			require.Positive(t, s.LakeMB, "%s: the Parquet the lake holds", s.Name)
		}
		if s.Name == bench.BaselinePipe {
			require.Equal(t, "count", s.Verified, "%s: its table's row count compared with the source's", s.Name)
		}
		if s.Name != bench.IncrementalSmall {
			require.Len(t, s.Trials, 2, "%s: both trials reported", s.Name)
		}
		seen[s.Name] = true
	}
	require.Len(t, seen, len(want))
	for _, name := range []string{bench.SnapshotVsBaselineCopy, bench.SnapshotVsBaselinePipe, bench.IncrementalVsBaselineUpsert,
		bench.IncrementalVsBaselineCopy, bench.SnapshotMSSQLVsSnapshot, bench.SnapshotLakeVsSnapshot} {
		require.Contains(t, got.Ratios, name)
		require.Positive(t, got.Ratios[name], name)
	}
	require.Len(t, got.Ratios, 6)
}

func buildEhrsync(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ehrsync")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/ehrsync").CombinedOutput()
	require.NoError(t, err, "build ehrsync:\n%s", out)
	return bin
}

// TestSnapshotMSSQLAlone runs the SQL Server scenario by itself, on a few
// thousand rows in several chunks, TLS off, each trial into an empty store.
func TestSnapshotMSSQLAlone(t *testing.T) {
	if testing.Short() {
		t.Skip("builds ehrsync and starts PostgreSQL")
	}
	bin := buildEhrsync(t)
	rep, err := bench.Run(context.Background(), bench.Options{Rows: 2500, BatchRows: 700, Trials: 2, Binary: bin, Verify: true,
		Scenarios: []string{bench.SnapshotMSSQL}, MSSQLTLS: bench.TLSDisable})
	require.NoError(t, err)
	require.Len(t, rep.Scenarios, 1)
	s := rep.Scenarios[0]
	require.Equal(t, bench.SnapshotMSSQL, s.Name)
	require.Equal(t, int64(2500), s.Rows)
	require.Equal(t, "rows", s.Verified)
	require.Len(t, s.TrialSeconds, 2)
	require.Positive(t, s.CPUMicrosPerRow)
	require.Positive(t, s.SourceCPUMicrosPerRow, "the stand-in's CPU")
	require.Empty(t, rep.Ratios, "no ratio without snapshot")

	_, err = bench.Run(context.Background(), bench.Options{Rows: 10, Binary: bin, MSSQLTLS: "prefer"})
	require.ErrorContains(t, err, `MSSQLTLS "prefer"`)
}
