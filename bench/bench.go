// Package bench measures ehrsync end to end against baselines measured in
// the same run, on one throwaway PostgreSQL server it starts itself.
//
// The data is a synthetic NextGen claim line (dbo.charges projected to 17
// columns, about 200 bytes a row), written at the source with binary COPY.
// The scenarios, in order:
//
//   - baseline_copy: a minimal hand-written binary COPY of the same rows into
//     a table with the same primary key (the server's limit);
//   - baseline_pipe: the source's rows moved the way pg_dump and pgcopydb
//     move a table, no ehrsync code at all: a binary COPY TO on a source
//     connection streamed through a pipe into a binary COPY FROM on a store
//     connection, into an empty table without its primary key, which is
//     built after the load (the limit of a source-to-store copy);
//   - snapshot_mssql: the same initial load from a SQL Server source: the
//     TDS test server (package tdstest) in this process streams the same
//     rows to `ehrsync sync` through go-mssqldb, TLS required (mssql.go);
//   - snapshot: `ehrsync sync` of the table's initial load (hwm strategy:
//     keyset snapshot, position committed);
//   - snapshot_lake: the same with the table's change lake on (lake.go);
//   - baseline_upsert: a minimal temp-staging + INSERT … ON CONFLICT DO
//     UPDATE of the change set (Rows/2 updated keys, Rows/2 new keys);
//   - incremental: `ehrsync sync` of the same change set made at the source;
//   - incremental_small: SmallRows changes (half updates, half inserts).
//
// ehrsync runs as a child process (the real binary); its CPU time and peak
// RSS come from the child's rusage. Baselines report the benchmark
// process's own CPU (client encoding included).
//
// Each pair (baseline_copy and snapshot, baseline_pipe and snapshot,
// snapshot_mssql and snapshot, baseline_upsert and incremental,
// baseline_copy and incremental) runs Trials times, interleaved, so that
// both sides of a ratio see the same machine: a trial's baseline_pipe
// follows its baseline_copy, its snapshot_mssql and snapshot follow both,
// each into an empty store, a trial's incremental syncs a new change set
// right after its baseline upserted the same one. A scenario reports its
// median trial, and a ratio is the median of the trials' ratios (trial i
// against trial i): of rows/s for the baselines' pairs, of engine CPU per
// row for snapshot_mssql_vs_snapshot (the SQL Server read path's cost).
package bench

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/ehrsync/ehrsync/pkg/pgserver"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/pkg/verify"
	"github.com/ehrsync/ehrsync/schemas"
)

// Scenario names, as they appear in the report.
const (
	BaselineCopy     = "baseline_copy"
	BaselinePipe     = "baseline_pipe"
	BaselineUpsert   = "baseline_upsert"
	Snapshot         = "snapshot"
	Incremental      = "incremental"
	IncrementalSmall = "incremental_small"
)

// Ratio names, as they appear in the report: rows/s of the first scenario
// over rows/s of the second.
const (
	SnapshotVsBaselineCopy      = "snapshot_vs_baseline_copy"
	SnapshotVsBaselinePipe      = "snapshot_vs_baseline_pipe"
	IncrementalVsBaselineUpsert = "incremental_vs_baseline_upsert"
	IncrementalVsBaselineCopy   = "incremental_vs_baseline_copy"
)

const (
	org   = "bench"
	table = "dbo.charges"
)

// Options configure one benchmark run.
type Options struct {
	Rows      int    // rows in the initial load; the change set is as large
	SmallRows int    // changes in incremental_small
	Binary    string // the ehrsync binary to run
	// BatchRows is the sync's batch_rows; 0 keeps ehrsync's default.
	BatchRows int
	// Trials is how many times each pair of scenarios runs; 0 means 1.
	Trials int
	// Scenarios limits the run to these ehrsync scenarios (and what they
	// need); empty runs all.
	Scenarios []string
	// Verify compares every row of the store with the source after each
	// ehrsync scenario (slow on large runs); row counts are always compared.
	Verify bool
	// Perf, when set, runs each ehrsync child under `perf record -g` writing
	// <Perf>/<scenario>.perf.data. The child's figures then include perf's
	// overhead.
	Perf string
	// MSSQLTLS is snapshot_mssql's TLS: TLSRequire (production's, the
	// default) or TLSDisable (to measure what TLS costs).
	MSSQLTLS string
	Log      io.Writer // progress lines; nil discards
}

