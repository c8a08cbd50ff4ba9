// Package demo is `ehrsync demo`: the main job on an embedded default. It
// starts a private PostgreSQL under a local directory, creates a synthetic
// NextGen source database and a store database on it, syncs, drives a day
// of denied-claims workload, syncs again, prints what each table did and a
// denied-claims report from the store, and verifies that the store equals
// the source, table by table, by row count and content checksum.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgserver"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/schemas"
)

// DefaultSeed is the demo's workload seed. With the small preset and 30 days
// of history, its next day includes an unposted ERA batch that is deleted
// and re-imported, so the demo shows deletes reaching the store.
const DefaultSeed = 3

// Options configure a demo run.
type Options struct {
	Dir     string       // where the private PostgreSQL lives; default .demo
	Keep    bool         // leave the server running and print how to connect
	Preset  synth.Preset // workload size; default small
	Days    int          // days of history before the first sync; default 30
	Seed    uint64       // workload seed; default DefaultSeed
	Log     *slog.Logger // engine logs
	Out     io.Writer    // the report
	BinDir  string       // PostgreSQL binaries; empty: found on the machine
	OrgName string       // default "demo"
}

// Run runs the demo. It returns an error when any step fails or the store
// does not equal the source at the end.
func Run(ctx context.Context, opts Options) error {
	opts = withDefaults(opts)
	out := opts.Out
	start := time.Now()
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return err
	}
	if err := stopLeftover(dir, opts.BinDir); err != nil {
		return err
	}
	fmt.Fprintf(out, "Starting a private PostgreSQL in %s ...\n", dir)
	srv, err := pgserver.Start(ctx, pgserver.Options{Dir: dir, BinDir: opts.BinDir, Detach: opts.Keep,
		Settings: map[string]string{"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}})
	if err != nil {
		return err
	}
	if !opts.Keep {
		defer removeAllBut(dir, LakeDir)
		defer srv.Stop()
	}
	for _, db := range []string{"nextgen", "store"} {
		if err := createDatabase(ctx, srv.URL("postgres"), db); err != nil {
			return err
		}
	}
	src, err := pgxpool.New(ctx, srv.URL("nextgen"))
	if err != nil {
		return err
	}
	defer src.Close()

	cat := schemas.NextGen()
	t0 := time.Now()
	if err := synth.CreatePostgres(ctx, src, cat); err != nil {
		return fmt.Errorf("create the synthetic source: %w", err)
	}
	w := synth.NewPostgresWriter(src, "dbo")
	gen := synth.Options{Preset: opts.Preset, Seed: opts.Seed, Catalog: cat}
	stats, err := synth.Populate(ctx, w, gen, opts.Days)
	if err != nil {
		return fmt.Errorf("generate the synthetic source: %w", err)
	}
	fmt.Fprintf(out, "Synthetic NextGen source (preset %s, seed %d): %d days of history, %d rows written in %s\n\n",
		opts.Preset, opts.Seed, opts.Days, total(stats), time.Since(t0).Round(time.Millisecond))

	cfgPath := filepath.Join(dir, ConfigFile)
	cfg, err := writeConfig(cfgPath, opts.OrgName, srv, filepath.Join(dir, LakeDir))
	if err != nil {
		return err
	}
	svc, err := service.Open(ctx, cfg, opts.Log, "demo", 1)
	if err != nil {
		return err
	}
	defer svc.Close()
	org := &cfg.Orgs[0]

	fmt.Fprintln(out, "First sync (initial snapshot of every table):")
	if err := printRun(out, svc.Engine.SyncOrg(ctx, org, nil)); err != nil {
		return err
	}
	// The next day, batch by batch, with a sync in the middle as a
	// 10-minute schedule would run one: after the morning's ERA import, and
	// before an unposted ERA batch is deleted and re-imported.
	g, err := synth.NewGenerator(gen)
	if err != nil {
		return err
	}
	batches := g.Batches(opts.Days)
	split := len(batches) / 2
	for i, b := range batches {
		if b.Kind == "delete" {
			split = i
			break
		}
	}
	for i, part := range [][]*synth.Batch{batches[:split], batches[split:]} {
		t0 = time.Now()
		for _, b := range part {
			if err := w.Apply(ctx, b); err != nil {
				return fmt.Errorf("drive the workload: %w", err)
			}
		}
		when := []string{"Morning", "Rest of the day"}[i]
		fmt.Fprintf(out, "\n%s at the source: %s in %d transactions (%s)\n\n", when, describe(part), len(part), time.Since(t0).Round(time.Millisecond))
		fmt.Fprintln(out, "Incremental sync:")
		if err := printRun(out, svc.Engine.SyncOrg(ctx, org, nil)); err != nil {
			return err
		}
	}
	schema := sink.SchemaFor(org.Name)
	if err := printReport(ctx, out, svc.Store, schema); err != nil {
		return err
	}
	rows, err := verifyStore(ctx, src, svc.Store, org, cat)
	if err != nil {
		fmt.Fprintf(out, "\nVERIFICATION FAILED: %v\n", err)
		return err
	}
	fmt.Fprintf(out, "\nVerification: the store equals the source: %d tables, %d rows, every row compared, none missing, extra or different.\n", len(org.Tables), rows)
	if err := printLake(ctx, out, svc, org); err != nil {
		return err
	}
	fmt.Fprintf(out, "Demo finished in %s.\n", time.Since(start).Round(time.Second))
	if opts.Keep {
		shown := filepath.Join(opts.Dir, ConfigFile)
		fmt.Fprintf(out, "\nThe PostgreSQL server keeps running (data in %s):\n  source: psql %q\n  store:  psql %q\nStop it with: %s\n",
			dir, srv.URL("nextgen"), srv.URL("store"), stopCommand(dir, opts.BinDir))
		fmt.Fprintf(out, "\nConfiguration for this source and store: %s\n  ehrsync sync --config %s\n"+
			"  (also check, backfill, positions list, run)\n", shown, shown)
	}
	return nil
}

func withDefaults(o Options) Options {
	if o.Dir == "" {
		o.Dir = ".demo"
	}
	if o.Preset == "" {
		o.Preset = synth.Small
	}
	if o.Days == 0 {
		o.Days = 30
	}
	if o.Seed == 0 {
		o.Seed = DefaultSeed
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.OrgName == "" {
		o.OrgName = "demo"
	}
	return o
}

// LakeDir is the change lake's warehouse in the demo's directory. It stays
// after the demo, for DuckDB and others to read.
const LakeDir = "lake"

// removeAllBut removes dir's entries but keep.
func removeAllBut(dir, keep string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != keep {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

// ConfigFile is the name of the configuration file the demo writes in
// its directory and syncs with: with Options.Keep, the commands can use it
// against the server left running.
const ConfigFile = "ehrsync.yaml"

// writeConfig writes the demo's configuration to path (mode 0600) and
// loads it as every command does: one organization on the synthetic
// source, every catalog table on strategy auto, claims with a change log,
// deletes found by key reconciliation on every run, every change also in
// the change lake in the directory lake.
func writeConfig(path, org string, srv *pgserver.Server, lake string) (*config.Config, error) {
	var b strings.Builder
	fmt.Fprintf(&b, `# ehrsync demo: the synthetic NextGen source and the store, on the demo's
# PostgreSQL (loopback, trust authentication, TLS off), and the change lake
# (Apache Iceberg) in a directory.
store:
  url: %q
lake:
  warehouse: %q
orgs:
  - name: %s
    lake: true
    schedule: {every: 10m}
    source:
      dialect: postgres
      via: direct
      host: 127.0.0.1
      port: %d
      database: nextgen
      user: postgres
      tls: {mode: disable}
    tables:
`, srv.URL("store"), "file://"+lake, org, srv.Port())
	for _, t := range schemas.NextGen().Tables() {
		fmt.Fprintf(&b, "      - {name: %s, strategy: auto, change_log: %t, reconcile_every: 1ns}\n", t.QualifiedName(), t.Name == "claims")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("write the demo's configuration: %w", err)
	}
	return config.Load(path)
}

func createDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	return err
}

// stopLeftover stops a server an earlier `demo --keep` left running in dir,
// and removes its data: every demo starts from scratch.
func stopLeftover(dir, binDir string) error {
	data := filepath.Join(dir, "data")
	if _, err := os.Stat(filepath.Join(data, "postmaster.pid")); err == nil {
		pid, _ := os.ReadFile(filepath.Join(data, "postmaster.pid"))
		if n, err := strconv.Atoi(strings.SplitN(string(pid), "\n", 2)[0]); err == nil {
			_ = syscall.Kill(n, syscall.SIGINT)
			for i := 0; i < 100 && syscall.Kill(n, 0) == nil; i++ {
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the previous demo in %s: %w", dir, err)
	}
	return nil
}

func stopCommand(dir, binDir string) string {
	if binDir == "" {
		binDir, _ = pgserver.FindBinDir()
	}
	cmd := filepath.Join(binDir, "pg_ctl") + " stop -D " + filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		return "su postgres -s /bin/sh -c '" + cmd + "'  (or run the demo again)"
	}
	return cmd + "  (or run the demo again)"
}

func total(s synth.Stats) int64 {
	var n int64
	for _, c := range s.Tables {
		n += c.Total()
	}
	return n
}

// describe counts the row changes in batches.
func describe(batches []*synth.Batch) string {
	var n [4]int
	for _, b := range batches {
		for _, op := range b.Ops {
			n[op.Kind] += len(op.Rows)
		}
	}
	return fmt.Sprintf("%d inserts, %d updates, %d deletes", n[schemas.OpInsert], n[schemas.OpUpdate], n[schemas.OpDelete])
}

// printRun prints one line per table and fails when any table failed.
func printRun(out io.Writer, r engine.OrgResult) error {
	if r.Err != nil {
		return r.Err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "table\tstrategy\tinserted\tupdated\tdeleted\ttime\tposition\t")
	for _, t := range r.Tables {
		if t.Err != nil {
			tw.Flush()
			return fmt.Errorf("%s: %w", t.Table, t.Err)
		}
		deleted := t.Totals.Deleted
		if t.Reconciled != nil {
			deleted += t.Reconciled.Deleted
		}
		pos := "-"
		if t.To != nil {
			// The demo's data is synthetic: show the position's values,
			// which logs and errors never carry.
			pos = t.To.Detail()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\t%s\t\n", t.Table, t.Strategy, t.Totals.Inserted, t.Totals.Updated,
			deleted, t.Duration.Round(time.Millisecond), pos)
	}
	return tw.Flush()
}
