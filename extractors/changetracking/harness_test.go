package changetracking_test

import (
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/changetracking/internal/ctrows"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

var _ extractors.Extractor = (*changetracking.Extractor)(nil)

// The harness of the pitfall tests: SQL Server's Change Tracking held in a
// model (package mssqlmodel) and served over TDS (ctDB), the real
// extractor run as the engine runs it (a new extractor per run, the
// position round-tripped through the watermarks codec after every chunk),
// every chunk applied to an in-memory store and checked against the
// change-batch contract and a checked allocator.

const (
	practice      = "0001"
	otherPractice = "0002"
)

var tableSeq atomic.Int64

type colSpec struct {
	name, typ string
	nullable  bool
}

func mustTable(t *testing.T, name string, key []string, cols []colSpec) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: "dbo", Name: fmt.Sprintf("%s_%d", name, tableSeq.Add(1)),
		Dialect: schemas.SQLServer, Key: key, ModifiedAt: "modify_timestamp", Practice: "practice_id"}
	for _, c := range cols {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: c.name, Type: typ, Nullable: c.nullable})
	}
	require.NoError(t, tb.Validate())
	return tb
}

// linesTable: a composite (GUID, int) key, a NOT NULL practice and stamp.
func linesTable(t *testing.T) *schemas.Table {
	return mustTable(t, "lines", []string{"id", "line"}, []colSpec{
		{"id", "uniqueidentifier", false},
		{"line", "int", false},
		{"practice_id", "char(4)", false},
		{"amount", "numeric(19,2)", true},
		{"note", "varchar(40)", true},
		{"modify_timestamp", "datetime", false},
	})
}

// line is a lines row in the shape go-mssqldb returns it.
type line struct {
	id       uuid.UUID
	line     int64
	practice string
	amount   string // "" for NULL
	note     string // "" for NULL
	stamp    time.Time
}

func (l line) raw() []any {
	r := []any{mssqlmodel.GUIDWire(l.id), l.line, l.practice, nil, nil, l.stamp}
	if l.amount != "" {
		r[3] = []byte(l.amount)
	}
	if l.note != "" {
		r[4] = l.note
	}
	return r
}

func (l line) key() string { return l.id.String() + "|" + fmt.Sprint(l.line) }

func raws(ls []line) [][]any {
	out := make([][]any, len(ls))
	for i, l := range ls {
		out[i] = l.raw()
	}
	return out
}

// ctDB is a served model with Change Tracking on for the database, in
// the terms of the tests: rows as go-mssqldb returns them.
type ctDB struct {
	t   *testing.T
	m   *mssqlmodel.Model
	db  *sql.DB
	rec *mssqltest.Recorder
}

func newCTDB(t *testing.T) *ctDB {
	t.Helper()
	m := mssqlmodel.New(mssqlmodel.Options{SnapshotIsolation: true})
	srv, rec := mssqltest.ServeRecorded(t, m)
	m.EnableCTDatabase()
	return &ctDB{t: t, m: m, db: srv.Open(t), rec: rec}
}

// Create creates t with Change Tracking on.
func (d *ctDB) Create(t *schemas.Table) error {
	if err := d.m.CreateTable(t); err != nil {
		return err
	}
	return d.m.EnableCT(t.QualifiedName())
}

// values turns raw (t's columns in order, as go-mssqldb returns them) into
// the model's values: decimals as text.
func values(t *schemas.Table, raw []any) map[string]any {
	out := make(map[string]any, len(raw))
	for i, c := range t.Columns {
		v := raw[i]
		if b, ok := v.([]byte); ok && (c.Type.Name == "decimal" || c.Type.Name == "numeric") {
			v = string(b)
		}
		out[c.Name] = v
	}
	return out
}

// write commits one transaction applying op to each of rows.
func (d *ctDB) write(t *schemas.Table, op func(*mssqlmodel.Tx, string, map[string]any) error, rows ...[]any) error {
	tx := d.m.Begin()
	for _, r := range rows {
		if err := op(tx, t.QualifiedName(), values(t, r)); err != nil {
			tx.Rollback()
			return err
		}
	}
	return tx.Commit()
}