// Scenario is one measured scenario.
type Scenario struct {
	Name       string  `json:"name"`
	Rows       int64   `json:"rows"`
	Seconds    float64 `json:"seconds"`
	RowsPerSec float64 `json:"rows_per_sec"`
	MBPerSec   float64 `json:"mb_per_sec"`
	// CPUMicrosPerRow is user+system CPU per row of the process named by CPUOf.
	CPUMicrosPerRow float64 `json:"cpu_us_per_row"`
	CPUOf           string  `json:"cpu_of"` // "engine" (the ehrsync child) or "client" (this process)
	// SourceCPUMicrosPerRow is, for snapshot_mssql, the CPU per row of this
	// process meanwhile: the SQL Server stand-in generating, encoding and
	// encrypting the rows (not the engine's).
	SourceCPUMicrosPerRow float64 `json:"source_cpu_us_per_row,omitempty"`
	// ServerCPUMicrosPerRow is the PostgreSQL server's CPU per row meanwhile
	// (serverCPU: the source's and the store's backends, and the server's
	// own processes). TotalCPUMicrosPerRow adds the engine's (or this
	// client's) and this process's; CPUBoundSeconds is that total over the
	// machine's CPUs: no run of the scenario's work on this machine can take
	// less.
	ServerCPUMicrosPerRow float64 `json:"server_cpu_us_per_row,omitempty"`
	TotalCPUMicrosPerRow  float64 `json:"total_cpu_us_per_row,omitempty"`
	CPUBoundSeconds       float64 `json:"cpu_bound_seconds,omitempty"`
	PeakRSSMB             float64 `json:"peak_rss_mb,omitempty"`
	// LakeMB is, for snapshot_lake, the Parquet files' size in the lake,
	// and LakeMBPerSec that over the scenario's seconds.
	LakeMB       float64 `json:"lake_mb,omitempty"`
	LakeMBPerSec float64 `json:"lake_mb_per_sec,omitempty"`
	// Verified says the store equalled the source after the scenario (all
	// rows compared with Options.Verify, counts otherwise).
	Verified string `json:"verified,omitempty"`
	// TrialSeconds are every trial's seconds, in the order they ran; the
	// figures above are the median trial's. TrialCPUMicrosPerRow are their
	// CPU per row.
	TrialSeconds         []float64 `json:"trial_seconds,omitempty"`
	TrialCPUMicrosPerRow []float64 `json:"trial_cpu_us_per_row,omitempty"`
}

// Machine describes where a report was measured.
type Machine struct {
	CPUs     int    `json:"cpus"`
	CPUModel string `json:"cpu_model"`
	OS       string `json:"os"`
	Go       string `json:"go"`
	Postgres string `json:"postgres"`
}

// Report is one run's results.
type Report struct {
	Started      time.Time          `json:"started"`
	Machine      Machine            `json:"machine"`
	Rows         int                `json:"rows"`
	SmallRows    int                `json:"small_rows"`
	RowBytes     float64            `json:"row_bytes"` // binary COPY bytes per row
	BatchRows    int                `json:"batch_rows,omitempty"`
	Trials       int                `json:"trials"`
	Scenarios    []Scenario         `json:"scenarios"`
	Ratios       map[string]float64 `json:"ratios"`
	TotalSeconds float64            `json:"total_seconds"`
}

// Scenario returns the named scenario's result.
func (r *Report) Scenario(name string) (Scenario, bool) {
	for _, s := range r.Scenarios {
		if s.Name == name {
			return s, true
		}
	}
	return Scenario{}, false
}

// serverSettings make the throwaway server a fair, repeatable target: no
// durability waits and no checkpoints mid-run, for baselines and ehrsync alike.
var serverSettings = map[string]string{
	"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
	"max_wal_size": "8GB", "shared_buffers": "256MB", "checkpoint_timeout": "30min",
}

