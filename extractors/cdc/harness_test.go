package cdc_test

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/ehrsync/ehrsync/extractors"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/cdc/cdcmodel"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The model-backed harness: the engine's loop (a new extractor per run,
// the position round-tripped through the watermarks codec after every
// chunk), an in-memory store applying batches by key, and the comparison
// of that store with the model's committed rows. It mirrors
// extractortest's harness, which needs a *sql.DB and so runs only live.

const (
	practice      = "0001"
	otherPractice = "0002"
)

type harness struct {
	t     *testing.T
	m     *cdcmodel.Model
	def   cdcmodel.TableDef
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

// newHarness creates table in a fresh model with one capture instance
// (named instance, not <schema>_<table>) and an empty store.
func newHarness(t *testing.T, table *schemas.Table, instance string) *harness {
	t.Helper()
	m := cdcmodel.New()
	def := cdcmodel.TableDef{Schema: table.Schema, Name: table.Name, Key: table.Key}
	for _, c := range table.Columns {
		def.Columns = append(def.Columns, c.Name)
	}
	m.CreateTable(def)
	m.EnableCDC(table.Schema, table.Name, instance)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return &harness{t: t, m: m, def: def, table: table, mem: mem, rows: 10,
		store: map[string]map[string]string{}, emitted: map[string]int{}}
}

func (h *harness) extractor() *cdc.Extractor {
	h.t.Helper()
	opts := cdc.Options{Bounds: extractors.Bounds{Practices: []string{practice}, ChunkRows: h.rows, ChunkBytes: h.bytes, Allocator: h.mem}}
	snap, err := h.m.Snapshotter(h.table, opts.Practices, opts.ChunkRows, h.mem)
	require.NoError(h.t, err)
	e, err := cdc.NewFrom(h.m, snap, h.table, opts)
	require.NoError(h.t, err)
	return e
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
	for _, r := range h.m.Rows(h.table.Schema, h.table.Name) {
		if r["practice_id"] != practice {
			continue
		}
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
func (h *harness) line(i int, prac string) cdcmodel.Row {
	h.seqNext++
	return cdcmodel.Row{
		"id": guidWire(uuid.New()), "line": int64(i % 3), "practice_id": prac,
		"amount": []byte(fmt.Sprintf("%d.%02d", 100+i, i%100)), "note": fmt.Sprintf("note %d", i),
		"modify_timestamp": time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(h.seqNext) * time.Second),
	}
}

func (h *harness) insert(rows ...cdcmodel.Row) watermarks.LSN {
	tx := h.m.Begin()
	for _, r := range rows {
		tx.Insert(h.table.Schema, h.table.Name, r)
	}
	return tx.Commit()
}

func (h *harness) update(r cdcmodel.Row, col string, v any) cdcmodel.Row {
	u := maps.Clone(r)
	u[col] = v
	tx := h.m.Begin()
	tx.Update(h.table.Schema, h.table.Name, u)
	tx.Commit()
	return u
}

func (h *harness) delete(r cdcmodel.Row) {
	tx := h.m.Begin()
	tx.Delete(h.table.Schema, h.table.Name, r)
	tx.Commit()
}

// seeded inserts 25 lines of the practice and 5 of another in one
// transaction each, and syncs them.
func (h *harness) seeded() []cdcmodel.Row {
	h.t.Helper()
	var rows []cdcmodel.Row
	for i := range 25 {
		rows = append(rows, h.line(i, practice))
	}
	h.insert(rows...)
	var other []cdcmodel.Row
	for i := range 5 {
		other = append(other, h.line(i, otherPractice))
	}
	h.insert(other...)
	h.syncAll()
	h.requireConverged()
	return rows
}

// guidWire is u in SQL Server's mixed-endian wire order, as go-mssqldb
// returns uniqueidentifier.
func guidWire(u uuid.UUID) []byte {
	b := u
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	return b[:]
}
