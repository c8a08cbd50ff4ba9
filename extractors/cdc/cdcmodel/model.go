// Package cdcmodel is a test double: an in-process model of a SQL Server
// database's Change Data Capture data, implementing cdc.Source, for the
// tests of package cdc where no SQL Server runs (DESIGN.md §5). It is not a
// database and not for production.
//
// What it models:
//
//   - Tables with keys and current rows, changed by transactions (Begin,
//     Tx.Insert/Update/Delete, Tx.Commit). Every statement takes the next
//     command id of its transaction (1, 2, ...) as its __$command_id, the
//     order of the operations within the transaction, and the next LSN as
//     its __$seqval; the commit takes the next LSN as the transaction's
//     __$start_lsn, shared by all its rows. Tx.ReverseSeqvals makes the
//     seqval order contradict the command order, as SQL Server's may (KB
//     3030352). A transaction is invisible (in the table and in the change
//     tables) until it commits.
//   - Capture instances (EnableCDC), each with its start LSN and the columns
//     the table had when it was enabled; a column added later (AddColumn)
//     is captured only by a second instance (PITFALLS.md P7). Updates log a
//     before-image (operation 3) and an after-image (4) with one command id
//     and one seqval; Changes leaves the before-images out, as the real
//     query does, and returns rows in (__$start_lsn, __$command_id,
//     __$seqval, __$operation) order, as the real query's ORDER BY.
//   - The capture agent: a commit is harvested (visible in the change
//     tables, and the highest harvested LSN, MaxLSN, moves) only while the
//     agent runs. StopAgent stops harvesting while transactions keep
//     committing; StartAgent harvests everything committed (P6). Commit on
//     an untracked table (Touch) moves the LSN as other database activity
//     does.
//   - Cleanup, which raises an instance's start (minimum) LSN and deletes
//     its rows below it (P1).
//   - Change-row quirks (P16): computed columns are NULL in change rows,
//     and columns named in TableDef.NullOnDelete are NULL in delete images.
//
// Values are driver values shaped as go-mssqldb returns them (GUIDs as 16
// wire-order bytes, decimals as text bytes, time.Time, int64, string...).
// The model is safe for concurrent use.
package cdcmodel

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Row is one row: driver values by column name (nil or absent: NULL).
type Row map[string]any

// TableDef declares a table.
type TableDef struct {
	Schema, Name string
	Columns      []string
	Key          []string
	// Computed columns are NULL in change rows (P16).
	Computed []string
	// NullOnDelete columns are NULL in delete images (P16: text, image,
	// even bit NOT NULL columns may be).
	NullOnDelete []string
}

type table struct {
	def  TableDef
	rows map[string]Row // by key string
}

type logRow struct {
	lsn, seqval uint64
	cmd         int32
	op          int8
	row         Row
}

// compareRows is the change order: (__$start_lsn, __$command_id,
// __$seqval, __$operation), the real query's ORDER BY.
func compareRows(a, b logRow) int {
	return cmp.Or(cmp.Compare(a.lsn, b.lsn), cmp.Compare(a.cmd, b.cmd),
		cmp.Compare(a.seqval, b.seqval), cmp.Compare(a.op, b.op))
}

type instance struct {
	name  string
	table *table
	start uint64 // start (minimum) LSN; cleanup raises it
	cols  []string
	log   []logRow // in compareRows order
}

// Model is the in-process CDC source. The zero Model is not usable: call
// New.
type Model struct {
	mu        sync.Mutex
	lsn       uint64 // the last LSN assigned
	committed uint64 // the last commit LSN
	harvested uint64 // the highest harvested LSN
	stopped   bool
	pending   []pendingTx // committed, not harvested
	tables    map[string]*table
	instances []*instance
	queries   int
}

type pendingTx struct {
	lsn uint64
	ops []op
}

var _ cdc.Source = (*Model)(nil)
var _ cdc.AgentProber = (*Model)(nil)

// New returns an empty model whose capture agent runs. LSNs start at 100.
func New() *Model {
	return &Model{lsn: 99, tables: map[string]*table{}}
}

// LSN returns the model's LSN number n as a watermarks.LSN (big-endian in
// the last 8 bytes).
func LSN(n uint64) watermarks.LSN {
	var l watermarks.LSN
	binary.BigEndian.PutUint64(l[2:], n)
	return l
}

func num(l watermarks.LSN) uint64 { return binary.BigEndian.Uint64(l[2:]) }

func qualified(schema, name string) string { return strings.ToLower(schema + "." + name) }

// CreateTable adds a table.
func (m *Model) CreateTable(def TableDef) {
	m.mu.Lock()
	defer m.mu.Unlock()
	def.Columns = slices.Clone(def.Columns)
	m.tables[qualified(def.Schema, def.Name)] = &table{def: def, rows: map[string]Row{}}
}

func (m *Model) table(schema, name string) *table {
	t, ok := m.tables[qualified(schema, name)]
	if !ok {
		panic(fmt.Sprintf("cdcmodel: no table %s.%s", schema, name))
	}
	return t
}

