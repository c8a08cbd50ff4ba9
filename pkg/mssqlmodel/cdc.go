package mssqlmodel

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Change Data Capture.
//
// EnableCDCDatabase creates the cdc schema and its metadata tables
// (cdc.change_tables, cdc.captured_columns, cdc.lsn_time_mapping); without
// it they do not exist (error 208). EnableCDC creates a capture instance:
// a change table cdc.<instance>_CT with __$start_lsn, __$end_lsn,
// __$seqval, __$operation (1 delete, 2 insert, 3 update before image, 4
// update after image), __$update_mask, the captured columns and
// __$command_id (left out with NoCommandID, as on servers without KB
// 3030352: a query naming it fails with error 207). Its start LSN is the
// LSN at enabling; transactions committed after it are captured.
//
// Committed transactions reach the change tables only when the capture
// agent harvests them (Harvest, or every commit with auto-harvest on):
// every harvested transaction has a row in cdc.lsn_time_mapping (the model
// writes one for transactions without tracked changes too, so that the
// highest harvested LSN moves with database activity, as the capture job's
// periodic entries make it move), and every Harvest call is a log scan
// session in sys.dm_cdc_log_scan_sessions. Computed columns are NULL in
// change rows.

type cdcInstance struct {
	name      string
	table     int       // the source table's object id
	def       *tableDef // the source table when the instance was created
	objectID  int       // the change table's object id
	start     uint64
	cols      []string // captured columns, in source order
	role      string
	commandID bool
	created   time.Time
	rows      []cdcRow
}

type cdcRow struct {
	start, seqval uint64
	op            int64
	cmd           int32
	mask          []byte
	vals          []any // by captured column
}

type pendingTx struct {
	id         int64
	lsn        uint64
	beginLSN   uint64
	begin, end time.Time
	ops        []pendingOp
}

type pendingOp struct {
	def           *tableDef
	kind          byte
	cmd           int32
	seqval        uint64
	before, after []any
}

type lsnMapping struct {
	start      uint64
	begin, end time.Time // server local wall clock
	tranID     []byte
	beginLSN   uint64
}

type scanSession struct {
	id                  int
	start, end          time.Time // server local wall clock
	tranCount, commands int
	empty               bool
	lastCommit          uint64
	lastCommitTime      time.Time
	errorCount          int
	firstBegin          uint64
}

type cdcError struct {
	session  int
	entry    time.Time
	number   int
	severity int
	state    int
	message  string
}

// LSN returns the model's LSN number n as binary(10), the form of
// __$start_lsn, __$seqval and the LSN functions: the number big-endian in
// the last eight bytes.
func LSN(n uint64) []byte {
	b := make([]byte, 10)
	binary.BigEndian.PutUint64(b[2:], n)
	return b
}

// LSNNumber is the inverse of LSN.
func LSNNumber(b []byte) uint64 {
	if len(b) != 10 {
		return 0
	}
	return binary.BigEndian.Uint64(b[2:])
}

// EnableCDCDatabase enables CDC on the database (sys.sp_cdc_enable_db).
func (m *Model) EnableCDCDatabase() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.db.cdcEnabled = true
}

// CaptureInstance describes a capture instance to create.
type CaptureInstance struct {
	Table string // "dbo.claim_lines"
	Name  string // default "<schema>_<table>"
	// Columns are the captured columns; nil captures every column.
	Columns []string
	// Role is the gating role (@role_name); "" for none. The model creates
	// the role.
	Role string
	// NoCommandID leaves __$command_id out of the change table, as on SQL
	// Server 2012/2014 without KB 3030352.
	NoCommandID bool
}

