package mssqlmodel

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"
)

// Tx is an open transaction of the Go API. Its writes are invisible to
// every statement until Commit (readers see committed rows only, as under
// READ_COMMITTED_SNAPSHOT); they lock their rows, so another transaction's
// write of the same row fails with ErrWouldBlock instead of blocking.
//
// A write to a table with a rowversion column takes the next value of the
// database's counter (@@DBTS) at once, not at commit: while the
// transaction is open, MIN_ACTIVE_ROWVERSION() stays at its first value.
// Every statement takes the next command id of its transaction (1, 2 ...)
// and the next LSN as its CDC __$seqval; the commit takes the next LSN as
// the transaction's __$start_lsn and the next Change Tracking version.
type Tx struct {
	m       *Model
	id      int64
	began   time.Time
	ops     []txOp
	firstRV uint64
	done    bool
	touch   bool
}

type txOp struct {
	ts     *tableState
	kind   byte // 'I', 'U', 'D'
	key    string
	row    []any // the new image (I, U) or the deleted row (D)
	cmd    int32
	seqval uint64
}

// Begin opens a transaction.
func (m *Model) Begin() *Tx {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.nextTx++
	tx := &Tx{m: m, id: m.nextTx, began: m.now}
	m.open[tx] = true
	return tx
}

// view returns the row with key as the transaction sees it.
func (tx *Tx) view(ts *tableState, key string) []any {
	for i := len(tx.ops) - 1; i >= 0; i-- {
		if o := tx.ops[i]; o.ts == ts && o.key == key {
			if o.kind == 'D' {
				return nil
			}
			return o.row
		}
	}
	return ts.rows[key]
}

func (tx *Tx) lock(ts *tableState, key string) error {
	lk := ts.def.qualified() + "\x00" + key
	if holder, ok := tx.m.locks[lk]; ok && holder != tx {
		return fmt.Errorf("%w (%s)", ErrWouldBlock, ts.def.qualified())
	}
	tx.m.locks[lk] = tx
	return nil
}

// build makes a full row from values by column name over base (nil for an
// insert), filling computed columns and checking NOT NULL.
func (m *Model) build(d *tableDef, values map[string]any, base []any) ([]any, error) {
	row := make([]any, len(d.cols))
	if base != nil {
		copy(row, base)
	}
	for name, v := range values {
		i := d.column(name)
		if i < 0 {
			return nil, fmt.Errorf("mssqlmodel: Invalid column name '%s' in table %s", name, d.qualified())
		}
		c := d.cols[i]
		if c.computed || c.typ.Name == "rowversion" {
			continue // computed by the model
		}
		if base != nil && slices.Contains(d.key, i) {
			nv, err := normalize(v, c, d.qualified())
			if err != nil {
				return nil, err
			}
			if cmpv, err := compareValues(nv, c.typ, base[i], c.typ); err != nil || cmpv != 0 {
				return nil, fmt.Errorf("mssqlmodel: %s: updating key column %s is not modelled (delete and insert)", d.qualified(), c.name)
			}
			continue
		}
		nv, err := normalize(v, c, d.qualified())
		if err != nil {
			return nil, err
		}
		row[i] = nv
	}
	if len(d.computed) > 0 {
		byName := map[string]any{}
		for i, c := range d.cols {
			if !c.computed {
				byName[c.name] = row[i]
			}
		}
		for i, f := range d.computed {
			v, err := normalize(f(byName), d.cols[i], d.qualified())
			if err != nil {
				return nil, err
			}
			row[i] = v
		}
	}
	for i, c := range d.cols {
		if row[i] == nil && !c.nullable && !c.computed && c.typ.Name != "rowversion" {
			return nil, fmt.Errorf("mssqlmodel: Cannot insert the value NULL into column '%s', table '%s.%s'; column does not allow nulls",
				c.name, m.opts.Database, d.qualified())
		}
	}
	return row, nil
}