type runner struct {
	opts             Options
	rep              *Report
	dir              string
	srv              *pgserver.Server
	src, store       *pgxpool.Pool
	config           string
	mssqlConfig      string
	lakeConfig       string     // snapshot_lake's configuration
	lakeDir          string     // its warehouse
	tds              *tdsSource // the SQL Server stand-in, nil unless snapshot_mssql runs
	storeURL         string
	srcRows          int64 // rows at the source
	nextNew, nextUpd int   // next new row index, next row to update
	trials           map[string][]Scenario
}

// Run runs the benchmark. ctx bounds the whole run.
func Run(ctx context.Context, opts Options) (*Report, error) {
	if opts.Rows <= 0 {
		opts.Rows = 1_000_000
	}
	if opts.SmallRows <= 0 {
		opts.SmallRows = 10_000
	}
	if opts.Log == nil {
		opts.Log = io.Discard
	}
	opts.Trials = max(opts.Trials, 1)
	switch opts.MSSQLTLS {
	case "":
		opts.MSSQLTLS = TLSRequire
	case TLSRequire, TLSDisable:
	default:
		return nil, fmt.Errorf("MSSQLTLS %q: want %q or %q", opts.MSSQLTLS, TLSRequire, TLSDisable)
	}
	start := time.Now()
	r := &runner{opts: opts, trials: map[string][]Scenario{},
		rep: &Report{Started: start.UTC(), Rows: opts.Rows, SmallRows: opts.SmallRows, BatchRows: opts.BatchRows, Trials: opts.Trials, Ratios: map[string]float64{}}}
	dir, err := os.MkdirTemp("", "ehrsync-bench-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	// As root the server runs as postgres, which must reach its directory.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	r.dir = dir
	r.srv, err = pgserver.Start(ctx, pgserver.Options{Dir: filepath.Join(dir, "pg"), Settings: serverSettings})
	if err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	defer r.srv.Stop()
	defer r.closePools()
	if err := r.setup(ctx); err != nil {
		return nil, err
	}
	if r.wants(SnapshotMSSQL) {
		if err := r.startMSSQL(ctx); err != nil {
			return nil, fmt.Errorf("start the SQL Server stand-in: %w", err)
		}
		defer r.tds.close()
	}
	if err := r.scenarios(ctx); err != nil {
		return nil, err
	}
	r.summarize()
	r.rep.TotalSeconds = time.Since(start).Seconds()
	return r.rep, nil
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(r.opts.Log, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func (r *runner) closePools() {
	if r.src != nil {
		r.src.Close()
	}
	if r.store != nil {
		r.store.Close()
	}
}

func (r *runner) wants(name string) bool {
	if len(r.opts.Scenarios) == 0 {
		return true
	}
	for _, s := range r.opts.Scenarios {
		if s == name {
			return true
		}
	}
	return false
}

func (r *runner) setup(ctx context.Context) error {
	admin, err := pgx.Connect(ctx, r.srv.URL("postgres"))
	if err != nil {
		return err
	}
	defer admin.Close(ctx)
	for _, db := range []string{"src", "store"} {
		if _, err := admin.Exec(ctx, "CREATE DATABASE "+db); err != nil {
			return fmt.Errorf("create database %s: %w", db, err)
		}
	}
	if err := admin.QueryRow(ctx, "SHOW server_version").Scan(&r.rep.Machine.Postgres); err != nil {
		return err
	}
	r.rep.Machine.CPUs, r.rep.Machine.CPUModel = runtime.NumCPU(), cpuModel()
	r.rep.Machine.OS, r.rep.Machine.Go = runtime.GOOS+"/"+runtime.GOARCH, runtime.Version()

	if r.src, err = pgxpool.New(ctx, r.srv.URL("src")); err != nil {
		return err
	}
	r.storeURL = r.srv.URL("store")
	if r.store, err = pgxpool.New(ctx, r.storeURL); err != nil {
		return err
	}
	if err := synth.CreatePostgres(ctx, r.src, schemas.NextGen()); err != nil {
		return err
	}
	r.logf("generating %d source rows", r.opts.Rows)
	t0 := time.Now()
	n, err := r.copyAtSource(ctx, r.opts.Rows)
	if err != nil {
		return err
	}
	r.rep.RowBytes = float64(n) / float64(r.opts.Rows)
	if _, err := r.src.Exec(ctx, "VACUUM ANALYZE dbo.charges"); err != nil {
		return err
	}
	r.logf("source ready in %s (%.0f bytes/row)", time.Since(t0).Round(time.Millisecond), r.rep.RowBytes)
	return r.writeConfig()
}

// copyAtSource inserts n new rows at the source and returns the COPY bytes.
func (r *runner) copyAtSource(ctx context.Context, n int) (int64, error) {
	conn, err := r.src.Acquire(ctx)
	if err != nil {
		return 0, err
	}
	defer conn.Release()
	first := r.nextNew
	b, err := copyRows(ctx, conn.Conn().PgConn(), pgx.Identifier{"dbo", "charges"}, false, n, func(k int) row { return genRow(first+k, 0) })
	if err != nil {
		return 0, err
	}
	r.nextNew += n
	r.srcRows += int64(n)
	return b, nil
}

// changeAtSource updates n/2 existing rows and inserts n-n/2 new ones, and
// returns the generator of the same change set for the baseline.
func (r *runner) changeAtSource(ctx context.Context, n int) (func(k int) row, error) {
	upd, firstUpd, firstNew := n/2, r.nextUpd, r.nextNew
	if _, err := r.src.Exec(ctx, updateSQL, firstUpd, firstUpd+upd); err != nil {
		return nil, fmt.Errorf("update at the source: %w", err)
	}
	r.nextUpd += upd
	if _, err := r.copyAtSource(ctx, n-upd); err != nil {
		return nil, err
	}
	if _, err := r.src.Exec(ctx, "VACUUM ANALYZE dbo.charges"); err != nil {
		return nil, err
	}
	return func(k int) row {
		if k < upd {
			return genRow(firstUpd+k, 1)
		}
		return genRow(firstNew+k-upd, 0)
	}, nil
}

func (r *runner) writeConfig() error {
	source := fmt.Sprintf(`dialect: postgres
      via: direct
      host: 127.0.0.1
      port: %d
      database: src
      user: postgres
      tls: {mode: disable}`, r.srv.Port())
	r.config = filepath.Join(r.dir, "ehrsync.yaml")
	if err := r.writeOrgConfig(r.config, org, source); err != nil {
		return err
	}
	return r.writeLakeConfig(source)
}

// writeOrgConfig writes a configuration of one organization, name, whose
// source is source (YAML at the source's indentation) and whose one table
// is the bench table, read by high-water mark.
func (r *runner) writeOrgConfig(path, name, source string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "store:\n  url: env:EHRSYNC_BENCH_STORE_URL\n")
	if r.opts.BatchRows > 0 {
		fmt.Fprintf(&b, "defaults:\n  batch_rows: %d\n", r.opts.BatchRows)
	}
	fmt.Fprintf(&b, `orgs:
  - name: %s
    schedule: {every: 10m}
    source:
      %s
    tables:
      - name: %s
        strategy: hwm
        columns: [%s]
`, name, source, table, strings.Join(Columns, ", "))
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

func (r *runner) scenarios(ctx context.Context) error {
	// The incremental scenarios need the snapshot first; every trial but
	// the first starts the store over.
	// snapshot_mssql runs before snapshot, whose store the incremental
	// scenarios keep, and its store is removed after it: both snapshots
	// start from the same store.
	syncs := r.wants(Snapshot) || r.wants(Incremental) || r.wants(IncrementalSmall)
	for i := range r.opts.Trials {
		if r.wants(BaselineCopy) {
			if err := r.baselineCopy(ctx); err != nil {
				return err
			}
		}
		if r.wants(BaselinePipe) {
			if err := r.baselinePipe(ctx); err != nil {
				return err
			}
		}
		// One snapshot is all the other scenarios need.
		pg := syncs && (i == 0 || r.wants(Snapshot))
		if pg && i > 0 {
			if err := r.resetStore(ctx, org); err != nil {
				return err
			}
		}
		if r.wants(SnapshotMSSQL) {
			if err := r.sync(ctx, SnapshotMSSQL, int64(r.opts.Rows), true); err != nil {
				return err
			}
			if err := r.resetStore(ctx, orgMSSQL); err != nil {
				return err
			}
		}
		if pg {
			if err := r.sync(ctx, Snapshot, r.srcRows, r.wants(Snapshot)); err != nil {
				return err
			}
		}
		if r.wants(SnapshotLake) {
			if err := r.sync(ctx, SnapshotLake, r.srcRows, true); err != nil {
				return err
			}
			if err := r.resetLake(ctx); err != nil {
				return err
			}
		}
	}
	if r.wants(Incremental) || r.wants(BaselineUpsert) {
		for range r.opts.Trials {
			gen, err := r.changeAtSource(ctx, r.opts.Rows)
			if err != nil {
				return err
			}
			if r.wants(BaselineUpsert) && r.wants(BaselineCopy) {
				if err := r.baselineUpsert(ctx, r.opts.Rows, gen); err != nil {
					return err
				}
			}
			if err := r.sync(ctx, Incremental, int64(r.opts.Rows), r.wants(Incremental)); err != nil {
				return err
			}
		}
	}
	if r.wants(IncrementalSmall) {
		if _, err := r.changeAtSource(ctx, r.opts.SmallRows); err != nil {
			return err
		}
		if err := r.sync(ctx, IncrementalSmall, int64(r.opts.SmallRows), true); err != nil {
			return err
		}
	}
	return nil
}

// resetStore removes what ehrsync wrote for org, so that the next snapshot
// starts from an empty store as the first did.
func (r *runner) resetStore(ctx context.Context, org string) error {
	if _, err := r.store.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{org}.Sanitize()+" CASCADE"); err != nil {
		return fmt.Errorf("reset the store: %w", err)
	}
	if _, err := r.store.Exec(ctx, "DELETE FROM ehrsync.positions WHERE org = $1", org); err != nil {
		return fmt.Errorf("reset the store: %w", err)
	}
	return nil
}

// baselineColumns are the synced columns with the store table's types.
const baselineColumns = `
	charge_id uuid NOT NULL, practice_id character(4), person_id uuid,
	service_item_id text, cpt4_code_id text, quantity numeric(19,2), unit_price numeric(19,2),
	amt numeric(19,2), pat_amt numeric(19,2), begin_date_of_service text, end_date_of_service text,
	status character(1), created_by integer, create_timestamp timestamp(3), modified_by integer,
	modify_timestamp timestamp(3), row_timestamp bigint`

// baselineTable has the synced columns and the same primary key as the
// store's table.
const baselineTable = `CREATE TABLE bench_baseline (` + baselineColumns + `,
	PRIMARY KEY (charge_id))`

// pipeTable is baseline_pipe's target: the same columns, no primary key
// (baselinePipe adds it after the load).
const pipeTable = `CREATE TABLE bench_pipe (` + baselineColumns + `)`

func (r *runner) baselineCopy(ctx context.Context) error {
	if _, err := r.store.Exec(ctx, "DROP TABLE IF EXISTS bench_baseline"); err != nil {
		return err
	}
	if _, err := r.store.Exec(ctx, baselineTable); err != nil {
		return fmt.Errorf("create baseline table: %w", err)
	}
	conn, err := r.store.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	r.logf("%s: %d rows", BaselineCopy, r.opts.Rows)
	m := r.meter()
	if _, err := copyRows(ctx, conn.Conn().PgConn(), pgx.Identifier{"bench_baseline"}, true, r.opts.Rows, func(k int) row { return genRow(k, 0) }); err != nil {
		return err
	}
	r.record(Scenario{Name: BaselineCopy, Rows: int64(r.opts.Rows), CPUOf: "client"}, m.stop(), 0, 0)
	return nil
}

// baselinePipe moves the source's rows into the store as pg_dump and
// pgcopydb move a table, with no ehrsync code: a binary COPY TO on a source
// connection streamed (pipeCopy) into a binary COPY FROM on a store
// connection, into an empty table without its primary key, then ADD PRIMARY
// KEY. The copy and the key are timed. The table's row count is then
// compared with the source's, and the table dropped.
func (r *runner) baselinePipe(ctx context.Context) error {
	if _, err := r.store.Exec(ctx, "DROP TABLE IF EXISTS bench_pipe"); err != nil {
		return err
	}
	if _, err := r.store.Exec(ctx, pipeTable); err != nil {
		return fmt.Errorf("create %s table: %w", BaselinePipe, err)
	}
	src, err := r.src.Acquire(ctx)
	if err != nil {
		return err
	}
	defer src.Release()
	dst, err := r.store.Acquire(ctx)
	if err != nil {
		return err
	}
	defer dst.Release()
	cols := make([]string, len(Columns))
	for i, c := range Columns {
		cols[i] = pgx.Identifier{c}.Sanitize()
	}
	list := strings.Join(cols, ", ")
	// No ORDER BY: pg_dump and pgcopydb copy a table in its physical order,
	// and the primary key is built after the load whatever the order.
	out := "COPY (SELECT " + list + " FROM " + pgx.Identifier{"dbo", "charges"}.Sanitize() + ") TO STDOUT (FORMAT binary)"
	in := "COPY bench_pipe (" + list + ") FROM STDIN (FORMAT binary)"
	r.logf("%s: %d rows", BaselinePipe, r.srcRows)
	m := r.meter()
	sent, err := pipeCopy(ctx, src.Conn().PgConn(), dst.Conn().PgConn(), out, in)
	if err != nil {
		return fmt.Errorf("%s: %w", BaselinePipe, err)
	}
	if _, err := dst.Exec(ctx, "ALTER TABLE bench_pipe ADD PRIMARY KEY (charge_id)"); err != nil {
		return fmt.Errorf("%s: add the primary key: %w", BaselinePipe, err)
	}
	used := m.stop()
	var have int64
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM bench_pipe").Scan(&have); err != nil {
		return fmt.Errorf("%s: %w", BaselinePipe, err)
	}
	if have != r.srcRows || sent != r.srcRows {
		return fmt.Errorf("%s: the store has %d rows (%d sent), the source %d", BaselinePipe, have, sent, r.srcRows)
	}
	// The snapshot that follows finds the store as baseline_copy left it.
	if _, err := dst.Exec(ctx, "DROP TABLE bench_pipe"); err != nil {
		return err
	}
	r.record(Scenario{Name: BaselinePipe, Rows: have, CPUOf: "client", Verified: "count"}, used, 0, 0)
	return nil
}

// pipeChunk is the most pipeCopy holds between the two connections: the
// payload of one CopyData message that pgconn's CopyFrom sends (its 64 KiB
// read buffer less the 5-byte message header).
const pipeChunk = 64<<10 - 5

// pipeCopy runs out (a COPY TO STDOUT) on src and in (a COPY FROM STDIN) on
// dst at once, the first's output streamed into the second through a pipe,
// pipeChunk bytes at a time, nothing buffered whole. The server sends one
// CopyData message a row; CopyFrom sends each read of its reader as one
// message, one write to the socket, so the rows are gathered into chunks
// first, as libpq's output buffer gathers them for pg_dump and pgcopydb.
// It returns the rows out sent. When either side fails the pipe is closed
// with its error, which stops the other.
func pipeCopy(ctx context.Context, src, dst *pgconn.PgConn, out, in string) (int64, error) {
	pr, pw := io.Pipe()
	var sent int64
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		w := bufio.NewWriterSize(pw, pipeChunk)
		tag, err := src.CopyTo(gctx, w, out)
		if err == nil {
			err = w.Flush()
		}
		pw.CloseWithError(err) // nil: the reader sees EOF
		if err != nil {
			return fmt.Errorf("copy out of the source: %w", err)
		}
		sent = tag.RowsAffected()
		return nil
	})
	g.Go(func() error {
		_, err := dst.CopyFrom(gctx, pr, in)
		pr.CloseWithError(err) // a writer still writing gets err (or io.ErrClosedPipe)
		if err != nil {
			return fmt.Errorf("copy into the store: %w", err)
		}
		return nil
	})
	if err := g.Wait(); err != nil {
		return 0, err
	}
	return sent, nil
}

