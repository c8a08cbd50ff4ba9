package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/demo"
	"github.com/ehrsync/ehrsync/pkg/denials"
	"github.com/ehrsync/ehrsync/pkg/lake/laketest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/pkg/verify"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

const org = "st-mary"

// env is one end-to-end setup: a synthetic NextGen source database and a
// store database, and a configuration file syncing every catalog table.
type env struct {
	src, store       *pgxpool.Pool
	srcURL, storeURL string
	config           string
	writer           synth.Writer
	// quiet are instants the source was quiet (no write in flight) and its
	// next transaction id then, recorded by tests that run a workload
	// beside the syncs (quietXIDBefore).
	quiet []quietPoint
}

type quietPoint struct {
	at  time.Time
	xid int64
}

// markQuiet records that the source is quiet now.
func (e *env) markQuiet(t *testing.T) {
	t.Helper()
	var xid int64
	require.NoError(t, e.src.QueryRow(context.Background(), "SELECT pg_current_xact_id()::text::bigint").Scan(&xid))
	e.quiet = append(e.quiet, quietPoint{at: time.Now(), xid: xid})
}

// quietXIDBefore returns the source's transaction id at the last quiet
// instant before the table's current snapshot began (its first chunk after
// a reset or a finished snapshot): rows whose xmin is older existed,
// unchanged, throughout that snapshot.
func (e *env) quietXIDBefore(t *testing.T, table string) int64 {
	t.Helper()
	hist, err := watermarks.NewStore(e.store).History(context.Background(), org, table, 0)
	require.NoError(t, err)
	var began time.Time
	for _, h := range hist { // newest first
		if h.Reason == watermarks.ReasonReset || h.Reason == watermarks.ReasonRewind {
			continue
		}
		began = h.At
		if s, ok := h.From.(watermarks.Snapshot); !ok || len(s.LastKey) == 0 {
			break
		}
	}
	xid := int64(0)
	for _, q := range e.quiet {
		if !q.at.After(began) {
			xid = q.xid
		}
	}
	return xid
}

func newEnv(t *testing.T, days, batchRows int) *env {
	t.Helper()
	return newEnvWithStore(t, days, batchRows, pgtest.URL(t))
}

// newEnvWithStore is newEnv with the store database at storeURL.
func newEnvWithStore(t *testing.T, days, batchRows int, storeURL string) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{srcURL: pgtest.URL(t), storeURL: storeURL}
	var err error
	e.src, err = pgxpool.New(ctx, e.srcURL)
	require.NoError(t, err)
	t.Cleanup(e.src.Close)
	e.store, err = pgxpool.New(ctx, e.storeURL)
	require.NoError(t, err)
	t.Cleanup(e.store.Close)

	require.NoError(t, storedb.Migrate(ctx, e.store))
	cat := schemas.NextGen()
	require.NoError(t, synth.CreatePostgres(ctx, e.src, cat))
	e.writer = synth.NewPostgresWriter(e.src, "dbo")
	_, err = synth.Populate(ctx, e.writer, synth.Options{Preset: synth.Small, Seed: 7, Catalog: cat}, days)
	require.NoError(t, err)

	u, err := url.Parse(e.srcURL)
	require.NoError(t, err)
	var tables strings.Builder
	for _, tb := range cat.Tables() {
		changeLog := tb.Name == "claims"
		fmt.Fprintf(&tables, "      - {name: %s, strategy: auto, change_log: %t, reconcile_every: 1s}\n", tb.QualifiedName(), changeLog)
	}
	cfg := oneOrgConfig(u, "", batchRows, tables.String())
	e.config = filepath.Join(t.TempDir(), "ehrsync.yaml")
	require.NoError(t, os.WriteFile(e.config, []byte(cfg), 0o600))
	return e
}

// oneOrgConfig renders a configuration of one organization (org) reading
// the PostgreSQL source at u, with top-level sections extra (before
// defaults) and the tables' lines.
func oneOrgConfig(u *url.URL, extra string, batchRows int, tables string) string {
	return fmt.Sprintf(`store:
  url: env:TEST_STORE_URL
%sdefaults:
  batch_rows: %d
orgs:
  - name: %s
    schedule: {every: 10m}
    source:
      dialect: postgres
      via: direct
      host: %s
      port: %s
      database: %s
      user: %s
      tls: {mode: disable}
    tables:
%s`, extra, batchRows, org, u.Hostname(), u.Port(), strings.TrimPrefix(u.Path, "/"), u.User.Username(), tables)
}