func (d *ctDB) Insert(t *schemas.Table, rows ...[]any) error {
	return d.write(t, (*mssqlmodel.Tx).Insert, rows...)
}
func (d *ctDB) Update(t *schemas.Table, rows ...[]any) error {
	return d.write(t, (*mssqlmodel.Tx).Update, rows...)
}
func (d *ctDB) Delete(t *schemas.Table, rows ...[]any) error {
	return d.write(t, (*mssqlmodel.Tx).Delete, rows...)
}

// Version is CHANGE_TRACKING_CURRENT_VERSION().
func (d *ctDB) Version() int64 {
	v, ok := d.m.CTVersion()
	require.True(d.t, ok, "change tracking is on")
	return v
}

// Cleanup raises t's minimum valid version to v, as the cleanup job does.
func (d *ctDB) Cleanup(t *schemas.Table, v int64) {
	require.NoError(d.t, d.m.CleanupCT(t.QualifiedName(), v))
}

// Rows returns t's rows, its columns in order as go-mssqldb returns them.
func (d *ctDB) Rows(t *schemas.Table) [][]any {
	rows, err := d.m.Rows(t.QualifiedName())
	require.NoError(d.t, err)
	out := make([][]any, len(rows))
	for i, r := range rows {
		r = mssqlmodel.DriverRow(t, r)
		for _, c := range t.Columns {
			out[i] = append(out[i], r[c.Name])
		}
	}
	return out
}

// BeforeChanges runs f before each CHANGETABLE query is answered (nil:
// none), as another session acting at that moment.
func (d *ctDB) BeforeChanges(f func()) {
	if f == nil {
		d.rec.Before(nil)
		return
	}
	d.rec.Before(func(ev mssqltest.Event) {
		if strings.Contains(ev.SQL, "CHANGETABLE(CHANGES") {
			f()
		}
	})
}

// Calls names the statements the server received, in order:
// CurrentVersion, MinValidVersion, Changes, SnapshotIsolation (whether the
// database allows SNAPSHOT transactions), Snapshot (a keyset snapshot read)
// or Other.
func (d *ctDB) Calls() []string {
	var out []string
	for _, ev := range d.rec.Statements() {
		switch {
		case strings.Contains(ev.SQL, "CHANGETABLE(CHANGES"):
			out = append(out, "Changes")
		case strings.HasPrefix(ev.SQL, "SELECT CHANGE_TRACKING_CURRENT_VERSION()"):
			out = append(out, "CurrentVersion")
		case strings.HasPrefix(ev.SQL, "SELECT CHANGE_TRACKING_MIN_VALID_VERSION("):
			out = append(out, "MinValidVersion")
		case strings.Contains(ev.SQL, "snapshot_isolation_state"):
			out = append(out, "SnapshotIsolation")
		case strings.Contains(ev.SQL, "ORDER BY"):
			out = append(out, "Snapshot")
		default:
			out = append(out, "Other")
		}
	}
	return out
}

type harness struct {
	t     *testing.T
	db    *ctDB
	table *schemas.Table // as the batches carry it
	full  *schemas.Table // as created at the source
	mem   *memory.CheckedAllocator
	rows  int
	pos   watermarks.Position
	store map[string]map[string]string
	n     int
	clock time.Time
}

