// Command ehrsync-bench runs the benchmark in package bench: it builds the
// ehrsync binary, starts a throwaway PostgreSQL, measures the baselines and
// ehrsync's scenarios in one run, prints a table and writes the JSON report.
//
//	go run ./bench/cmd/ehrsync-bench -rows 1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"

	"github.com/ehrsync/ehrsync/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ehrsync-bench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ehrsync-bench", flag.ContinueOnError)
	rows := fs.Int("rows", 1_000_000, "rows in the initial load (the change set is as large)")
	small := fs.Int("small-rows", 10_000, "changes in incremental_small")
	batch := fs.Int("batch-rows", 0, "ehrsync batch_rows (0: ehrsync's default)")
	trials := fs.Int("trials", 3, "runs of each baseline and ehrsync pair, interleaved; medians are reported")
	only := fs.String("scenarios", "", "comma-separated scenarios to run (default all)")
	out := fs.String("out", "bench/results/latest.json", "JSON report")
	bin := fs.String("binary", "", "ehrsync binary (default: build ./cmd/ehrsync)")
	check := fs.Bool("verify", false, "compare every row of the store with the source after each scenario")
	perf := fs.String("perf", "", "run ehrsync under `perf record -g`, writing <dir>/<scenario>.perf.data")
	mssqlTLS := fs.String("mssql-tls", bench.TLSRequire, "snapshot_mssql's TLS: require (production's: a CA file verifies the server) or disable (to measure what TLS costs)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *bin == "" {
		dir, err := os.MkdirTemp("", "ehrsync-bench-bin-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		*bin = filepath.Join(dir, "ehrsync")
		build := exec.CommandContext(ctx, "go", "build", "-o", *bin, "./cmd/ehrsync")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("build ehrsync: %w", err)
		}
	}
	if *perf != "" {
		if err := os.MkdirAll(*perf, 0o755); err != nil {
			return err
		}
	}
	opts := bench.Options{Rows: *rows, SmallRows: *small, BatchRows: *batch, Trials: *trials, Binary: *bin, Verify: *check, Perf: *perf, MSSQLTLS: *mssqlTLS, Log: os.Stderr}
	if *only != "" {
		opts.Scenarios = strings.Split(*only, ",")
	}
	rep, err := bench.Run(ctx, opts)
	if err != nil {
		return err
	}
	if err := rep.Print(os.Stdout); err != nil {
		return err
	}
	return rep.WriteJSON(*out)
}