// command is the ehrsync binary with this environment's configuration.
func (e *env) command(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), "TEST_STORE_URL="+e.storeURL)
	return cmd
}

// sync runs `ehrsync sync` to completion and fails the test on an error.
func (e *env) sync(t *testing.T) string {
	t.Helper()
	var out bytes.Buffer
	cmd := e.command("--log-format", "json", "sync", "--config", e.config)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), "ehrsync sync:\n%s", out.String())
	return out.String()
}

// simulate drives days of workload at the source.
func (e *env) simulate(t *testing.T, days int) synth.Stats {
	t.Helper()
	stats, _, err := synth.Simulate(context.Background(), e.writer, synth.Options{}, days)
	require.NoError(t, err)
	return stats
}

// requireEqual compares every row of every table between source and store.
func (e *env) requireEqual(t *testing.T) int64 {
	t.Helper()
	var rows int64
	for _, tb := range schemas.NextGen().Tables() {
		d, err := verify.Table(context.Background(), e.src, e.store, "dbo", sink.SchemaFor(org), tb)
		require.NoError(t, err)
		require.True(t, d.Equal(), "%s", d)
		rows += d.SourceRows
	}
	return rows
}

// requirePositionsCovered checks, for every table, that the saved position
// covers no source row the store lacks: the store never runs ahead of its
// data (PITFALLS P5). The source must be quiet while it runs.
func (e *env) requirePositionsCovered(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	positions, err := watermarks.NewStore(e.store).List(ctx, org)
	require.NoError(t, err)
	for _, p := range positions {
		tb, ok := schemas.NextGen().Table(p.Table)
		require.True(t, ok, p.Table)
		where, args := covered(t, tb, p.Position)
		if where == "" {
			continue
		}
		if snap, ok := p.Position.(watermarks.Snapshot); ok && snap.Resume == nil && len(e.quiet) > 0 {
			// A full snapshot during a workload covers the rows that
			// existed, unchanged, since before it began.
			args = append(args, e.quietXIDBefore(t, p.Table))
			where += fmt.Sprintf(" AND xmin::text::bigint < $%d", len(args))
		}
		keys := pgx.Identifier{tb.Key[0]}.Sanitize()
		for _, k := range tb.Key[1:] {
			keys += ", " + pgx.Identifier{k}.Sanitize()
		}
		rows, err := e.src.Query(ctx, fmt.Sprintf("SELECT ROW(%s)::text FROM dbo.%s WHERE %s", keys, pgx.Identifier{tb.Name}.Sanitize(), where), args...)
		require.NoError(t, err)
		want, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		rows, err = e.store.Query(ctx, fmt.Sprintf("SELECT ROW(%s)::text FROM %s", keys, pgx.Identifier{sink.SchemaFor(org), tb.Name}.Sanitize()))
		require.NoError(t, err)
		have, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		inStore := make(map[string]bool, len(have))
		for _, k := range have {
			inStore[k] = true
		}
		missing := 0
		for _, k := range want {
			if !inStore[k] {
				missing++
			}
		}
		require.Zero(t, missing, "%s: the saved position %s covers %d source rows the store does not have", p.Table, p.Position, missing)
	}
}