func (tx *Tx) write(table string, kind byte, values map[string]any) error {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx.done {
		return ErrTxDone
	}
	ts, err := m.tableLocked(table)
	if err != nil {
		return err
	}
	d := ts.def
	var row []any
	var key string
	switch kind {
	case 'I':
		if row, err = m.build(d, values, nil); err != nil {
			return err
		}
		key = keyText(d, row)
		if tx.view(ts, key) != nil {
			return fmt.Errorf("%w in object '%s'", ErrDuplicate, d.qualified())
		}
	default:
		probe := make([]any, len(d.cols))
		for _, i := range d.key {
			v, ok := lookup(values, d.cols[i].name)
			if !ok || v == nil {
				return fmt.Errorf("mssqlmodel: %s: the row has no value for key column %s", d.qualified(), d.cols[i].name)
			}
			if probe[i], err = normalize(v, d.cols[i], d.qualified()); err != nil {
				return err
			}
		}
		key = keyText(d, probe)
		cur := tx.view(ts, key)
		if cur == nil {
			return fmt.Errorf("%w in %s", ErrNoRow, d.qualified())
		}
		if kind == 'D' {
			row = cur
		} else if row, err = m.build(d, values, cur); err != nil {
			return err
		}
	}
	if err := tx.lock(ts, key); err != nil {
		return err
	}
	if kind != 'D' && d.rowversion >= 0 {
		m.dbts++
		row[d.rowversion] = binary.BigEndian.AppendUint64(nil, m.dbts)
		if tx.firstRV == 0 {
			tx.firstRV = m.dbts
		}
	}
	m.lsn++
	tx.ops = append(tx.ops, txOp{ts: ts, kind: kind, key: key, row: row, cmd: int32(len(tx.ops) + 1), seqval: m.lsn})
	return nil
}

func lookup(values map[string]any, name string) (any, bool) {
	if v, ok := values[name]; ok {
		return v, true
	}
	for k, v := range values {
		if len(k) == len(name) && equalFold(k, name) {
			return v, true
		}
	}
	return nil, false
}

// Insert inserts a row (values by column name; missing columns are NULL).
func (tx *Tx) Insert(table string, values map[string]any) error { return tx.write(table, 'I', values) }

// Update sets the given columns of the row with values' key (the key
// columns must be among values and cannot change).
func (tx *Tx) Update(table string, values map[string]any) error { return tx.write(table, 'U', values) }

// Delete deletes the row with values' key.
func (tx *Tx) Delete(table string, values map[string]any) error { return tx.write(table, 'D', values) }

// ReverseSeqvals gives the transaction's statements so far their __$seqval
// in reverse order (their command ids stay): SQL Server's change tables
// may hold rows whose seqval order contradicts the order of the
// operations (KB 3030352).
func (tx *Tx) ReverseSeqvals() {
	tx.m.mu.Lock()
	defer tx.m.mu.Unlock()
	for i, j := 0, len(tx.ops)-1; i < j; i, j = i+1, j-1 {
		tx.ops[i].seqval, tx.ops[j].seqval = tx.ops[j].seqval, tx.ops[i].seqval
	}
}

// Rollback discards the transaction's writes. Row versions it took stay
// used, as on SQL Server.
func (tx *Tx) Rollback() {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	tx.endLocked()
}

func (tx *Tx) endLocked() {
	m := tx.m
	tx.done = true
	delete(m.open, tx)
	for k, holder := range m.locks {
		if holder == tx {
			delete(m.locks, k)
		}
	}
}

