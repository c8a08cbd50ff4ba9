// Package ctmodel is a TEST DOUBLE: an in-process model of SQL Server
// Change Tracking that implements changetracking.Source, so that the
// extractor's windows, resume, expiry, handoff and paging are tested in
// plain `go test` (there is no SQL Server here, DESIGN.md §5). It is not a
// SQL Server: no SQL text is parsed, no collation is modelled (strings
// compare bytewise), and it must never be used outside tests.
//
// What it models: tables with primary keys holding rows as go-mssqldb
// returns them (GUIDs in wire order, decimals as text, zone-less
// date-times in UTC); one version per committed transaction
// (CHANGE_TRACKING_CURRENT_VERSION); per key the version and kind of its
// last change and the version it was created at (for I/U/D relative to a
// window start); a minimum valid version per table that cleanup and
// TRUNCATE raise; open transactions whose writes are invisible and
// unversioned until they commit; the grant VIEW CHANGE TRACKING, without
// which CHANGE_TRACKING_MIN_VALID_VERSION reads NULL and CHANGETABLE fails,
// as on SQL Server. GUID keys order as SQL Server orders uniqueidentifier
// (last six bytes first, PITFALLS.md P12).
package ctmodel

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/changetracking/internal/ctrows"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/schemas"
)

// ErrPermission is the model's "VIEW CHANGE TRACKING permission was denied"
// (SQL Server error 229) from CHANGETABLE.
var ErrPermission = errors.New("ctmodel: The VIEW CHANGE TRACKING permission was denied on the object")

// DB is one modelled database with change tracking on. It is safe for
// concurrent use.
type DB struct {
	mu      sync.Mutex
	version int64
	enabled bool
	tables  map[string]*table
	calls   []string

	// BeforeChanges, when set, runs at the start of every Changes call,
	// before it reads: a test commits writes "during" a read with it.
	BeforeChanges func()
}

type table struct {
	def      *schemas.Table
	conv     *ctrows.Table
	rows     map[string][]any // current rows by key text
	track    map[string]*change
	minValid int64
	enabled  bool
	viewCT   bool
}

// change is a key's change-tracking entry.
type change struct {
	key     []any // raw key values, in key order
	version int64 // last change
	created int64 // version of the insert that created the current row
	deleted bool
}

// New returns an empty database with change tracking on.
func New() *DB {
	return &DB{version: 1, enabled: true, tables: map[string]*table{}}
}

// SetDatabaseTracking turns database-level change tracking on or off.
func (db *DB) SetDatabaseTracking(on bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.enabled = on
}

