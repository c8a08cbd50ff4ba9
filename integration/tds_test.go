package integration

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The SQL Server end-to-end test: the real binary reads the synthetic
// NextGen source from SQL Server's semantics (package mssqlmodel) served
// over TDS on loopback (package tdstest), through go-mssqldb with TLS
// required and the certificate verified, exactly as it reads a hospital's
// SQL Server, and every row of every table is compared with the store.
//
// The NextGen catalog gives every table but reason_code_links a rowversion
// column, so among its tables `auto` picks CDC (claims, reason_code_links),
// Change Tracking (charges, transactions, trans_detail) and the rowversion
// high-water mark (the rest). Its other two paths, the timestamp cursor
// with look-back and the keyset snapshot, are reached with two tables of a
// `catalog:` file that receive the same writes as a NextGen table in the
// same source transaction: trans_detail_ts (trans_detail without its
// rowversion column) and reason_code_links_snap (reason_code_links, not
// captured).

// tdsOrgPractice is the practice the organization syncs; the source holds
// a second one whose rows must not reach the store.
const tdsOrgPractice = "0001"

// tdsEnv is a served model holding the synthetic source, a store, and a
// configuration syncing every table of both catalogs.
type tdsEnv struct {
	model    *mssqlmodel.Model
	tds      *tdstest.Server
	writer   synth.Writer
	store    *pgxpool.Pool
	storeURL string
	config   string
	tables   []*schemas.Table // every synced table, NextGen's first
}

// mirrorWriter applies each batch with its operations on a mirrored table
// repeated, right after them, on the mirror tables: one source transaction
// writes both.
type mirrorWriter struct {
	synth.Writer
	mirrors map[string][]*schemas.Table // by the mirrored table's name
}

func (w *mirrorWriter) Apply(ctx context.Context, b *synth.Batch) error {
	nb := *b
	nb.Ops = nil
	for _, op := range b.Ops {
		nb.Ops = append(nb.Ops, op)
		for _, m := range w.mirrors[op.Table.Name] {
			mop := op
			mop.Table = m
			nb.Ops = append(nb.Ops, mop)
		}
	}
	return w.Writer.Apply(ctx, &nb)
}

// mirrorOf returns t renamed name, without its rowversion column when
// dropRowVersion.
func mirrorOf(t *schemas.Table, name string, dropRowVersion bool) *schemas.Table {
	m := *t
	m.Name = name
	m.Columns = slices.Clone(t.Columns)
	if dropRowVersion && t.RowVersion != "" {
		m.Columns = slices.DeleteFunc(m.Columns, func(c schemas.Column) bool { return strings.EqualFold(c.Name, t.RowVersion) })
		m.RowVersion = ""
	}
	m.Key = slices.Clone(t.Key)
	return &m
}

// catalogFile renders t in the format of schemas/catalog/nextgen/*.yaml.
func catalogFile(t *schemas.Table) string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema: %s\nname: %s\ndialect: sqlserver\nkey: [%s]\n", t.Schema, t.Name, strings.Join(t.Key, ", "))
	if t.RowVersion != "" {
		fmt.Fprintf(&b, "row_version: %s\n", t.RowVersion)
	}
	if t.ModifiedAt != "" {
		fmt.Fprintf(&b, "modified_at: %s\n", t.ModifiedAt)
	}
	if t.Practice != "" {
		fmt.Fprintf(&b, "practice: %s\n", t.Practice)
	}
	b.WriteString("columns:\n")
	for _, c := range t.Columns {
		fmt.Fprintf(&b, "  - {name: %s, type: %q, nullable: %t}\n", c.Name, c.Type.String(), c.Nullable)
	}
	return b.String()
}