func newHarness(t *testing.T, table *schemas.Table) *harness {
	t.Helper()
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	db := newCTDB(t)
	require.NoError(t, db.Create(table))
	return &harness{t: t, db: db, table: table, full: table, mem: mem, rows: 10,
		store: map[string]map[string]string{}, clock: time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
}

func (h *harness) newLines(n int, pr string) []line {
	out := make([]line, n)
	for i := range out {
		h.n++
		h.clock = h.clock.Add(time.Second)
		out[i] = line{id: uuid.New(), line: int64(i % 3), practice: pr,
			amount: fmt.Sprintf("%d.%02d", 100+h.n, h.n%100), note: fmt.Sprintf("note %d", h.n), stamp: h.clock}
	}
	return out
}

func (h *harness) extractor() *changetracking.Extractor {
	h.t.Helper()
	return h.extractorWith(extractors.Bounds{Practices: []string{practice}, ChunkRows: h.rows, Allocator: h.mem})
}

func (h *harness) extractorWith(b extractors.Bounds) *changetracking.Extractor {
	h.t.Helper()
	ext, err := changetracking.NewSQLServer(h.db.db, h.table, changetracking.Options{Bounds: b})
	require.NoError(h.t, err)
	return ext
}

type result struct {
	chunks, rows, heartbeats int
	batches                  []map[string][]string // per chunk: op → keys
}

// sync runs one run from the saved position, at most maxChunks chunks (0:
// to the end).
func (h *harness) sync(maxChunks int) result {
	h.t.Helper()
	res, err := h.try(maxChunks)
	require.NoError(h.t, err)
	return res
}

func (h *harness) try(maxChunks int) (result, error) {
	t := h.t
	t.Helper()
	var res result
	n, err := extractortest.SyncRun(t, h.extractor(), h.table, &h.pos, maxChunks, "empty batch",
		func(batch arrow.RecordBatch, _ watermarks.Reason) error {
			if batch == nil {
				res.heartbeats++
				res.batches = append(res.batches, nil)
				return nil
			}
			res.batches = append(res.batches, h.apply(batch))
			res.rows += int(batch.NumRows())
			return nil
		})
	res.chunks = n
	return res, err
}

// syncAll runs until a run ends by itself (a first run only snapshots).
func (h *harness) syncAll() {
	h.t.Helper()
	h.sync(0)
	if _, ok := h.pos.(watermarks.Snapshot); ok {
		h.sync(0)
	}
	if _, ok := h.pos.(watermarks.CT); !ok {
		h.t.Fatalf("position after a sync is %v", h.pos)
	}
	if h.pos.(watermarks.CT).InWindow() {
		h.sync(0)
	}
}

// apply applies a change batch to the store; it returns the keys by op.
func (h *harness) apply(rec arrow.RecordBatch) map[string][]string {
	ops := rec.Column(rec.Schema().FieldIndices(schemas.OpColumn)[0]).(*array.Int8)
	out := map[string][]string{}
	for i := 0; i < int(rec.NumRows()); i++ {
		r := map[string]string{}
		for j, c := range h.table.Columns {
			r[c.Name] = canon(rec.Column(j), i)
		}
		k := h.keyOf(r)
		op := schemas.Op(ops.Value(i))
		out[op.String()] = append(out[op.String()], k)
		switch op {
		case schemas.OpInsert, schemas.OpUpdate:
			h.store[k] = r
		case schemas.OpDelete:
			delete(h.store, k)
		}
	}
	return out
}

func (h *harness) keyOf(r map[string]string) string {
	parts := make([]string, len(h.table.Key))
	for i, k := range h.table.Key {
		parts[i] = r[k]
	}
	return strings.Join(parts, "|")
}

func canon(col arrow.Array, i int) string {
	if col.IsNull(i) {
		return "NULL"
	}
	if b, ok := col.(*array.Binary); ok {
		return "0x" + hex.EncodeToString(b.Value(i))
	}
	return col.ValueStr(i)
}

// want returns the source's current rows of the practice, converted as
// the store holds them.
func (h *harness) want() map[string]map[string]string {
	t := h.t
	t.Helper()
	conv, err := ctrows.New(h.table)
	require.NoError(t, err)
	idx := make([]int, len(h.table.Columns))
	for i, c := range h.table.Columns {
		for j, fc := range h.full.Columns {
			if fc.Name == c.Name {
				idx[i] = j
			}
		}
	}
	pr := -1
	for j, fc := range h.full.Columns {
		if fc.Name == h.full.Practice {
			pr = j
		}
	}
	b := conv.NewBatch(memory.NewGoAllocator())
	defer b.Release()
	seq := int64(0)
	for _, full := range h.db.Rows(h.full) {
		if pr >= 0 && full[pr] != practice {
			continue
		}
		r := make([]any, len(idx))
		for i, j := range idx {
			r[i] = full[j]
		}
		seq++
		require.NoError(t, b.Append(r, schemas.OpInsert, seq))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	saved := h.store
	h.store = map[string]map[string]string{}
	h.apply(rec)
	out := h.store
	h.store = saved
	return out
}

func (h *harness) requireConverged() {
	h.t.Helper()
	require.Equal(h.t, h.want(), h.store, "store and source differ")
}

// seeded inserts 25 lines of the practice and 5 of another, and syncs.
func (h *harness) seeded() []line {
	h.t.Helper()
	rows := h.newLines(25, practice)
	require.NoError(h.t, h.db.Insert(h.full, raws(rows)...))
	require.NoError(h.t, h.db.Insert(h.full, raws(h.newLines(5, otherPractice))...))
	h.syncAll()
	h.requireConverged()
	require.Len(h.t, h.store, 25)
	return rows
}