// Create adds the table t (its full column list) with change tracking on
// and VIEW CHANGE TRACKING granted. Its minimum valid version is the
// current version.
func (db *DB) Create(t *schemas.Table) error {
	conv, err := ctrows.New(t)
	if err != nil {
		return err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.tables[name(t)] = &table{
		def: t, conv: conv, rows: map[string][]any{}, track: map[string]*change{},
		minValid: db.version, enabled: true, viewCT: true,
	}
	return nil
}

// SetGrant grants (true) or revokes VIEW CHANGE TRACKING on the table.
func (db *DB) SetGrant(t *schemas.Table, viewChangeTracking bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.tables[name(t)].viewCT = viewChangeTracking
}

// SetTableTracking enables (true, raising the minimum valid version to
// the current version, as ENABLE CHANGE_TRACKING does) or disables change
// tracking on the table.
func (db *DB) SetTableTracking(t *schemas.Table, on bool) {
	db.mu.Lock()
	defer db.mu.Unlock()
	tb := db.tables[name(t)]
	tb.enabled = on
	if on {
		tb.minValid = db.version
		tb.track = map[string]*change{}
	}
}

// Cleanup models the auto-cleanup task: it removes the tracking entries
// of versions below minValid and raises the table's minimum valid version
// to minValid.
func (db *DB) Cleanup(t *schemas.Table, minValid int64) {
	db.mu.Lock()
	defer db.mu.Unlock()
	tb := db.tables[name(t)]
	if minValid <= tb.minValid {
		return
	}
	tb.minValid = minValid
	for k, c := range tb.track {
		if c.version < minValid {
			delete(tb.track, k)
		}
	}
}

// Truncate models TRUNCATE TABLE: every row goes without a tracked delete,
// in a transaction of its own, and the minimum valid version rises to it.
func (db *DB) Truncate(t *schemas.Table) {
	db.mu.Lock()
	defer db.mu.Unlock()
	tb := db.tables[name(t)]
	db.version++
	tb.rows = map[string][]any{}
	tb.track = map[string]*change{}
	tb.minValid = db.version
}

// Version returns CHANGE_TRACKING_CURRENT_VERSION().
func (db *DB) Version() int64 {
	db.mu.Lock()
	defer db.mu.Unlock()
	return db.version
}

// Calls returns the Source calls made so far, by method name.
func (db *DB) Calls() []string {
	db.mu.Lock()
	defer db.mu.Unlock()
	return slices.Clone(db.calls)
}

// Rows returns the table's current rows (raw values, full column list) in
// key order.
func (db *DB) Rows(t *schemas.Table) [][]any {
	db.mu.Lock()
	defer db.mu.Unlock()
	tb := db.tables[name(t)]
	var out [][]any
	for _, k := range tb.sortedRowKeys() {
		out = append(out, slices.Clone(tb.rows[k]))
	}
	return out
}

// Tx is an open transaction: its writes are invisible and unversioned
// until Commit.
type Tx struct {
	db  *DB
	ops []op
}

type op struct {
	t    *schemas.Table
	kind byte // 'I', 'U', 'D'
	row  []any
}

// Begin opens a transaction.
func (db *DB) Begin() *Tx { return &Tx{db: db} }

// Insert adds rows (raw values in the table's full column order).
func (tx *Tx) Insert(t *schemas.Table, rows ...[]any) {
	for _, r := range rows {
		tx.ops = append(tx.ops, op{t, 'I', r})
	}
}

// Update replaces rows by key.
func (tx *Tx) Update(t *schemas.Table, rows ...[]any) {
	for _, r := range rows {
		tx.ops = append(tx.ops, op{t, 'U', r})
	}
}

// Delete deletes rows by key (the key values of row are used).
func (tx *Tx) Delete(t *schemas.Table, rows ...[]any) {
	for _, r := range rows {
		tx.ops = append(tx.ops, op{t, 'D', r})
	}
}

// Commit applies the writes at a new version. A write that does not fit
// (an insert of an existing key, an update or delete of a missing one)
// fails the whole transaction.
func (tx *Tx) Commit() error {
	db := tx.db
	db.mu.Lock()
	defer db.mu.Unlock()
	v := db.version + 1
	type staged struct {
		tb  *table
		key string
		c   change
		row []any
	}
	// Validate against a copy of the affected keys' state first.
	state := map[string][]any{}
	var out []staged
	for _, o := range tx.ops {
		tb, ok := db.tables[name(o.t)]
		if !ok {
			return fmt.Errorf("ctmodel: no table %s", o.t.QualifiedName())
		}
		if len(o.row) != len(tb.def.Columns) {
			return fmt.Errorf("ctmodel: %d values for %d columns", len(o.row), len(tb.def.Columns))
		}
		k, keyRaw, err := tb.key(o.row)
		if err != nil {
			return err
		}
		sk := name(o.t) + "\x00" + k
		cur, seen := state[sk]
		if !seen {
			cur = tb.rows[k]
		}
		c := change{key: keyRaw, version: v}
		if old, ok := tb.track[k]; ok {
			c.created = old.created
		}
		var row []any
		switch o.kind {
		case 'I':
			if cur != nil {
				return fmt.Errorf("ctmodel: insert of existing key %s", k)
			}
			row, c.created = slices.Clone(o.row), v
		case 'U':
			if cur == nil {
				return fmt.Errorf("ctmodel: update of missing key %s", k)
			}
			row = slices.Clone(o.row)
		case 'D':
			if cur == nil {
				return fmt.Errorf("ctmodel: delete of missing key %s", k)
			}
			c.deleted = true
		}
		state[sk] = row
		out = append(out, staged{tb, k, c, row})
	}
	db.version = v
	for _, s := range out {
		if s.row == nil {
			delete(s.tb.rows, s.key)
		} else {
			s.tb.rows[s.key] = s.row
		}
		if s.tb.enabled {
			if old, ok := s.tb.track[s.key]; ok && s.c.created == 0 {
				s.c.created = old.created
			}
			c := s.c
			s.tb.track[s.key] = &c
		}
	}
	return nil
}

// Insert, Update and Delete run one write each in a transaction of its own.
func (db *DB) Insert(t *schemas.Table, rows ...[]any) error {
	tx := db.Begin()
	tx.Insert(t, rows...)
	return tx.Commit()
}

// Update replaces rows by key in one transaction.
func (db *DB) Update(t *schemas.Table, rows ...[]any) error {
	tx := db.Begin()
	tx.Update(t, rows...)
	return tx.Commit()
}

// Delete deletes rows by key in one transaction.
func (db *DB) Delete(t *schemas.Table, rows ...[]any) error {
	tx := db.Begin()
	tx.Delete(t, rows...)
	return tx.Commit()
}

// Bump commits an empty transaction elsewhere in the database: the
// current version moves, the table does not change.
func (db *DB) Bump() {
	db.mu.Lock()
	defer db.mu.Unlock()
	db.version++
}

func name(t *schemas.Table) string { return strings.ToLower(t.QualifiedName()) }

// key returns the key text and raw key values of a full row.
func (tb *table) key(row []any) (string, []any, error) {
	_, idx := tb.conv.KeyColumns()
	raw := make([]any, len(idx))
	parts := make([]string, len(idx))
	for i, j := range idx {
		n, err := tb.conv.Native(j, row[j])
		if err != nil {
			return "", nil, err
		}
		if n == nil {
			return "", nil, errors.New("ctmodel: null key value")
		}
		raw[i] = row[j]
		parts[i] = fmt.Sprintf("%T:%v", n, n)
	}
	return strings.Join(parts, "|"), raw, nil
}

// natives returns the native values of raw key values.
func (tb *table) natives(keyRaw []any) []any {
	_, idx := tb.conv.KeyColumns()
	out := make([]any, len(idx))
	for i, j := range idx {
		out[i], _ = tb.conv.Native(j, keyRaw[i])
	}
	return out
}

func (tb *table) sortedRowKeys() []string {
	keys := make([]string, 0, len(tb.rows))
	nat := map[string][]any{}
	for k, r := range tb.rows {
		keys = append(keys, k)
		_, raw, _ := tb.key(r)
		nat[k] = tb.natives(raw)
	}
	slices.SortFunc(keys, func(a, b string) int { return compareKeys(nat[a], nat[b]) })
	return keys
}

// compareKeys orders native keys as SQL Server does (uniqueidentifier by
// byte groups, last six bytes first; strings bytewise: no collation).
func compareKeys(a, b []any) int {
	for i := range a {
		if c := compareNative(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func compareNative(a, b any) int {
	switch x := a.(type) {
	case int64:
		return cmp.Compare(x, b.(int64))
	case string:
		return strings.Compare(x, b.(string))
	case bool:
		y := b.(bool)
		switch {
		case x == y:
			return 0
		case !x:
			return -1
		}
		return 1
	case uuid.UUID:
		y := b.(uuid.UUID)
		for _, g := range [][2]int{{10, 16}, {8, 10}, {6, 8}, {4, 6}, {0, 4}} {
			if c := bytes.Compare(x[g[0]:g[1]], y[g[0]:g[1]]); c != 0 {
				return c
			}
		}
		return 0
	case time.Time:
		return x.Compare(b.(time.Time))
	case []byte:
		return bytes.Compare(x, b.([]byte))
	}
	panic(fmt.Sprintf("ctmodel: cannot compare %T", a))
}

// CurrentVersion implements changetracking.Source.
func (db *DB) CurrentVersion(ctx context.Context) (int64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls = append(db.calls, "CurrentVersion")
	return db.version, db.enabled, nil
}

// MinValidVersion implements changetracking.Source: NULL (ok false) when
// tracking is off or VIEW CHANGE TRACKING is not granted, as on SQL Server.
func (db *DB) MinValidVersion(ctx context.Context, t *schemas.Table) (int64, bool, error) {
	if err := ctx.Err(); err != nil {
		return 0, false, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls = append(db.calls, "MinValidVersion")
	return db.minValidLocked(t)
}

func (db *DB) minValidLocked(t *schemas.Table) (int64, bool, error) {
	tb, ok := db.tables[name(t)]
	if !ok || !db.enabled || !tb.enabled || !tb.viewCT {
		return 0, false, nil
	}
	return tb.minValid, true, nil
}

// Changes implements changetracking.Source: CHANGETABLE(CHANGES t, From)
// LEFT JOIN t (with the practice filter in the join), version <= To, key >
// After, in key order, at most Limit rows; then the minimum valid version.
func (db *DB) Changes(ctx context.Context, q changetracking.Query) (changetracking.ChangeSet, error) {
	if err := ctx.Err(); err != nil {
		return changetracking.ChangeSet{}, err
	}
	if db.BeforeChanges != nil {
		db.BeforeChanges()
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls = append(db.calls, "Changes")
	tb, ok := db.tables[name(q.Table)]
	if !ok || !db.enabled || !tb.enabled {
		return changetracking.ChangeSet{}, fmt.Errorf("ctmodel: change tracking is not enabled on table %s", q.Table.QualifiedName())
	}
	if !tb.viewCT {
		return changetracking.ChangeSet{}, ErrPermission
	}
	if q.Limit <= 0 {
		return changetracking.ChangeSet{}, errors.New("ctmodel: limit is not positive")
	}
	var after []any
	if len(q.After) > 0 {
		after = make([]any, len(q.After))
		for i, v := range q.After {
			n, err := reader.Native(v)
			if err != nil {
				return changetracking.ChangeSet{}, err
			}
			after[i] = n
		}
	}
	// Map the projected columns onto the full row.
	full := tb.def
	idx := make([]int, len(q.Table.Columns))
	for i, c := range q.Table.Columns {
		idx[i] = -1
		for j, fc := range full.Columns {
			if strings.EqualFold(fc.Name, c.Name) {
				idx[i] = j
			}
		}
		if idx[i] < 0 {
			return changetracking.ChangeSet{}, fmt.Errorf("ctmodel: invalid column name %s", c.Name)
		}
	}
	practice := -1
	if full.Practice != "" && len(q.Practices) > 0 {
		for j, fc := range full.Columns {
			if strings.EqualFold(fc.Name, full.Practice) {
				practice = j
			}
		}
	}
	type hit struct {
		nat []any
		row []any
	}
	var hits []hit
	for k, c := range tb.track {
		if c.version <= q.From || c.version > q.To {
			continue
		}
		nat := tb.natives(c.key)
		if after != nil && compareKeys(nat, after) <= 0 {
			continue
		}
		cur := tb.rows[k]
		if cur != nil && practice >= 0 && !slices.Contains(q.Practices, fmt.Sprint(cur[practice])) {
			cur = nil // the practice filter is in the join: another practice's row reads as gone
		}
		var opText string
		switch {
		case c.deleted:
			opText = "D"
		case c.created > q.From:
			opText = "I"
		default:
			opText = "U"
		}
		out := []any{opText, c.version, cur != nil}
		_, keyIdx := tb.conv.KeyColumns()
		for _, j := range idx {
			var v any
			if ki := slices.Index(keyIdx, j); ki >= 0 {
				v = c.key[ki]
			} else if cur != nil {
				v = cur[j]
			}
			out = append(out, v)
		}
		hits = append(hits, hit{nat, out})
	}
	slices.SortFunc(hits, func(a, b hit) int { return compareKeys(a.nat, b.nat) })
	var cs changetracking.ChangeSet
	for i, h := range hits {
		if i == q.Limit {
			break
		}
		cs.Rows = append(cs.Rows, h.row)
	}
	var err error
	cs.MinValid, cs.MinValidOK, err = db.minValidLocked(q.Table)
	return cs, err
}

// Probe implements changetracking.Source.
func (db *DB) Probe(ctx context.Context, t *schemas.Table) (changetracking.Status, error) {
	if err := ctx.Err(); err != nil {
		return changetracking.Status{}, err
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls = append(db.calls, "Probe")
	st := changetracking.Status{
		Table: t.QualifiedName(), DatabaseEnabled: db.enabled, User: "ehrsync", Database: "NGProd",
	}
	if tb, ok := db.tables[name(t)]; ok {
		st.TableEnabled, st.ViewChangeTracking, st.Select = tb.enabled, tb.viewCT, true
	}
	return st, nil
}