// EnableCDC creates a capture instance (sys.sp_cdc_enable_table) and
// returns its start LSN.
func (m *Model) EnableCDC(ci CaptureInstance) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.db.cdcEnabled {
		return nil, fmt.Errorf("mssqlmodel: The database '%s' is not enabled for Change Data Capture. (22901)", m.opts.Database)
	}
	ts, err := m.tableLocked(ci.Table)
	if err != nil {
		return nil, err
	}
	d := ts.def
	name := ci.Name
	if name == "" {
		name = d.schema + "_" + d.name
	}
	n := 0
	for _, in := range m.db.instances {
		if strings.EqualFold(in.name, name) {
			return nil, fmt.Errorf("mssqlmodel: capture instance %s already exists (22926)", name)
		}
		if in.table == d.objectID {
			n++
		}
	}
	if n >= 2 {
		return nil, fmt.Errorf("mssqlmodel: Two capture instances already exist for source table '%s'. (22962)", d.qualified())
	}
	var cols []string
	if ci.Columns == nil {
		for _, c := range d.cols {
			cols = append(cols, c.name)
		}
	} else {
		for _, c := range ci.Columns {
			i := d.column(c)
			if i < 0 {
				return nil, fmt.Errorf("mssqlmodel: column %s is not in %s", c, d.qualified())
			}
			cols = append(cols, d.cols[i].name)
		}
		for _, k := range d.key {
			if !slices.ContainsFunc(cols, func(c string) bool { return strings.EqualFold(c, d.cols[k].name) }) {
				return nil, fmt.Errorf("mssqlmodel: the captured columns must include the key column %s", d.cols[k].name)
			}
		}
		slices.SortFunc(cols, func(a, b string) int { return d.column(a) - d.column(b) })
	}
	if ci.Role != "" {
		m.addRoleLocked(ci.Role)
	}
	m.lsn++
	in := &cdcInstance{name: name, table: d.objectID, def: d, objectID: m.objectID(), start: m.lsn,
		cols: cols, role: ci.Role, commandID: !ci.NoCommandID, created: m.localNow()}
	m.db.instances = append(m.db.instances, in)
	return LSN(in.start), nil
}

// DisableCDC drops a capture instance and its change table.
func (m *Model) DisableCDC(instance string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.db.instances = slices.DeleteFunc(m.db.instances, func(in *cdcInstance) bool { return strings.EqualFold(in.name, instance) })
}

// SetAutoHarvest turns harvesting on every commit on or off (off: the
// capture agent is stopped until Harvest is called).
func (m *Model) SetAutoHarvest(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.autoHarvest = on
	if on {
		m.harvestLocked()
	}
}

// Harvest runs the capture agent once: every committed transaction not yet
// harvested reaches the change tables and cdc.lsn_time_mapping, and a log
// scan session is recorded. It returns the number of transactions.
func (m *Model) Harvest() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.harvestLocked()
}

func (m *Model) harvestLocked() int {
	db := m.db
	now := m.localNow()
	s := scanSession{start: now, end: now, tranCount: len(m.pending), empty: len(m.pending) == 0}
	for _, p := range m.pending {
		for _, o := range p.ops {
			for _, in := range db.instances {
				if in.table != o.def.objectID || p.lsn < in.start {
					continue
				}
				s.commands++
				switch o.kind {
				case 'I':
					in.rows = append(in.rows, in.changeRow(p.lsn, o, 2, nil, o.after))
				case 'D':
					in.rows = append(in.rows, in.changeRow(p.lsn, o, 1, nil, o.before))
				case 'U':
					mask := in.updateMask(o)
					in.rows = append(in.rows, in.changeRow(p.lsn, o, 3, mask, o.before), in.changeRow(p.lsn, o, 4, mask, o.after))
				}
			}
		}
		tran := make([]byte, 10)
		binary.BigEndian.PutUint64(tran[2:], uint64(p.id))
		begin := p.beginLSN
		if begin == 0 {
			begin = p.lsn
		}
		db.lsnMap = append(db.lsnMap, lsnMapping{start: p.lsn, begin: m.local(p.begin), end: m.local(p.end), tranID: tran, beginLSN: begin})
		s.lastCommit, s.lastCommitTime = p.lsn, m.local(p.end)
		if s.firstBegin == 0 {
			s.firstBegin = begin
		}
	}
	m.scanSeq++
	s.id = m.scanSeq
	db.scans = append(db.scans, s)
	if len(db.scans) > 32 { // the DMV keeps the last 32 sessions
		db.scans = slices.Clone(db.scans[len(db.scans)-32:])
	}
	n := len(m.pending)
	m.pending = nil
	return n
}

func (m *Model) local(t time.Time) time.Time { return wallUTC(t.In(m.opts.ServerZone)) }

// changeRow builds one change table row from a full source row.
func (in *cdcInstance) changeRow(lsn uint64, o pendingOp, op int64, mask []byte, row []any) cdcRow {
	r := cdcRow{start: lsn, seqval: o.seqval, op: op, cmd: o.cmd, mask: mask, vals: make([]any, len(in.cols))}
	for i, c := range in.cols {
		j := o.def.column(c)
		if j < 0 || o.def.cols[j].computed || row == nil {
			continue // computed columns are NULL in change rows
		}
		r.vals[i] = row[j]
	}
	if mask == nil {
		r.mask = in.fullMask()
	}
	return r
}