// Commit makes the writes visible: one Change Tracking version for the
// transaction (when it changed a tracked table), one commit LSN, and, with
// auto-harvest on, its rows in the change tables.
func (tx *Tx) Commit() error {
	m := tx.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if tx.done {
		return ErrTxDone
	}
	db := m.db
	// Change Tracking: one version for the transaction.
	var version int64
	if db.ctEnabled {
		tracked := tx.touch
		for _, o := range tx.ops {
			tracked = tracked || o.ts.ct != nil
		}
		if tracked {
			db.ctVersion++
			version = db.ctVersion
		}
	}
	m.lsn++
	p := &pendingTx{lsn: m.lsn, begin: tx.began, end: m.now, id: tx.id}
	for _, o := range tx.ops {
		ts := o.ts
		before := ts.rows[o.key]
		switch o.kind {
		case 'D':
			delete(ts.rows, o.key)
		default:
			ts.rows[o.key] = o.row
		}
		if ts.ct != nil && version > 0 {
			ts.ct.record(ts.def, o.key, o.row, o.kind, version)
		}
		p.ops = append(p.ops, pendingOp{def: ts.def, kind: o.kind, cmd: o.cmd, seqval: o.seqval, before: before, after: o.row})
	}
	if len(p.ops) > 0 {
		p.beginLSN = tx.ops[0].seqval
	}
	tx.endLocked()
	if db.cdcEnabled {
		m.pending = append(m.pending, p)
		if m.autoHarvest {
			m.harvestLocked()
		}
	}
	return nil
}

// Touch commits a transaction elsewhere in the database: it writes a row
// of another table (tracked by Change Tracking, with a rowversion column),
// so no table of the model changes but @@DBTS, the Change Tracking version
// and the LSN move (and, with auto-harvest, the highest harvested LSN), as
// other activity moves them.
func (m *Model) Touch() {
	tx := m.Begin()
	m.mu.Lock()
	tx.touch = true
	m.dbts++
	m.mu.Unlock()
	_ = tx.Commit()
}

// minActiveRowVersion is MIN_ACTIVE_ROWVERSION(): the lowest rowversion a
// still-open transaction took, or @@DBTS + 1.
func (m *Model) minActiveRowVersion() uint64 {
	low := m.dbts + 1
	for tx := range m.open {
		if tx.firstRV != 0 && tx.firstRV < low {
			low = tx.firstRV
		}
	}
	return low
}

// DBTS returns @@DBTS, the last rowversion value used.
func (m *Model) DBTS() uint64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.dbts
}

// Truncate empties a table (TRUNCATE TABLE) in a transaction of its own:
// no change is tracked, and the table's Change Tracking minimum valid
// version rises to the current version. A table enabled for CDC cannot be
// truncated (error 4711).
func (m *Model) Truncate(table string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts, err := m.tableLocked(table)
	if err != nil {
		return err
	}
	for _, in := range m.db.instances {
		if in.table == ts.def.objectID {
			return fmt.Errorf("mssqlmodel: Cannot truncate table '%s' because it is published for replication or enabled for Change Data Capture. (4711)", ts.def.qualified())
		}
	}
	prefix := ts.def.qualified() + "\x00"
	for k := range m.locks {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			return fmt.Errorf("%w (%s)", ErrWouldBlock, ts.def.qualified())
		}
	}
	ts.rows = map[string][]any{}
	if ts.ct != nil {
		ts.ct.entries = map[string]*ctKey{}
		ts.ct.minValid = m.db.ctVersion
	}
	return nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Restore adds committed rows to table keeping the rowversion values they
// carry, as a restore, a replicated load or SELECT INTO copies them: SQL
// Server promises unique rowversion values only for the values it assigns,
// so restored rows may repeat a value. The rows are not captured by CDC or
// Change Tracking. @@DBTS rises to the largest restored value.
func (m *Model) Restore(table string, rows []map[string]any) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts, err := m.tableLocked(table)
	if err != nil {
		return err
	}
	d := ts.def
	for _, values := range rows {
		row, err := m.build(d, values, nil)
		if err != nil {
			return err
		}
		if d.rowversion >= 0 {
			v, _ := lookup(values, d.cols[d.rowversion].name)
			b, ok := v.([]byte)
			if !ok || len(b) != 8 {
				return fmt.Errorf("mssqlmodel: restore into %s: rowversion %s needs 8 bytes", d.qualified(), d.cols[d.rowversion].name)
			}
			row[d.rowversion] = append([]byte(nil), b...)
			m.dbts = max(m.dbts, binary.BigEndian.Uint64(b))
		}
		key := keyText(d, row)
		if ts.rows[key] != nil {
			return fmt.Errorf("%w in object '%s'", ErrDuplicate, d.qualified())
		}
		ts.rows[key] = row
	}
	return nil
}