// AddColumn adds a column to a table (ALTER TABLE ADD). Existing capture
// instances do not capture it.
func (m *Model) AddColumn(schema, name, column string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.table(schema, name)
	t.def.Columns = append(t.def.Columns, column)
}

// EnableCDC creates a capture instance of the table capturing its current
// columns (sys.sp_cdc_enable_table). Its start LSN is the next LSN, which it
// returns.
func (m *Model) EnableCDC(schema, name, instanceName string) watermarks.LSN {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := m.table(schema, name)
	m.lsn++
	m.instances = append(m.instances, &instance{name: instanceName, table: t, start: m.lsn, cols: slices.Clone(t.def.Columns)})
	return LSN(m.lsn)
}

// DisableCDC drops a capture instance.
func (m *Model) DisableCDC(instanceName string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.instances = slices.DeleteFunc(m.instances, func(in *instance) bool { return in.name == instanceName })
}

// Cleanup raises the instance's minimum LSN to low and deletes its change
// rows below it (the CDC cleanup job).
func (m *Model) Cleanup(instanceName string, low watermarks.LSN) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instance(instanceName)
	if in == nil {
		panic("cdcmodel: no capture instance " + instanceName)
	}
	n := num(low)
	if n <= in.start {
		return
	}
	in.start = n
	in.log = slices.DeleteFunc(in.log, func(r logRow) bool { return r.lsn < n })
}

func (m *Model) instance(name string) *instance {
	for _, in := range m.instances {
		if in.name == name {
			return in
		}
	}
	return nil
}

// StopAgent stops the capture agent: commits are no longer harvested.
func (m *Model) StopAgent() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = true
}

// StartAgent starts the capture agent, which harvests everything
// committed.
func (m *Model) StartAgent() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stopped = false
	for _, p := range m.pending {
		m.harvest(p)
	}
	m.pending = nil
}

// Touch commits a transaction on an untracked table: other database
// activity, which moves the LSN (and, harvested, MaxLSN). It returns the
// commit LSN.
func (m *Model) Touch() watermarks.LSN {
	return m.Begin().Commit()
}

// Rows returns the table's committed rows, by key in text form.
func (m *Model) Rows(schema, name string) map[string]Row {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Row{}
	for k, r := range m.table(schema, name).rows {
		out[k] = clone(r)
	}
	return out
}

// Queries returns how many Changes queries the model answered.
func (m *Model) Queries() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.queries
}

// KeyOf renders a row's key as text (KeyOf is the map key of Rows).
func KeyOf(key []string, r Row) string {
	parts := make([]string, len(key))
	for i, k := range key {
		switch v := r[k].(type) {
		case []byte:
			parts[i] = fmt.Sprintf("%X", v)
		default:
			parts[i] = fmt.Sprint(v)
		}
	}
	return strings.Join(parts, "|")
}

func clone(r Row) Row {
	c := make(Row, len(r))
	for k, v := range r {
		c[k] = v
	}
	return c
}

// op is one statement of a transaction.
type op struct {
	t      *table
	kind   int8 // 1 delete, 2 insert, 4 update
	cmd    int32
	seqval uint64
	row    Row // the new image (insert, update) or the key (delete)
}

// Tx is an open transaction: its statements are invisible until Commit.
type Tx struct {
	m   *Model
	ops []op
}

// Begin opens a transaction.
func (m *Model) Begin() *Tx { return &Tx{m: m} }

func (tx *Tx) add(schema, name string, kind int8, r Row) {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lsn++
	tx.ops = append(tx.ops, op{t: m.table(schema, name), kind: kind, cmd: int32(len(tx.ops) + 1), seqval: m.lsn, row: clone(r)})
}

// ReverseSeqvals gives the transaction's statements so far their seqvals in
// reverse order: the last statement takes the lowest. Their command ids,
// the order they happen in, stay. SQL Server's change tables may hold rows
// whose seqval order contradicts their operation order (KB 3030352: an
// update's insert before its delete); this models it.
func (tx *Tx) ReverseSeqvals() {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, j := 0, len(tx.ops)-1; i < j; i, j = i+1, j-1 {
		tx.ops[i].seqval, tx.ops[j].seqval = tx.ops[j].seqval, tx.ops[i].seqval
	}
}

// Insert inserts a full row.
func (tx *Tx) Insert(schema, name string, r Row) { tx.add(schema, name, 2, r) }

// Update replaces the row with r's key by r (a full image).
func (tx *Tx) Update(schema, name string, r Row) { tx.add(schema, name, 4, r) }

// Delete deletes the row with key's key columns.
func (tx *Tx) Delete(schema, name string, key Row) { tx.add(schema, name, 1, key) }