func (r *runner) baselineUpsert(ctx context.Context, n int, gen func(k int) row) error {
	conn, err := r.store.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	sets := make([]string, 0, len(Columns))
	for _, c := range Columns[1:] {
		q := pgx.Identifier{c}.Sanitize()
		sets = append(sets, q+" = EXCLUDED."+q)
	}
	r.logf("%s: %d changes", BaselineUpsert, n)
	m := r.meter()
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "CREATE TEMP TABLE bench_stage (LIKE bench_baseline) ON COMMIT DROP"); err != nil {
			return err
		}
		if _, err := copyRows(ctx, conn.Conn().PgConn(), pgx.Identifier{"bench_stage"}, true, n, gen); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "INSERT INTO bench_baseline SELECT * FROM bench_stage ON CONFLICT (charge_id) DO UPDATE SET "+strings.Join(sets, ", "))
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: %w", BaselineUpsert, err)
	}
	r.record(Scenario{Name: BaselineUpsert, Rows: int64(n), CPUOf: "client"}, m.stop(), 0, 0)
	return nil
}

// sync runs `ehrsync sync` as a child process, records it as scenario name
// when keep, and checks the store against the source.
func (r *runner) sync(ctx context.Context, name string, rows int64, keep bool) error {
	org, config := org, r.config
	switch name {
	case SnapshotMSSQL:
		org, config = orgMSSQL, r.mssqlConfig
	case SnapshotLake:
		org, config = orgLake, r.lakeConfig
	}
	if name == Snapshot || name == SnapshotMSSQL || name == SnapshotLake {
		// Every snapshot trial is an initial load.
		var table, positions bool
		if err := r.store.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL, to_regclass('ehrsync.positions') IS NOT NULL",
			pgx.Identifier{org, "charges"}.Sanitize()).Scan(&table, &positions); err != nil {
			return err
		}
		if positions && !table {
			if err := r.store.QueryRow(ctx, "SELECT EXISTS (SELECT FROM ehrsync.positions WHERE org = $1)", org).Scan(&table); err != nil {
				return err
			}
		}
		if table {
			return fmt.Errorf("%s: the store is not empty", name)
		}
	}
	r.logf("%s: ehrsync sync (%d rows)", name, rows)
	args := []string{"--log-format", "json", "sync", "--config", config}
	bin := r.opts.Binary
	if r.opts.Perf != "" {
		args = append([]string{"record", "-g", "-q", "-o", filepath.Join(r.opts.Perf, name+".perf.data"), "--", bin}, args...)
		bin = "perf"
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "EHRSYNC_BENCH_STORE_URL="+r.storeURL)
	if r.tds != nil {
		cmd.Env = append(cmd.Env, mssqlPasswordEnv+"="+r.tds.password)
	}
	cmd.Stdout, cmd.Stderr = &out, &out
	m := r.meter()
	err := cmd.Run()
	used := m.stop()
	if err == nil && name == SnapshotMSSQL {
		err = r.tds.failure()
	}
	if err != nil {
		if name == SnapshotMSSQL {
			if ferr := r.tds.failure(); ferr != nil {
				err = fmt.Errorf("%w (%w)", err, ferr)
			}
		}
		return fmt.Errorf("%s: ehrsync sync: %w\n%s", name, err, out.String())
	}
	if name == SnapshotMSSQL {
		r.logf("%s: the stand-in answered %s", name, r.tds.h.summary())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	verified, err := r.check(ctx, org)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	var lakeBytes int64
	if name == SnapshotLake {
		if lakeBytes, err = r.checkLake(ctx, rows); err != nil {
			return err
		}
	}
	if keep {
		s := Scenario{Name: name, Rows: rows, CPUOf: "engine", Verified: verified}
		if lakeBytes > 0 {
			s.LakeMB = float64(lakeBytes) / 1e6
			s.LakeMBPerSec = s.LakeMB / used.elapsed.Seconds()
		}
		if name == SnapshotMSSQL {
			s.SourceCPUMicrosPerRow = float64(used.self.Microseconds()) / float64(rows)
		}
		r.record(s, used, cpu, float64(ru.Maxrss)/1024)
	}
	return nil
}