// covered renders the source rows a position covers as a WHERE clause with
// its arguments. A snapshot position covers the keys up to its last one
// among the rows that existed when it began (its resume cursor): rows
// written during the snapshot are the cursor's to bring.
func covered(t *testing.T, tb *schemas.Table, pos watermarks.Position) (string, []any) {
	t.Helper()
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	// keyTuple renders (k1, k2, ...) and the bound's parameters, typed by
	// the key columns (values travel as their canonical text).
	keyTuple := func(k watermarks.Key) (string, string) {
		require.Len(t, k, len(tb.Key))
		cols, vals := make([]string, len(k)), make([]string, len(k))
		for i, v := range k {
			cols[i] = pgx.Identifier{tb.Key[i]}.Sanitize()
			vals[i] = arg(v.Text())
		}
		return "(" + strings.Join(cols, ", ") + ")", "(" + strings.Join(vals, ", ") + ")"
	}
	var clause func(pos watermarks.Position) string
	clause = func(pos watermarks.Position) string {
		switch p := pos.(type) {
		case watermarks.Snapshot:
			if len(p.LastKey) == 0 {
				return ""
			}
			cols, vals := keyTuple(p.LastKey)
			where := cols + " <= " + vals
			if resume := clause(p.Resume); resume != "" {
				where += " AND " + resume
			}
			return where
		case watermarks.Cursor:
			v, ok := p.Value.AsInt64()
			if !ok {
				rv, isRV := p.Value.AsRowVersion()
				require.True(t, isRV, "cursor value type %s", p.Value.Type())
				for _, b := range rv {
					v = v<<8 | int64(b)
				}
			}
			col := pgx.Identifier{p.Column}.Sanitize()
			if len(p.Key) == 0 {
				return col + " <= " + arg(v)
			}
			cols, vals := keyTuple(p.Key)
			return fmt.Sprintf("(%s, %s) <= (%s, %s)", col, strings.Trim(cols, "()"), arg(v), strings.Trim(vals, "()"))
		}
		return ""
	}
	where := clause(pos)
	return where, args
}

// requireNoDuplicateChanges checks that the claims change log holds each
// source row version once.
func (e *env) requireNoDuplicateChanges(t *testing.T) {
	t.Helper()
	require.Positive(t, e.noDuplicateChanges(t))
}

// noDuplicateChanges checks that the claims change log (when there is one
// yet) holds each source row version once, and returns its entries.
func (e *env) noDuplicateChanges(t *testing.T) int64 {
	t.Helper()
	var n, distinct int64
	err := e.store.QueryRow(context.Background(),
		fmt.Sprintf("SELECT count(*), count(DISTINCT (claim_id, row_timestamp)) FROM %s", pgx.Identifier{sink.SchemaFor(org), "claims__changes"}.Sanitize())).
		Scan(&n, &distinct)
	if isUndefinedTable(err) {
		return 0
	}
	require.NoError(t, err)
	require.Equal(t, distinct, n, "the change log holds duplicated changes")
	return n
}

func TestSyncWorkloadSync(t *testing.T) {
	e := newEnv(t, 20, 2000)
	e.sync(t)
	first := e.requireEqual(t)
	require.Positive(t, first)
	e.requirePositionsCovered(t)

	stats := e.simulate(t, 3)
	require.Positive(t, stats.Batches)
	e.sync(t)
	second := e.requireEqual(t)
	require.Greater(t, second, first)
	e.requirePositionsCovered(t)
	e.requireNoDuplicateChanges(t)

	// The store's denied_claim_lines view agrees with the same rules
	// computed at the source.
	var atSource, inStore int
	var adjudicated int
	var rate float64
	require.NoError(t, e.src.QueryRow(context.Background(), synth.DenialRateSQL("dbo")).Scan(&adjudicated, &atSource, &rate))
	require.NoError(t, e.store.QueryRow(context.Background(),
		"SELECT count(DISTINCT claim_id) FROM "+pgx.Identifier{sink.SchemaFor(org), denials.ViewName}.Sanitize()).Scan(&inStore))
	require.Positive(t, atSource)
	require.Equal(t, atSource, inStore, "denied claims in the store's view differ from the source")

	// A third run with nothing new changes nothing.
	out := e.sync(t)
	require.NotContains(t, out, "failed")
	require.Equal(t, second, e.requireEqual(t))
}

// killDuring starts `ehrsync sync`, waits until it has committed at least
// after chunks since start, and SIGKILLs it. It reports whether the kill
// landed before the process finished on its own.
func (e *env) killDuring(t *testing.T, after int) bool {
	t.Helper()
	ctx := context.Background()
	var before int64
	require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.position_history").Scan(&before))
	cmd := e.command("--log-format", "json", "sync", "--config", e.config)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			require.NoError(t, err, "ehrsync sync:\n%s", out.String())
			return false
		default:
		}
		var n int64
		require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FROM ehrsync.position_history").Scan(&n))
		if n-before >= int64(after) {
			require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
			<-done
			return true
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("ehrsync sync neither committed %d chunks nor finished in 2 minutes", after)
	return false
}