func newTDSEnv(t *testing.T, batchRows int) *tdsEnv {
	t.Helper()
	ctx := context.Background()
	e := &tdsEnv{storeURL: pgtest.URL(t)}
	var err error
	e.store, err = pgxpool.New(ctx, e.storeURL)
	require.NoError(t, err)
	t.Cleanup(e.store.Close)
	require.NoError(t, storedb.Migrate(ctx, e.store))

	e.model = mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true})
	cat := schemas.NextGen()
	require.NoError(t, mssqltest.CreateSynth(e.model, cat, synth.SQLServerOptions{
		CDCTables: []string{"claims", "reason_code_links"},
		CTTables:  []string{"charges", "transactions", "trans_detail"},
	}))
	td, ok := cat.Table("trans_detail")
	require.True(t, ok)
	links, ok := cat.Table("reason_code_links")
	require.True(t, ok)
	tsMirror := mirrorOf(td, "trans_detail_ts", true)
	snapMirror := mirrorOf(links, "reason_code_links_snap", false)
	require.Empty(t, snapMirror.RowVersion+snapMirror.ModifiedAt, "reason_code_links has neither cursor")
	dir := t.TempDir()
	var catalogs []string
	for _, m := range []*schemas.Table{tsMirror, snapMirror} {
		require.NoError(t, e.model.CreateTable(m))
		path := filepath.Join(dir, m.Name+".yaml")
		require.NoError(t, os.WriteFile(path, []byte(catalogFile(m)), 0o600))
		catalogs = append(catalogs, path)
	}
	e.tables = append(cat.Tables(), tsMirror, snapMirror)
	e.writer = &mirrorWriter{
		Writer:  mssqltest.NewSynthWriter(e.model, "dbo"),
		mirrors: map[string][]*schemas.Table{td.Name: {tsMirror}, links.Name: {snapMirror}},
	}

	srv := mssqltest.Serve(t, e.model)
	e.tds = srv.TDS
	src := srv.Source

	var tables strings.Builder
	for _, tb := range e.tables {
		fmt.Fprintf(&tables, "      - {name: %s, strategy: auto, change_log: %t", tb.QualifiedName(), tb.Name == "claims")
		if tb.RowVersion != "" || tb.ModifiedAt != "" || tb.Name == snapMirror.Name {
			// The tables auto reads by a high-water mark or a snapshot,
			// blind to deletes: reconcile at every run.
			tables.WriteString(", reconcile_every: 1ns")
		}
		tables.WriteString("}\n")
	}
	cfg := tdsConfig(src, catalogs, batchRows, tdsOrgPractice, tables.String())
	e.config = filepath.Join(dir, "ehrsync.yaml")
	require.NoError(t, os.WriteFile(e.config, []byte(cfg), 0o600))
	return e
}

// tdsConfig renders a configuration of one organization (org, of
// practice) reading the SQL Server source src (a mssqltest server, TLS
// verified against its CA file), the password from TEST_SOURCE_PASSWORD,
// with the catalog files and the tables' lines.
func tdsConfig(src config.Source, catalogs []string, batchRows int, practice, tables string) string {
	return fmt.Sprintf(`store:
  url: env:TEST_STORE_URL
catalog: [%s]
defaults:
  batch_rows: %d
orgs:
  - name: %s
    schedule: {every: 10m}
    source:
      dialect: sqlserver
      via: direct
      host: %s
      port: %d
      database: %s
      user: %s
      password: env:TEST_SOURCE_PASSWORD
      practice_ids: [%q]
      tls: {mode: require, ca_file: %s}
    tables:
%s`, strings.Join(catalogs, ", "), batchRows, org, src.Host, src.Port, src.Database, src.User, practice, src.TLS.CAFile, tables)
}

// syncTDS runs `ehrsync sync --config config` against the store at
// storeURL with mssqltest's source password, fails the test on an error or
// on the password in the output, and returns the output (JSON log lines).
func syncTDS(t *testing.T, config, storeURL string) string {
	t.Helper()
	var out bytes.Buffer
	// A bound, not a measurement: a sync that hangs fails here instead of
	// holding the package's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, "--log-format", "json", "sync", "--config", config)
	cmd.Env = append(os.Environ(), "TEST_STORE_URL="+storeURL, "TEST_SOURCE_PASSWORD="+mssqltest.Password)
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Run(), "ehrsync sync:\n%s", out.String())
	require.NotContains(t, out.String(), mssqltest.Password, "the source password reached the output")
	return out.String()
}