// check compares org's store with the source: every row with
// Options.Verify, the row counts otherwise. snapshot_mssql's store is
// compared with the PostgreSQL source too: the stand-in serves its rows.
func (r *runner) check(ctx context.Context, org string) (string, error) {
	if r.opts.Verify {
		t, ok := schemas.NextGen().Table(table)
		if !ok {
			return "", fmt.Errorf("%s is not in the catalog", table)
		}
		t, err := t.Project(Columns)
		if err != nil {
			return "", err
		}
		d, err := verify.Table(ctx, r.src, r.store, "dbo", org, t)
		if err != nil {
			return "", err
		}
		if !d.Equal() {
			return "", fmt.Errorf("store differs from the source: %s", d)
		}
		return "rows", nil
	}
	var have int64
	if err := r.store.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{org, "charges"}.Sanitize()).Scan(&have); err != nil {
		return "", err
	}
	if have != r.srcRows {
		return "", fmt.Errorf("store has %d rows, the source %d", have, r.srcRows)
	}
	return "count", nil
}

// record records scenario s, which used u; cpu is the CPU of the process
// s.CPUOf names when it is not this one (0: this process's, u.self).
func (r *runner) record(s Scenario, u usage, cpu time.Duration, rssMB float64) {
	if cpu == 0 {
		cpu = u.self
	}
	perRow := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(s.Rows) }
	s.Seconds = u.elapsed.Seconds()
	s.RowsPerSec = float64(s.Rows) / s.Seconds
	s.MBPerSec = float64(s.Rows) * r.rep.RowBytes / 1e6 / s.Seconds
	s.CPUMicrosPerRow = perRow(cpu)
	if u.server >= 0 {
		s.ServerCPUMicrosPerRow = perRow(u.server)
		// Every process's CPU: the engine or this client, this process
		// besides (the SQL Server stand-in), and PostgreSQL's.
		total := u.self + u.server
		if s.CPUOf == "engine" {
			total += cpu
		}
		s.TotalCPUMicrosPerRow = perRow(total)
		s.CPUBoundSeconds = total.Seconds() / float64(r.rep.Machine.CPUs)
	}
	s.PeakRSSMB = rssMB
	r.trials[s.Name] = append(r.trials[s.Name], s)
	r.logf("%s: %.2f s, %.0f rows/s", s.Name, s.Seconds, s.RowsPerSec)
}