func (in *cdcInstance) maskBytes() []byte { return make([]byte, (len(in.cols)+7)/8) }

func setBit(mask []byte, ordinal int) {
	k := ordinal - 1
	mask[len(mask)-1-k/8] |= 1 << (k % 8)
}

func (in *cdcInstance) fullMask() []byte {
	mask := in.maskBytes()
	for i := range in.cols {
		setBit(mask, i+1)
	}
	return mask
}

// updateMask sets the bit of every captured column an update changed.
func (in *cdcInstance) updateMask(o pendingOp) []byte {
	mask := in.maskBytes()
	for i, c := range in.cols {
		j := o.def.column(c)
		if j < 0 || o.def.cols[j].computed {
			continue // computed columns are NULL in change rows
		}
		a, b := o.before[j], o.after[j]
		t := o.def.cols[j].typ
		changed := (a == nil) != (b == nil)
		if a != nil && b != nil {
			if c, err := compareValues(a, t, b, t); err != nil || c != 0 {
				changed = true
			}
			if s, ok := a.(string); ok && s != b.(string) {
				changed = true // a case-only change is a change
			}
		}
		if changed {
			setBit(mask, i+1)
		}
	}
	return mask
}

// CleanupCDC raises the capture instance's start (minimum) LSN to low and
// deletes its change rows below it, as the cleanup job does.
func (m *Model) CleanupCDC(instance string, low []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instanceLocked(m.db, instance)
	if in == nil {
		return fmt.Errorf("mssqlmodel: no capture instance %s", instance)
	}
	n := LSNNumber(low)
	if n <= in.start {
		return nil
	}
	in.start = n
	in.rows = slices.DeleteFunc(slices.Clone(in.rows), func(r cdcRow) bool { return r.start < n })
	return nil
}

func (m *Model) instanceLocked(db *dbState, name string) *cdcInstance {
	for _, in := range db.instances {
		if strings.EqualFold(in.name, name) {
			return in
		}
	}
	return nil
}

// MaxLSN returns the highest harvested LSN (sys.fn_cdc_get_max_lsn()), nil
// when nothing was harvested.
func (m *Model) MaxLSN() []byte {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.db.maxLSN()
}

func (db *dbState) maxLSN() []byte {
	var hi uint64
	for _, r := range db.lsnMap {
		hi = max(hi, r.start)
	}
	if hi == 0 {
		return nil
	}
	return LSN(hi)
}

// AddCDCError records a capture job error (sys.dm_cdc_errors).
func (m *Model) AddCDCError(number int, message string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.db.cdcErrors = append(m.db.cdcErrors, cdcError{session: m.scanSeq, entry: m.localNow(), number: number,
		severity: 16, state: 1, message: message})
}

// ChangeRows returns an instance's change rows (every operation, 3 and 4
// included) in (__$start_lsn, __$command_id, __$seqval, __$operation)
// order, each with its captured columns by name and the __$ columns.
func (m *Model) ChangeRows(instance string) ([]map[string]any, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	in := m.instanceLocked(m.db, instance)
	if in == nil {
		return nil, fmt.Errorf("mssqlmodel: no capture instance %s", instance)
	}
	rows := slices.Clone(in.rows)
	slices.SortStableFunc(rows, func(a, b cdcRow) int {
		if a.start != b.start {
			return cmpU(a.start, b.start)
		}
		if a.cmd != b.cmd {
			return int(a.cmd - b.cmd)
		}
		if a.seqval != b.seqval {
			return cmpU(a.seqval, b.seqval)
		}
		return int(a.op - b.op)
	})
	var out []map[string]any
	for _, r := range rows {
		row := map[string]any{"__$start_lsn": LSN(r.start), "__$seqval": LSN(r.seqval), "__$operation": r.op,
			"__$update_mask": r.mask}
		if in.commandID {
			row["__$command_id"] = int64(r.cmd)
		}
		for i, c := range in.cols {
			row[c] = r.vals[i]
		}
		out = append(out, row)
	}
	return out, nil
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Restart models a server restart or an Availability Group failover, as
// the capture agent's DMVs see it: sys.dm_cdc_log_scan_sessions and
// sys.dm_cdc_errors start empty, while the change tables and
// cdc.lsn_time_mapping keep their rows (the highest harvested LSN stays).
func (m *Model) Restart() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.db.scans = nil
	m.db.cdcErrors = nil
}