// syncRun is what one table's run logged.
type syncRun struct {
	Strategy     string
	Chunks, Rows int
}

// sync runs `ehrsync sync` to completion, fails the test on an error, and
// returns what each table's run logged.
func (e *tdsEnv) sync(t *testing.T) map[string]syncRun {
	t.Helper()
	out := syncTDS(t, e.config, e.storeURL)
	runs := map[string]syncRun{}
	for _, line := range strings.Split(out, "\n") {
		var rec struct {
			Msg, Table string
			syncRun
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "table synced" {
			runs[rec.Table] = rec.syncRun
		}
	}
	return runs
}

// requireStrategies checks that each table synced by the path this test
// set it up for: in the run's log, and in the position the store saved.
func (e *tdsEnv) requireStrategies(t *testing.T, logged map[string]syncRun) {
	t.Helper()
	want := map[string]string{ // table -> strategy, position
		"dbo.claims":                 "cdc, cdc",
		"dbo.reason_code_links":      "cdc, cdc",
		"dbo.charges":                "change_tracking, ct",
		"dbo.transactions":           "change_tracking, ct",
		"dbo.trans_detail":           "change_tracking, ct",
		"dbo.patient_encounter":      "hwm, cursor row_timestamp",
		"dbo.payer_mstr":             "hwm, cursor row_timestamp",
		"dbo.reason_code_mstr":       "hwm, cursor row_timestamp",
		"dbo.tran_code_mstr":         "hwm, cursor row_timestamp",
		"dbo.trans_detail_ts":        "hwm, cursor modify_timestamp",
		"dbo.reason_code_links_snap": "snapshot, snapshot",
	}
	require.Len(t, want, len(e.tables))
	positions, err := watermarks.NewStore(e.store).List(context.Background(), org)
	require.NoError(t, err)
	saved := map[string]watermarks.Position{}
	for _, p := range positions {
		saved[p.Table] = p.Position
	}
	got := map[string]string{}
	for table := range want {
		pos := "none"
		switch p := saved[table].(type) {
		case watermarks.CDC:
			pos = "cdc"
		case watermarks.CT:
			pos = "ct"
		case watermarks.Cursor:
			pos = "cursor " + p.Column
		case watermarks.Snapshot:
			pos = "snapshot"
		}
		got[table] = logged[table].Strategy + ", " + pos
	}
	require.Equal(t, want, got, "strategy and saved position by table")
}

// canonical renders a value of column c in one form whichever side it
// comes from: the model (handler.go's representation) or the store (pgx's
// values; numeric columns read as text). It fails the test on a value of
// a type the column cannot hold. A store value that is not the exact image
// of a source value (a datetime between ticks) renders unlike any source
// value.
func canonical(t *testing.T, c schemas.Column, v any) string {
	t.Helper()
	if v == nil {
		return "NULL"
	}
	bad := func() string {
		t.Fatalf("column %s (%s): unexpected value of type %T", c.Name, c.Type, v)
		return ""
	}
	switch c.Type.Name {
	case "tinyint", "smallint", "int", "bigint":
		switch x := v.(type) {
		case int64:
			return strconv.FormatInt(x, 10)
		case int32:
			return strconv.FormatInt(int64(x), 10)
		case int16:
			return strconv.FormatInt(int64(x), 10)
		}
	case "bit":
		if x, ok := v.(bool); ok {
			return strconv.FormatBool(x)
		}
	case "decimal", "numeric", "money", "smallmoney":
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		r, ok := new(big.Rat).SetString(s)
		require.True(t, ok, "column %s: %q is not a decimal", c.Name, s)
		scale := c.Type.Scale
		if c.Type.Name == "money" || c.Type.Name == "smallmoney" {
			scale = 4
		}
		// The exact value, with the column's scale: a value with more
		// digits than the scale renders longer and matches nothing.
		out := r.FloatString(scale)
		if back, _ := new(big.Rat).SetString(out); back.Cmp(r) != 0 {
			return "inexact:" + s
		}
		return out
	case "uniqueidentifier":
		switch x := v.(type) {
		case []byte: // the model: wire order
			require.Len(t, x, 16, "column %s", c.Name)
			var u uuid.UUID
			// Bytes 0-3, 4-5 and 6-7 are little-endian on the wire.
			u[0], u[1], u[2], u[3] = x[3], x[2], x[1], x[0]
			u[4], u[5], u[6], u[7] = x[5], x[4], x[7], x[6]
			copy(u[8:], x[8:])
			return u.String()
		case [16]byte: // pgx: RFC 4122 order
			return uuid.UUID(x).String()
		}
	case "datetime":
		x, ok := v.(time.Time)
		if !ok {
			return bad()
		}
		return datetimeTick(x)
	case "smalldatetime":
		if x, ok := v.(time.Time); ok {
			return x.UTC().Format("2006-01-02 15:04")
		}
	case "datetime2":
		if x, ok := v.(time.Time); ok {
			// The store keeps microseconds (the 7th digit is truncated).
			return x.UTC().Truncate(time.Microsecond).Format("2006-01-02 15:04:05.000000")
		}
	case "date":
		if x, ok := v.(time.Time); ok {
			return x.UTC().Format("2006-01-02")
		}
	case "char", "nchar":
		if x, ok := v.(string); ok {
			return "'" + strings.TrimRight(x, " ") + "'"
		}
	case "varchar", "nvarchar", "text", "ntext":
		if x, ok := v.(string); ok {
			return "'" + x + "'"
		}
	case "rowversion", "binary", "varbinary":
		if x, ok := v.([]byte); ok {
			return hex.EncodeToString(x)
		}
	}
	return bad()
}

// datetimeTick renders a datetime as its 1/300 s tick. The source holds
// the tick; the store holds it as go-mssqldb's millisecond or as the
// tick's microsecond (arrowscan.DateTimeTick): anything else renders as no
// tick.
func datetimeTick(x time.Time) string {
	x = x.UTC()
	sec := x.Truncate(time.Second)
	frac := x.Sub(sec)
	tick := (int64(frac)*300 + 5e8) / 1e9
	exact := time.Duration((tick*1e9 + 150) / 300) // to the nanosecond
	if frac != exact && frac != exact.Round(time.Millisecond) && frac != exact.Round(time.Microsecond) {
		return "between ticks:" + x.Format(time.RFC3339Nano)
	}
	return fmt.Sprintf("%s+%d/300", sec.Format("2006-01-02 15:04:05"), tick)
}

// rowSet is a table's rows, canonical, by key.
type rowSet map[string]string

// sourceRows reads table tb from the model: the organization's practice
// only, when the table has a practice column.
func (e *tdsEnv) sourceRows(t *testing.T, tb *schemas.Table) rowSet {
	t.Helper()
	rows, err := e.model.Rows(tb.QualifiedName())
	require.NoError(t, err)
	out := rowSet{}
	for _, r := range rows {
		if tb.Practice != "" && r[tb.Practice] != tdsOrgPractice {
			continue
		}
		vals := make([]string, len(tb.Columns))
		for i, c := range tb.Columns {
			vals[i] = canonical(t, c, r[c.Name])
		}
		out[e.key(tb, vals)] = strings.Join(vals, " | ")
	}
	return out
}

// storeRows reads table tb's live rows from the store through q.
func (e *tdsEnv) storeRows(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, tb *schemas.Table) rowSet {
	t.Helper()
	cols := make([]string, len(tb.Columns))
	for i, c := range tb.Columns {
		cols[i] = pgx.Identifier{c.Name}.Sanitize()
		switch c.Type.Name {
		case "decimal", "numeric", "money", "smallmoney":
			cols[i] += "::text"
		}
	}
	rows, err := q.Query(context.Background(), fmt.Sprintf("SELECT %s FROM %s WHERE NOT %s", strings.Join(cols, ", "),
		pgx.Identifier{sink.SchemaFor(org), sink.TableName(tb)}.Sanitize(), sink.MetaDeleted))
	require.NoError(t, err)
	defer rows.Close()
	out := rowSet{}
	for rows.Next() {
		raw, err := rows.Values()
		require.NoError(t, err)
		vals := make([]string, len(tb.Columns))
		for i, c := range tb.Columns {
			vals[i] = canonical(t, c, raw[i])
		}
		k := e.key(tb, vals)
		require.NotContains(t, out, k, "%s: key %s twice in the store", tb.QualifiedName(), k)
		out[k] = strings.Join(vals, " | ")
	}
	require.NoError(t, rows.Err())
	return out
}

func (e *tdsEnv) key(tb *schemas.Table, vals []string) string {
	parts := make([]string, len(tb.Key))
	for i, k := range tb.Key {
		idx := slices.IndexFunc(tb.Columns, func(c schemas.Column) bool { return strings.EqualFold(c.Name, k) })
		parts[i] = vals[idx]
	}
	return strings.Join(parts, ", ")
}

// tableDiff compares one table: rows only at the source, only in the
// store, and different, with a few keys of each for the failure message.
type tableDiff struct {
	table                   string
	rows                    int
	missing, extra, changed []string
	// first is the first different row's differing columns, source and
	// store values side by side.
	first, firstKey string
}

func (d tableDiff) equal() bool { return len(d.missing)+len(d.extra)+len(d.changed) == 0 }

func (d tableDiff) String() string {
	head := func(keys []string) []string {
		slices.Sort(keys)
		return keys[:min(3, len(keys))]
	}
	return fmt.Sprintf("%s: %d source rows; %d missing from the store %v, %d extra %v, %d different %v%s",
		d.table, d.rows, len(d.missing), head(d.missing), len(d.extra), head(d.extra), len(d.changed), head(d.changed), d.first)
}

func diffRows(tb *schemas.Table, src, store rowSet) tableDiff {
	d := tableDiff{table: tb.QualifiedName(), rows: len(src)}
	for k, v := range src {
		switch sv, ok := store[k]; {
		case !ok:
			d.missing = append(d.missing, k)
		case sv != v:
			d.changed = append(d.changed, k)
			if d.first == "" || k < d.firstKey {
				d.firstKey = k
				d.first = "; first different row " + k + ":"
				a, b := strings.Split(v, " | "), strings.Split(sv, " | ")
				for i, c := range tb.Columns {
					if a[i] != b[i] {
						d.first += fmt.Sprintf(" %s source %s store %s;", c.Name, a[i], b[i])
					}
				}
			}
		}
	}
	for k := range store {
		if _, ok := src[k]; !ok {
			d.extra = append(d.extra, k)
		}
	}
	return d
}

// requireEqual compares every row of every table between the model and
// the store, and returns the source rows compared, by table.
func (e *tdsEnv) requireEqual(t *testing.T) map[string]rowSet {
	t.Helper()
	compared := map[string]rowSet{}
	for _, tb := range e.tables {
		src := e.sourceRows(t, tb)
		d := diffRows(tb, src, e.storeRows(t, e.store, tb))
		require.True(t, d.equal(), "%s", d)
		compared[tb.QualifiedName()] = src
	}
	return compared
}

// changed counts the rows inserted, updated and deleted between two reads
// of a table.
func changed(before, after rowSet) (inserted, updated, deleted int) {
	for k, v := range after {
		switch old, ok := before[k]; {
		case !ok:
			inserted++
		case old != v:
			updated++
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			deleted++
		}
	}
	return inserted, updated, deleted
}

func TestTDSSyncEveryStrategy(t *testing.T) {
	ctx := context.Background()
	e := newTDSEnv(t, 200)
	// Preset small, at 40 encounters a day over two practices (the model
	// evaluates joins pair by pair, so Change Tracking reads cost changes
	// times rows); seed 41 deletes ERA batches of the organization's
	// practice on days 16, 17 and 20.
	opts := synth.Options{Preset: synth.Small, Seed: 41, Practices: []string{tdsOrgPractice, "0002"}, EncountersPerDay: 40, Catalog: schemas.NextGen()}
	const days, more = 16, 5
	_, err := synth.Populate(ctx, e.writer, opts, days)
	require.NoError(t, err)

	r1 := e.sync(t)
	e.requireStrategies(t, r1)
	require.Greater(t, r1["dbo.charges"].Chunks, 1, "batch_rows 200 did not chunk the initial snapshot")
	first := e.requireEqual(t)
	for table, rows := range first {
		require.NotEmpty(t, rows, "%s: no rows of practice %s to compare", table, tdsOrgPractice)
	}
	// The other practice's rows exist at the source and stayed there.
	all, err := e.model.Rows("dbo.claims")
	require.NoError(t, err)
	require.Greater(t, len(all), len(first["dbo.claims"]), "the source holds no claims of another practice")

	e.requireDetectsCorruption(t)

	// More days: inserts, updates and the ERA batches synth deletes. Synth
	// deletes an ERA batch the day it imported it, so a sync runs between
	// the two (the simulation paused before the first delete of the
	// organization's practice): the store holds rows the delete removes.
	pause := &pauseWriter{Writer: e.writer, kind: "delete", practice: tdsOrgPractice}
	_, st, err := synth.Simulate(ctx, pause, synth.Options{Catalog: opts.Catalog}, more)
	require.ErrorIs(t, err, errPaused, "the simulated days delete no ERA batch of practice %s", tdsOrgPractice)
	e.syncIncremental(t)
	mid := e.requireEqual(t)
	_, end, err := synth.Simulate(ctx, e.writer, synth.Options{Catalog: opts.Catalog}, days+more-st.Day)
	require.NoError(t, err)
	require.Equal(t, days+more, end.Day)
	e.syncIncremental(t)
	last := e.requireEqual(t)
	var summary []string
	for _, tb := range e.tables {
		name := tb.QualifiedName()
		ins, upd, _ := changed(first[name], last[name])
		_, _, del := changed(mid[name], last[name])
		summary = append(summary, fmt.Sprintf("%s: %d rows, %d inserted and %d updated since the first sync, %d deleted since the second",
			name, len(last[name]), ins, upd, del))
		switch tb.Name {
		case "trans_detail", "trans_detail_ts", "transactions", "reason_code_links", "reason_code_links_snap":
			require.Positive(t, del, "%s: none of the organization's rows was deleted after the second sync", name)
		}
		switch tb.Name {
		case "claims", "charges", "patient_encounter", "trans_detail", "trans_detail_ts", "transactions":
			require.Positive(t, upd, "%s: none of the organization's rows was updated", name)
		}
	}

	// The claims change log (CDC) holds each row version once.
	var n, distinct int
	require.NoError(t, e.store.QueryRow(ctx, fmt.Sprintf("SELECT count(*), count(DISTINCT (claim_id, row_timestamp)) FROM %s",
		pgx.Identifier{sink.SchemaFor(org), "claims__changes"}.Sanitize())).Scan(&n, &distinct))
	require.Greater(t, n, len(last["dbo.claims"]), "the change log holds no updates")
	require.Equal(t, distinct, n, "the change log holds duplicated changes")

	require.Empty(t, e.tds.Errors(), "statements the model could not answer")
	t.Logf("%d days, synced; %d more, synced once mid-day; every row compared after each of the three syncs:\n%s",
		days, more, strings.Join(summary, "\n"))
}

// errPaused stops a simulation.
var errPaused = errors.New("simulation paused")

// pauseWriter fails the first batch of kind in practice, unapplied, so that
// the simulation stops just before it; Simulate continues from there.
type pauseWriter struct {
	synth.Writer
	kind, practice string
	paused         bool
}

func (w *pauseWriter) Apply(ctx context.Context, b *synth.Batch) error {
	if !w.paused && b.Kind == w.kind && b.Practice == w.practice {
		w.paused = true
		return errPaused
	}
	return w.Writer.Apply(ctx, b)
}

// syncIncremental runs a sync after the first and checks that every table
// synced by its path, incrementally: no table fell back to a snapshot
// (which would bring the same rows by another path) but the snapshot one.
// Key reconciliations that deleted rows are in the history too, but move
// no position: they are left out.
func (e *tdsEnv) syncIncremental(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	var after int64
	require.NoError(t, e.store.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM ehrsync.position_history").Scan(&after))
	e.requireStrategies(t, e.sync(t))
	rows, err := e.store.Query(context.Background(), `SELECT table_name, string_agg(DISTINCT reason, ',')
		FROM ehrsync.position_history WHERE org = $1 AND id > $2 AND reason <> 'reconcile' GROUP BY table_name`, org, after)
	require.NoError(t, err)
	reasons := map[string]string{}
	for rows.Next() {
		var table, r string
		require.NoError(t, rows.Scan(&table, &r))
		reasons[table] = r
	}
	require.NoError(t, rows.Err())
	want := map[string]string{}
	for _, tb := range e.tables {
		want[tb.QualifiedName()] = "sync"
	}
	want["dbo.reason_code_links_snap"] = "snapshot"
	require.Equal(t, want, reasons, "the second run's position moves by table")
}

// requireDetectsCorruption checks that the comparison fails when one store
// row differs from its source row, and when one is missing: inside a
// transaction that is rolled back.
func (e *tdsEnv) requireDetectsCorruption(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	for _, c := range []struct {
		table, sql string
		what       func(tableDiff) int
	}{
		// A datetime one millisecond off its tick.
		{"dbo.trans_detail", "UPDATE %s SET create_timestamp = create_timestamp + interval '1 millisecond' WHERE trans_detail_id = (SELECT trans_detail_id FROM %[1]s ORDER BY 1 LIMIT 1)",
			func(d tableDiff) int { return len(d.changed) }},
		// A decimal one cent off.
		{"dbo.charges", "UPDATE %s SET amt = amt + 0.01 WHERE charge_id = (SELECT charge_id FROM %[1]s ORDER BY 1 LIMIT 1)",
			func(d tableDiff) int { return len(d.changed) }},
		// A row gone.
		{"dbo.claims", "DELETE FROM %s WHERE claim_id = (SELECT claim_id FROM %[1]s ORDER BY 1 LIMIT 1)",
			func(d tableDiff) int { return len(d.missing) }},
	} {
		idx := slices.IndexFunc(e.tables, func(tb *schemas.Table) bool { return tb.QualifiedName() == c.table })
		require.GreaterOrEqual(t, idx, 0)
		tb := e.tables[idx]
		tx, err := e.store.Begin(ctx)
		require.NoError(t, err)
		d := func() tableDiff {
			defer tx.Rollback(ctx) //nolint:errcheck // nothing to keep
			tag, err := tx.Exec(ctx, fmt.Sprintf(c.sql, pgx.Identifier{sink.SchemaFor(org), sink.TableName(tb)}.Sanitize()))
			require.NoError(t, err)
			require.EqualValues(t, 1, tag.RowsAffected())
			return diffRows(tb, e.sourceRows(t, tb), e.storeRows(t, tx, tb))
		}()
		require.False(t, d.equal(), "%s: a corrupted store row went unnoticed", c.table)
		require.Equal(t, 1, c.what(d), "%s", d)
	}
}