// summarize reports each scenario's median trial, in the order the
// scenarios first ran, and each ratio as the median of the trials' ratios
// (trial i of one side against trial i of the other).
func (r *runner) summarize() {
	for _, name := range []string{BaselineCopy, BaselinePipe, SnapshotMSSQL, Snapshot, SnapshotLake, BaselineUpsert, Incremental, IncrementalSmall} {
		ts := r.trials[name]
		if len(ts) == 0 {
			continue
		}
		byTime := slices.Clone(ts)
		slices.SortFunc(byTime, func(a, b Scenario) int { return cmp.Compare(a.Seconds, b.Seconds) })
		s := byTime[(len(byTime)-1)/2]
		if len(ts) > 1 {
			for _, t := range ts {
				s.TrialSeconds = append(s.TrialSeconds, t.Seconds)
				s.TrialCPUMicrosPerRow = append(s.TrialCPUMicrosPerRow, t.CPUMicrosPerRow)
			}
		}
		r.rep.Scenarios = append(r.rep.Scenarios, s)
	}
	ratio := func(name, ours, base string, of func(Scenario) float64) {
		a, b := r.trials[ours], r.trials[base]
		var rs []float64
		for i := range min(len(a), len(b)) {
			rs = append(rs, of(a[i])/of(b[i]))
		}
		if len(rs) > 0 {
			slices.Sort(rs)
			r.rep.Ratios[name] = rs[(len(rs)-1)/2]
		}
	}
	rowsPerSec := func(s Scenario) float64 { return s.RowsPerSec }
	ratio(SnapshotVsBaselineCopy, Snapshot, BaselineCopy, rowsPerSec)
	ratio(SnapshotVsBaselinePipe, Snapshot, BaselinePipe, rowsPerSec)
	ratio(IncrementalVsBaselineUpsert, Incremental, BaselineUpsert, rowsPerSec)
	ratio(IncrementalVsBaselineCopy, Incremental, BaselineCopy, rowsPerSec)
	ratio(SnapshotLakeVsSnapshot, SnapshotLake, Snapshot, rowsPerSec)
	// The SQL Server path's cost: engine CPU per row, not speed.
	ratio(SnapshotMSSQLVsSnapshot, SnapshotMSSQL, Snapshot, func(s Scenario) float64 { return s.CPUMicrosPerRow })
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if name, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
		}
	}
	return ""
}
