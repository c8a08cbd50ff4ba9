package mssqlmodel

import (
	"fmt"
	"maps"
	"slices"
)

// Change Tracking.
//
// The database has one version counter (CHANGE_TRACKING_CURRENT_VERSION(),
// NULL while change tracking is off for the database, 0 before the first
// tracked commit). A committed transaction that changed a tracked table
// takes the next version. Each tracked table keeps, per key, the changes
// of every committed transaction (version and operation) since its
// minimum valid version, which cleanup (CleanupCT) and TRUNCATE raise.
//
// CHANGETABLE(CHANGES t, @v) nets a key's changes after @v as SQL Server
// does (probed against SQL Server 2025 by the sql-server-simulator
// project, and Microsoft's CHANGETABLE page):
//
//   - SYS_CHANGE_VERSION is the key's last change;
//   - SYS_CHANGE_OPERATION is 'D' when the last change deleted the row,
//     else 'I' when the first change after @v inserted it, else 'U' (a
//     delete then an insert of the same key is an update);
//   - SYS_CHANGE_CREATION_VERSION is the version of the last insert after
//     @v, NULL when there is none;
//   - an insert then a delete after @v is a 'D' (SQL Server does not drop
//     the key);
//   - @v NULL returns every tracked change; a negative @v or one above the
//     current version returns nothing. A version below the minimum valid
//     version is not an error: the answer is incomplete, which is why
//     CHANGE_TRACKING_MIN_VALID_VERSION must be checked.
//
// SYS_CHANGE_COLUMNS and SYS_CHANGE_CONTEXT are NULL (TRACK_COLUMNS_UPDATED
// off, no change context).

type ctState struct {
	entries  map[string]*ctKey
	minValid int64
	begin    int64
}

type ctKey struct {
	key []any // the key's values, in key order
	ops []ctOp
}

type ctOp struct {
	version int64
	op      byte
}

func (c *ctState) clone() *ctState {
	n := &ctState{entries: make(map[string]*ctKey, len(c.entries)), minValid: c.minValid, begin: c.begin}
	for k, e := range c.entries {
		n.entries[k] = &ctKey{key: e.key, ops: slices.Clone(e.ops)}
	}
	return n
}

func (c *ctState) record(d *tableDef, key string, row []any, kind byte, version int64) {
	e, ok := c.entries[key]
	if !ok {
		kv := make([]any, len(d.key))
		for j, i := range d.key {
			kv[j] = row[i]
		}
		e = &ctKey{key: kv}
		c.entries[key] = e
	}
	e.ops = append(slices.Clip(e.ops), ctOp{version, kind})
}

// ctChange is one row of CHANGETABLE(CHANGES ...).
type ctChange struct {
	key      []any
	version  int64
	created  int64 // 0: NULL
	op       string
	identity string
}

// changes nets the tracked changes after from (nil: NULL, every change).
func (c *ctState) changes(from *int64, current int64) []ctChange {
	if from != nil && (*from < 0 || *from > current) {
		return nil
	}
	var out []ctChange
	for id, e := range c.entries {
		var after []ctOp
		for _, o := range e.ops {
			if from == nil || o.version > *from {
				after = append(after, o)
			}
		}
		if len(after) == 0 {
			continue
		}
		ch := ctChange{key: e.key, identity: id, version: after[len(after)-1].version}
		for _, o := range after {
			if o.op == 'I' {
				ch.created = o.version
			}
		}
		switch {
		case after[len(after)-1].op == 'D':
			ch.op = "D"
		case after[0].op == 'I':
			ch.op = "I"
		default:
			ch.op = "U"
		}
		out = append(out, ch)
	}
	return out
}

// EnableCTDatabase turns change tracking on for the database.
func (m *Model) EnableCTDatabase() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.db.ctEnabled = true
}

// DisableCTDatabase turns change tracking off for the database; it fails
// while a table is tracked (error 22115), as on SQL Server.
func (m *Model) DisableCTDatabase() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, t := range m.db.tables {
		if t.ct != nil {
			return fmt.Errorf("mssqlmodel: Change tracking is enabled for one or more tables in database '%s'. Disable change tracking on each table before disabling it for the database. (22115)", m.opts.Database)
		}
	}
	m.db.ctEnabled = false
	return nil
}

// EnableCT turns change tracking on for a table (ALTER TABLE ... ENABLE
// CHANGE_TRACKING): its minimum valid version is the current version.
func (m *Model) EnableCT(table string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.db.ctEnabled {
		return fmt.Errorf("mssqlmodel: Change tracking must be enabled on database '%s' before it can be enabled on table '%s'. (4997)", m.opts.Database, table)
	}
	ts, err := m.tableLocked(table)
	if err != nil {
		return err
	}
	if ts.ct != nil {
		return fmt.Errorf("mssqlmodel: Change tracking is already enabled for table '%s'. (4996)", ts.def.qualified())
	}
	ts.ct = &ctState{entries: map[string]*ctKey{}, minValid: m.db.ctVersion, begin: m.db.ctVersion}
	return nil
}

// DisableCT turns change tracking off for a table, dropping its tracking.
func (m *Model) DisableCT(table string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts, err := m.tableLocked(table)
	if err != nil {
		return err
	}
	ts.ct = nil
	return nil
}

// CleanupCT models the auto-cleanup task: the table's changes below
// minValid are removed and its minimum valid version rises to minValid.
func (m *Model) CleanupCT(table string, minValid int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts, err := m.tableLocked(table)
	if err != nil {
		return err
	}
	if ts.ct == nil {
		return fmt.Errorf("mssqlmodel: change tracking is off for %s", table)
	}
	if minValid <= ts.ct.minValid {
		return nil
	}
	ts.ct.minValid = minValid
	entries := maps.Clone(ts.ct.entries)
	for k, e := range entries {
		ops := slices.DeleteFunc(slices.Clone(e.ops), func(o ctOp) bool { return o.version < minValid })
		if len(ops) == 0 {
			delete(entries, k)
			continue
		}
		entries[k] = &ctKey{key: e.key, ops: ops}
	}
	ts.ct.entries = entries
	return nil
}

// CTVersion returns CHANGE_TRACKING_CURRENT_VERSION() (false while change
// tracking is off for the database).
func (m *Model) CTVersion() (int64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.db.ctVersion, m.db.ctEnabled
}

// CTMinValid returns the table's minimum valid version (false when it is
// not tracked).
func (m *Model) CTMinValid(table string) (int64, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ts, err := m.tableLocked(table)
	if err != nil || ts.ct == nil || !m.db.ctEnabled {
		return 0, false
	}
	return ts.ct.minValid, true
}
