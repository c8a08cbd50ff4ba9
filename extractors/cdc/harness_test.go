package cdc_test

import (
	"database/sql"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The harness of the pitfall tests: SQL Server's CDC held in a model
// (package mssqlmodel) and served over TDS, read through go-mssqldb by the
// real extractor; the engine's loop (a new extractor per run, the position
// round-tripped through the watermarks codec after every chunk), an
// in-memory store applying batches by key, and the comparison of that
// store with the model's committed rows.

// row is a row as the model takes it: decimals as text, GUIDs in wire
// order.
type row = map[string]any

const (
	practice      = "0001"
	otherPractice = "0002"
)

type harness struct {
	t     *testing.T
	m     *mssqlmodel.Model
	db    *sql.DB
	table *schemas.Table
	mem   *memory.CheckedAllocator
	rows  int
	bytes int // chunk bytes; 0: the default
	pos   watermarks.Position
	store map[string]map[string]string
	// emitted counts change rows (not snapshot rows) by source position.
	emitted map[string]int
	seqNext int
}

type colSpec struct{ name, typ string }

func mustTable(t *testing.T, name string, key []string, cols []colSpec) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: "dbo", Name: name, Dialect: schemas.SQLServer, Key: key, Practice: "practice_id"}
	for _, c := range cols {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: c.name, Type: typ, Nullable: !slicesContains(key, c.name)})
	}
	require.NoError(t, tb.Validate())
	return tb
}

func slicesContains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func linesTable(t *testing.T) *schemas.Table {
	return mustTable(t, "claim_lines", []string{"id", "line"}, []colSpec{
		{"id", "uniqueidentifier"}, {"line", "int"}, {"practice_id", "char(4)"},
		{"amount", "numeric(19,2)"}, {"note", "varchar(40)"}, {"modify_timestamp", "datetime"},
	})
}

// newHarness serves a fresh model whose capture agent harvests every
// commit, creates table in it (computed columns as given) with one
// capture instance (named instance, not <schema>_<table>), and starts an
// empty store.
func newHarness(t *testing.T, table *schemas.Table, instance string, computed ...mssqlmodel.Computed) *harness {
	t.Helper()
	m := mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true})
	srv := mssqltest.Serve(t, m)
	require.NoError(t, m.CreateTable(table, computed...))
	m.EnableCDCDatabase()
	_, err := m.EnableCDC(mssqlmodel.CaptureInstance{Table: table.QualifiedName(), Name: instance})
	require.NoError(t, err)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return &harness{t: t, m: m, db: srv.Open(t), table: table, mem: mem, rows: 10,
		store: map[string]map[string]string{}, emitted: map[string]int{}}
}

// on returns a harness of another table of h's database, with its own
// store.
func (h *harness) on(table *schemas.Table) *harness {
	return &harness{t: h.t, m: h.m, db: h.db, table: table, mem: h.mem, rows: 10,
		store: map[string]map[string]string{}, emitted: map[string]int{}}
}

func (h *harness) extractor() *cdc.Extractor {
	h.t.Helper()
	e, err := cdc.New(h.db, h.table, cdc.Options{Bounds: extractors.Bounds{
		Practices: []string{practice}, ChunkRows: h.rows, ChunkBytes: h.bytes, Allocator: h.mem}})
	require.NoError(h.t, err)
	return e
}

// enableCDC creates another capture instance of h's table and returns its
// start LSN.
func (h *harness) enableCDC(instance string) watermarks.LSN {
	h.t.Helper()
	start, err := h.m.EnableCDC(mssqlmodel.CaptureInstance{Table: h.table.QualifiedName(), Name: instance})
	require.NoError(h.t, err)
	return watermarks.LSN(start)
}

// maxLSN is the highest harvested LSN, sys.fn_cdc_get_max_lsn().
func (h *harness) maxLSN() watermarks.LSN {
	h.t.Helper()
	b := h.m.MaxLSN()
	require.Len(h.t, b, 10)
	return watermarks.LSN(b)
}

type runResult struct {
	chunks, rows, heartbeats int
}

// sync runs one run from the saved position, at most maxChunks chunks (0:
// to the end).
func (h *harness) sync(maxChunks int) runResult {
	t := h.t
	t.Helper()
	res, err := h.trySync(maxChunks)
	require.NoError(t, err)
	return res
}

func (h *harness) trySync(maxChunks int) (runResult, error) {
	t := h.t
	t.Helper()
	var res runResult
	n, err := extractortest.SyncRun(t, h.extractor(), h.table, &h.pos, maxChunks, "empty batch: send a nil Batch instead",
		func(batch arrow.RecordBatch, reason watermarks.Reason) error {
			if batch == nil {
				res.heartbeats++
				return nil
			}
			h.apply(batch, reason == watermarks.ReasonSync)
			res.rows += int(batch.NumRows())
			return nil
		})
	res.chunks = n
	return res, err
}