func TestKilledSyncsResumeWithoutLossOrDuplicates(t *testing.T) {
	e := newEnv(t, 30, 150)
	rng := rand.New(rand.NewPCG(42, 7))
	kills := 0
	// Kill the initial snapshot several times at random chunk counts.
	for i := 0; i < 4; i++ {
		if e.killDuring(t, 1+rng.IntN(40)) {
			kills++
		}
		e.requirePositionsCovered(t)
	}
	e.sync(t)
	e.requireEqual(t)

	// Then an incremental run over several days of changes.
	e.simulate(t, 4)
	for i := 0; i < 3; i++ {
		if e.killDuring(t, 1+rng.IntN(8)) {
			kills++
		}
		e.requirePositionsCovered(t)
	}
	e.sync(t)
	rows := e.requireEqual(t)
	e.requirePositionsCovered(t)
	e.requireNoDuplicateChanges(t)
	require.GreaterOrEqual(t, kills, 5, "too few kills landed mid-run to prove anything")
	t.Logf("%d kills mid-run, %d rows compared, 0 lost, 0 duplicated", kills, rows)
}

// TestLongOpenTransactionAtTheSourceLosesNothing holds a source transaction
// open across a sync: its row must arrive in the sync after it commits
// (PITFALLS P10).
func TestLongOpenTransactionAtTheSourceLosesNothing(t *testing.T) {
	e := newEnv(t, 5, 1000)
	ctx := context.Background()
	e.sync(t)

	tx, err := e.src.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	// The open transaction writes first, so its row version is older than
	// the rows the workload commits next.
	_, err = tx.Exec(ctx, `UPDATE dbo.payer_mstr SET payer_name = payer_name || ' (renamed)'
		WHERE payer_id = (SELECT payer_id FROM dbo.payer_mstr ORDER BY payer_id LIMIT 1)`)
	require.NoError(t, err)
	e.simulate(t, 1)
	e.sync(t)
	require.NoError(t, tx.Commit(ctx))
	e.sync(t)
	e.requireEqual(t)
	var renamed int
	require.NoError(t, e.store.QueryRow(ctx, `SELECT count(*) FROM st_mary.payer_mstr WHERE payer_name LIKE '% (renamed)'`).Scan(&renamed))
	require.Equal(t, 1, renamed)
}

// TestDemo runs `ehrsync demo` as a newcomer would and checks that it ends
// with a passing verification, having carried deletes to the store.
func TestDemo(t *testing.T) {
	// Under a directory the postgres user can enter (t.TempDir is 0700).
	parent, err := os.MkdirTemp("", "ehrsync-demo-")
	require.NoError(t, err)
	defer os.RemoveAll(parent)
	require.NoError(t, os.Chmod(parent, 0o755))
	dir := filepath.Join(parent, "demo")
	var out bytes.Buffer
	cmd := exec.Command(binary, "--log-level", "warn", "demo", "--dir", dir)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), out.String())
	text := out.String()
	require.Contains(t, text, "Verification: the store equals the source: 9 tables")
	require.Contains(t, text, "Denied claims in the store:")
	// The last sync carried the day's deleted ERA batch to the store.
	second := text[strings.Index(text, "Rest of the day"):]
	var deleted int
	for _, line := range strings.Split(second, "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && (f[0] == "dbo.trans_detail" || f[0] == "dbo.transactions") {
			var n int
			_, err := fmt.Sscan(f[4], &n)
			require.NoError(t, err, line)
			deleted += n
		}
	}
	require.Positive(t, deleted, "the demo's day of workload deleted a batch, but no delete reached the store:\n%s", second)
	// It leaves the change lake behind, and nothing else.
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	var left []string
	for _, e := range entries {
		left = append(left, e.Name())
	}
	require.Equal(t, []string{demo.LakeDir}, left, "the demo left more than its lake in %s", dir)
	require.Contains(t, text, "Change lake (Apache Iceberg)")
	meta := regexp.MustCompile(`iceberg_scan\('([^']+\.metadata\.json)'\)`).FindStringSubmatch(text)
	require.NotNil(t, meta, "the demo prints a DuckDB query of the claims' lake table")
	rows := laketest.Read(t, meta[1])
	require.NotEmpty(t, rows, "the lake table the demo's query reads")
}