// Commit commits the transaction at the next LSN, which it returns; the
// capture agent harvests it if it runs.
func (tx *Tx) Commit() watermarks.LSN {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	m.lsn++
	m.committed = m.lsn
	p := pendingTx{lsn: m.lsn}
	for _, o := range tx.ops {
		k := KeyOf(o.t.def.Key, o.row)
		old := o.t.rows[k]
		switch o.kind {
		case 1:
			if old == nil {
				continue
			}
			delete(o.t.rows, k)
			p.ops = append(p.ops, op{t: o.t, kind: 1, cmd: o.cmd, seqval: o.seqval, row: old})
		case 2:
			o.t.rows[k] = o.row
			p.ops = append(p.ops, o)
		case 4:
			if old == nil {
				continue
			}
			o.t.rows[k] = o.row
			p.ops = append(p.ops, op{t: o.t, kind: 3, cmd: o.cmd, seqval: o.seqval, row: old}, o)
		}
	}
	tx.ops = nil
	if m.stopped {
		m.pending = append(m.pending, p)
	} else {
		m.harvest(p)
	}
	return LSN(p.lsn)
}

// harvest writes a committed transaction into the change tables.
func (m *Model) harvest(p pendingTx) {
	for _, o := range p.ops {
		for _, in := range m.instances {
			if in.table != o.t || p.lsn < in.start {
				continue
			}
			img := Row{}
			for _, c := range in.cols {
				img[c] = o.row[c]
				if slices.Contains(o.t.def.Computed, c) || (o.kind == 1 && slices.Contains(o.t.def.NullOnDelete, c)) {
					img[c] = nil
				}
			}
			in.log = append(in.log, logRow{lsn: p.lsn, cmd: o.cmd, seqval: o.seqval, op: o.kind, row: img})
		}
	}
	for _, in := range m.instances {
		slices.SortStableFunc(in.log, compareRows)
	}
	if p.lsn > m.harvested {
		m.harvested = p.lsn
	}
}

// Instances implements cdc.Source.
func (m *Model) Instances(_ context.Context, schema, name string) ([]cdc.Instance, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []cdc.Instance
	for _, in := range m.instances {
		if strings.EqualFold(in.table.def.Schema, schema) && strings.EqualFold(in.table.def.Name, name) {
			out = append(out, cdc.Instance{Name: in.name, StartLSN: LSN(in.start), Columns: slices.Clone(in.cols)})
		}
	}
	slices.SortStableFunc(out, func(a, b cdc.Instance) int { return a.StartLSN.Compare(b.StartLSN) })
	return out, nil
}

// MinLSN implements cdc.Source.
func (m *Model) MinLSN(_ context.Context, name string) (watermarks.LSN, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if in := m.instance(name); in != nil {
		return LSN(in.start), nil
	}
	return watermarks.LSN{}, nil
}

// MaxLSN implements cdc.Source.
func (m *Model) MaxLSN(context.Context) (watermarks.LSN, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.harvested == 0 {
		return watermarks.LSN{}, nil
	}
	return LSN(m.harvested), nil
}

// Changes implements cdc.Source.
func (m *Model) Changes(_ context.Context, q cdc.Query) ([]cdc.Change, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.queries++
	in := m.instance(q.Instance)
	if in == nil {
		return nil, fmt.Errorf("cdcmodel: invalid object name cdc.%s_CT", q.Instance)
	}
	for _, c := range q.Columns {
		if !slices.Contains(in.cols, c) {
			return nil, fmt.Errorf("cdcmodel: invalid column name %s in cdc.%s_CT", c, q.Instance)
		}
	}
	to := num(q.To)
	after := q.After
	var out []cdc.Change
	for _, r := range in.log {
		if len(out) >= q.Limit {
			break
		}
		if r.op == 3 || r.lsn > to || r.lsn > m.harvested {
			continue
		}
		if !after.LSN.IsZero() && !isAfter(r, after) {
			continue
		}
		foreign := false
		if q.Practice.Name != "" && len(q.Practices) > 0 {
			p := r.row[q.Practice.Name]
			ours := p != nil && slices.Contains(q.Practices, fmt.Sprint(p))
			switch {
			case ours:
			case r.op == 4 || (r.op == 1 && p == nil):
				foreign = true // key only, as the SQL Server source reads it
			default:
				continue
			}
		}
		vals := make([]any, len(q.Columns))
		for i, c := range q.Columns {
			if !foreign || slices.Contains(q.Key, c) {
				vals[i] = r.row[c]
			}
		}
		out = append(out, cdc.Change{LSN: LSN(r.lsn), CommandID: r.cmd, Seqval: LSN(r.seqval), Op: r.op, Values: vals, Foreign: foreign})
	}
	return out, nil
}

// isAfter is the tie-safe resume predicate (lsn, command_id, seqval, op) >
// after, in compareRows order.
func isAfter(r logRow, after watermarks.CDC) bool {
	l := num(after.LSN)
	if !after.InTransaction() {
		return r.lsn > l
	}
	return compareRows(r, logRow{lsn: l, cmd: after.CommandID, seqval: num(after.Seqval), op: after.Op}) > 0
}

// Agent implements cdc.AgentProber: Behind while committed transactions
// wait for a stopped agent.
func (m *Model) Agent(context.Context) (cdc.AgentStatus, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := cdc.AgentStatus{Behind: m.committed > m.harvested}
	if m.harvested > 0 {
		st.HarvestedLSN = LSN(m.harvested)
	}
	return st, nil
}