func (h *harness) syncAll() {
	h.t.Helper()
	h.sync(0)
	if _, ok := h.pos.(watermarks.Snapshot); ok || h.pos == nil {
		h.sync(0)
	}
}

func canonRow(rec arrow.RecordBatch, table *schemas.Table, i int) (string, map[string]string) {
	r := map[string]string{}
	for j, c := range table.Columns {
		col := rec.Column(j)
		if col.IsNull(i) {
			r[c.Name] = "NULL"
		} else {
			r[c.Name] = col.ValueStr(i)
		}
	}
	keys := make([]string, len(table.Key))
	for i, k := range table.Key {
		keys[i] = r[k]
	}
	return strings.Join(keys, "|"), r
}

// apply applies a change batch to the store; change rows are counted by
// source position.
func (h *harness) apply(rec arrow.RecordBatch, changes bool) {
	ops := rec.Column(rec.Schema().FieldIndices(schemas.OpColumn)[0]).(*array.Int8)
	pos := rec.Column(rec.Schema().FieldIndices(schemas.SourcePosColumn)[0]).(*array.Binary)
	for i := range int(rec.NumRows()) {
		k, r := canonRow(rec, h.table, i)
		if changes {
			require.False(h.t, pos.IsNull(i), "a CDC row carries its source position")
			require.Len(h.t, pos.Value(i), cdc.SourcePosLen)
			h.emitted[string(pos.Value(i))]++
		}
		switch schemas.Op(ops.Value(i)) {
		case schemas.OpInsert, schemas.OpUpdate:
			h.store[k] = r
		case schemas.OpDelete:
			delete(h.store, k)
		}
	}
}

// sourceRows renders the model's committed rows of the practice as the
// store holds them.
func (h *harness) sourceRows() map[string]map[string]string {
	h.t.Helper()
	sc, err := arrowscan.New(schemas.SQLServer, h.table)
	require.NoError(h.t, err)
	b := sc.NewBatch(memory.NewGoAllocator())
	defer b.Release()
	rows, err := h.m.Rows(h.table.QualifiedName())
	require.NoError(h.t, err)
	for _, r := range rows {
		if r["practice_id"] != practice {
			continue
		}
		r = mssqlmodel.DriverRow(h.table, r)
		raw := make([]any, len(h.table.Columns))
		for i, c := range h.table.Columns {
			raw[i] = r[c.Name]
		}
		require.NoError(h.t, b.Append(raw, schemas.OpInsert, 1))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	out := map[string]map[string]string{}
	for i := range int(rec.NumRows()) {
		k, r := canonRow(rec, h.table, i)
		out[k] = r
	}
	return out
}

func (h *harness) requireConverged() {
	h.t.Helper()
	require.Equal(h.t, h.sourceRows(), h.store, "store and source differ")
}

// requireExactlyOnce checks that no change row was emitted twice.
func (h *harness) requireExactlyOnce() {
	h.t.Helper()
	for p, n := range h.emitted {
		require.Equal(h.t, 1, n, "change row %X emitted %d times", p, n)
	}
}

// line returns a claim line of the practice.
func (h *harness) line(i int, prac string) row {
	h.seqNext++
	return row{
		"id": mssqlmodel.GUIDWire(uuid.New()), "line": int64(i % 3), "practice_id": prac,
		"amount": fmt.Sprintf("%d.%02d", 100+i, i%100), "note": fmt.Sprintf("note %d", i),
		"modify_timestamp": time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(h.seqNext) * time.Second),
	}
}

// commit runs do in one transaction and returns its commit LSN (the
// agent harvests every commit).
func (h *harness) commit(do func(tx *mssqlmodel.Tx)) watermarks.LSN {
	h.t.Helper()
	tx := h.m.Begin()
	do(tx)
	require.NoError(h.t, tx.Commit())
	return h.maxLSN()
}

func (h *harness) insert(rows ...row) watermarks.LSN {
	h.t.Helper()
	return h.commit(func(tx *mssqlmodel.Tx) {
		for _, r := range rows {
			require.NoError(h.t, tx.Insert(h.table.QualifiedName(), r))
		}
	})
}

func (h *harness) update(r row, col string, v any) row {
	h.t.Helper()
	u := maps.Clone(r)
	u[col] = v
	h.commit(func(tx *mssqlmodel.Tx) { require.NoError(h.t, tx.Update(h.table.QualifiedName(), u)) })
	return u
}

func (h *harness) delete(r row) {
	h.t.Helper()
	h.commit(func(tx *mssqlmodel.Tx) { require.NoError(h.t, tx.Delete(h.table.QualifiedName(), r)) })
}

// seeded inserts 25 lines of the practice and 5 of another in one
// transaction each, and syncs them.
func (h *harness) seeded() []row {
	h.t.Helper()
	var rows []row
	for i := range 25 {
		rows = append(rows, h.line(i, practice))
	}
	h.insert(rows...)
	var other []row
	for i := range 5 {
		other = append(other, h.line(i, otherPractice))
	}
	h.insert(other...)
	h.syncAll()
	h.requireConverged()
	return rows
}
