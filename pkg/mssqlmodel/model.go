package mssqlmodel

import (
	"errors"
	"fmt"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// Options configure a Model.
type Options struct {
	// Database is the database's name (DB_NAME()); default "NGProd".
	Database string
	// ServerZone is the server's local time zone: GETDATE(), the CDC
	// tables' and DMVs' datetime columns are wall clock times in it, with
	// no zone, as on SQL Server. Default UTC.
	ServerZone *time.Location
	// Now is the clock's start (an instant); default 2026-01-05T08:00:00Z.
	// The clock never reads the wall clock: it moves by SetNow and Advance.
	Now time.Time
	// SnapshotIsolation is ALLOW_SNAPSHOT_ISOLATION (sys.databases
	// snapshot_isolation_state 1).
	SnapshotIsolation bool
	// NoReadCommittedSnapshot reports is_read_committed_snapshot_on 0. The
	// model's readers behave as under READ_COMMITTED_SNAPSHOT either way:
	// they never block and never see uncommitted writes.
	NoReadCommittedSnapshot bool
	// AutoHarvest runs the CDC capture agent on every commit.
	AutoHarvest bool
	// DefaultRoles are the database roles of a login that AddLogin did not
	// create; default db_owner.
	DefaultRoles []string
	// ProductVersion and Edition answer SERVERPROPERTY; defaults are SQL
	// Server 2022's ("16.0.4135.4", "Developer Edition (64-bit)").
	ProductVersion, Edition string
	// FirstRowVersion is @@DBTS at creation; default 2000 (0x7D0).
	FirstRowVersion uint64
}

// Model is an in-process SQL Server database with SQL Server's semantics
// for the statements ehrsync sends (see Inventory). It is safe for
// concurrent use: Go transactions, the Go API and any number of sessions
// through Handler.
type Model struct {
	opts Options

	mu          sync.RWMutex
	db          *dbState // committed state
	dbts        uint64   // @@DBTS
	lsn         uint64   // the last LSN assigned (commits, seqvals, instance starts)
	open        map[*Tx]bool
	locks       map[string]*Tx // row locks of open transactions, by table and key
	pending     []*pendingTx   // committed, not yet harvested by the capture agent
	autoHarvest bool
	now         time.Time
	principals  map[string]*principal
	nextObject  int
	nextTx      int64
	scanSeq     int

	logMu sync.Mutex
	log   []Statement

	handlerOnce sync.Once
	handler     *Handler
}

// dbState is the committed database: what a statement reads. A SNAPSHOT
// transaction reads a deep copy taken at its first statement.
type dbState struct {
	tables     map[string]*tableState
	ctEnabled  bool
	ctVersion  int64
	cdcEnabled bool
	instances  []*cdcInstance
	lsnMap     []lsnMapping
	scans      []scanSession
	cdcErrors  []cdcError
	snapshot   bool
	rcsi       bool
}

type tableState struct {
	def  *tableDef
	rows map[string][]any // committed rows by key text
	ct   *ctState         // nil: change tracking off for the table
}

// tableDef is a table's definition (immutable once created; AddColumn
// replaces it).
type tableDef struct {
	schema, name string
	objectID     int
	cols         []columnDef
	key          []int // indexes of the primary key's columns, in key order
	rowversion   int   // index of the rowversion column, -1 for none
	computed     map[int]func(map[string]any) any
	created      time.Time
}

type columnDef struct {
	name     string
	typ      schemas.Type
	nullable bool
	computed bool
	id       int // column_id
}

// Computed declares a computed column: its value is Func of the row's
// other columns (by name, in handler.go's representation).
type Computed struct {
	Column string
	Func   func(row map[string]any) any
}

// Errors of the Go API.
var (
	ErrNoTable    = errors.New("mssqlmodel: no such table")
	ErrNoRow      = errors.New("mssqlmodel: no row with that key")
	ErrDuplicate  = errors.New("mssqlmodel: Violation of PRIMARY KEY constraint: cannot insert duplicate key")
	ErrWouldBlock = errors.New("mssqlmodel: the write would block: another open transaction holds the row")
	ErrTxDone     = errors.New("mssqlmodel: the transaction has ended")
)

// New returns an empty database.
func New(opts Options) *Model {
	if opts.Database == "" {
		opts.Database = "NGProd"
	}
	if opts.ServerZone == nil {
		opts.ServerZone = time.UTC
	}
	if opts.Now.IsZero() {
		opts.Now = time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	}
	if opts.DefaultRoles == nil {
		opts.DefaultRoles = []string{"db_owner"}
	}
	if opts.ProductVersion == "" {
		opts.ProductVersion = "16.0.4135.4"
	}
	if opts.Edition == "" {
		opts.Edition = "Developer Edition (64-bit)"
	}
	if opts.FirstRowVersion == 0 {
		opts.FirstRowVersion = 2000
	}
	m := &Model{
		opts: opts,
		db: &dbState{tables: map[string]*tableState{}, snapshot: opts.SnapshotIsolation,
			rcsi: !opts.NoReadCommittedSnapshot},
		dbts:        opts.FirstRowVersion,
		lsn:         99,
		open:        map[*Tx]bool{},
		locks:       map[string]*Tx{},
		autoHarvest: opts.AutoHarvest,
		now:         opts.Now,
		principals:  map[string]*principal{},
		nextObject:  245575913,
	}
	for _, r := range []string{"public", "db_owner", "db_datareader"} {
		m.principals[r] = &principal{name: r, role: true, member: map[string]bool{}, perms: map[permKey]bool{}}
	}
	return m
}

// Database returns the database's name.
func (m *Model) Database() string { return m.opts.Database }

func tableKey(schema, name string) string { return strings.ToLower(schema + "." + name) }

// splitName splits "schema.table" or "[schema].[table]" (a bare name is in
// dbo).
func splitName(name string) (string, string) {
	parts := splitObjectName(name)
	switch len(parts) {
	case 0:
		return "dbo", ""
	case 1:
		return "dbo", parts[0]
	}
	return parts[len(parts)-2], parts[len(parts)-1]
}

// splitObjectName splits a multi-part name as OBJECT_ID reads it:
// [bracketed] parts with ]] escapes, or bare parts split at dots.
func splitObjectName(s string) []string {
	var parts []string
	var cur strings.Builder
	s = strings.TrimSpace(s)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '[':
			j := i + 1
			for j < len(s) {
				if s[j] == ']' {
					if j+1 < len(s) && s[j+1] == ']' {
						cur.WriteByte(']')
						j += 2
						continue
					}
					break
				}
				cur.WriteByte(s[j])
				j++
			}
			i = j
		case c == '"':
			j := strings.IndexByte(s[i+1:], '"')
			if j < 0 {
				cur.WriteString(s[i+1:])
				i = len(s)
			} else {
				cur.WriteString(s[i+1 : i+1+j])
				i += j + 1
			}
		case c == '.':
			parts = append(parts, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(parts, cur.String())
}

func (m *Model) objectID() int {
	m.nextObject += 1000003
	return m.nextObject
}

// CreateTable creates a table from its definition (column types in the
// sqlserver dialect, a primary key; a rowversion column is filled in by
// the model) and its computed columns, which must be among t's columns.
func (m *Model) CreateTable(t *schemas.Table, computed ...Computed) error {
	if t.Dialect != "" && t.Dialect != schemas.SQLServer {
		return fmt.Errorf("mssqlmodel: table %s: column types must be in the sqlserver dialect", t.QualifiedName())
	}
	if len(t.Key) == 0 {
		return fmt.Errorf("mssqlmodel: table %s has no primary key", t.QualifiedName())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	k := tableKey(t.Schema, t.Name)
	if _, ok := m.db.tables[k]; ok {
		return fmt.Errorf("mssqlmodel: There is already an object named '%s' in the database", t.Name)
	}
	def := &tableDef{schema: t.Schema, name: t.Name, objectID: m.objectID(), rowversion: -1,
		computed: map[int]func(map[string]any) any{}, created: m.now}
	for i, c := range t.Columns {
		def.cols = append(def.cols, columnDef{name: c.Name, typ: c.Type, nullable: c.Nullable, id: i + 1})
		if c.Type.Name == "rowversion" {
			def.rowversion = i
		}
	}
	for _, c := range computed {
		i := def.column(c.Column)
		if i < 0 {
			return fmt.Errorf("mssqlmodel: table %s: computed column %s is not among its columns", t.QualifiedName(), c.Column)
		}
		def.cols[i].computed = true
		def.computed[i] = c.Func
	}
	for _, kc := range t.Key {
		i := def.column(kc)
		if i < 0 {
			return fmt.Errorf("mssqlmodel: table %s: key column %s is not among its columns", t.QualifiedName(), kc)
		}
		def.cols[i].nullable = false
		def.key = append(def.key, i)
	}
	m.db.tables[k] = &tableState{def: def, rows: map[string][]any{}}
	return nil
}

// AddColumn adds a nullable column (ALTER TABLE ADD): existing rows read
// NULL in it, and capture instances created before do not capture it.
func (m *Model) AddColumn(table string, c schemas.Column) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ts, err := m.tableLocked(table)
	if err != nil {
		return err
	}
	if ts.def.column(c.Name) >= 0 {
		return fmt.Errorf("mssqlmodel: Column names in each table must be unique. Column name '%s' in table '%s' is specified more than once", c.Name, ts.def.name)
	}
	def := *ts.def
	def.cols = append(slices.Clone(def.cols), columnDef{name: c.Name, typ: c.Type, nullable: true, id: len(def.cols) + 1})
	rows := make(map[string][]any, len(ts.rows))
	for k, r := range ts.rows {
		rows[k] = append(slices.Clone(r), nil)
	}
	ts.def, ts.rows = &def, rows
	return nil
}

func (d *tableDef) column(name string) int {
	return slices.IndexFunc(d.cols, func(c columnDef) bool { return strings.EqualFold(c.name, name) })
}

func (d *tableDef) qualified() string { return d.schema + "." + d.name }

func (m *Model) tableLocked(name string) (*tableState, error) {
	s, n := splitName(name)
	ts, ok := m.db.tables[tableKey(s, n)]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNoTable, name)
	}
	return ts, nil
}

// Rows returns the table's committed rows in key order (SQL Server's
// order), each column by name in handler.go's representation.
func (m *Model) Rows(table string) ([]map[string]any, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	ts, err := m.tableLocked(table)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	for _, r := range sortedRows(ts) {
		row := map[string]any{}
		for i, c := range ts.def.cols {
			row[c.name] = r[i]
		}
		out = append(out, row)
	}
	return out, nil
}

// sortedRows returns a table's committed rows in key order.
func sortedRows(ts *tableState) [][]any {
	rows := slices.Collect(maps.Values(ts.rows))
	slices.SortFunc(rows, func(a, b []any) int { return compareKey(ts.def, a, b) })
	return rows
}

// compareKey orders two full rows by the table's key, in SQL Server's order.
func compareKey(d *tableDef, a, b []any) int {
	for _, i := range d.key {
		c, err := compareValues(a[i], d.cols[i].typ, b[i], d.cols[i].typ)
		if err == nil && c != 0 {
			return c
		}
	}
	return 0
}

// keyText is the identity of a row's key: equal in the collation means the
// same key ("abc" and "ABC " are one key in a case-insensitive collation).
func keyText(d *tableDef, row []any) string {
	parts := make([]string, len(d.key))
	for j, i := range d.key {
		parts[j] = identity(row[i], d.cols[i].typ)
	}
	return strings.Join(parts, "\x00")
}

// identity renders a value so that values equal in SQL Server render alike.
func identity(v any, t schemas.Type) string {
	switch x := v.(type) {
	case string:
		if familyOf(t) == famDecimal {
			if r, ok := parseDecimal(x); ok {
				return r.RatString()
			}
		}
		k := collationKey(strings.TrimRight(x, " "))
		return fmt.Sprint(k.primary, k.secondary, k.marks)
	case float64, int64, bool:
		return fmt.Sprint(x)
	case []byte:
		return valueText(x)
	}
	return valueText(v)
}

// normalize turns a Go value given for a column into the column's value in
// handler.go's representation, as SQL Server stores an assigned value:
// datetime rounded to its tick, decimals rounded to the scale, char padded,
// varchar limited to code page 1252, integers range-checked.
func normalize(v any, c columnDef, table string) (any, error) {
	if v == nil {
		return nil, nil
	}
	t := c.typ
	if t.Name == "sql_variant" {
		// A variant keeps its base type: the value is normalized as that
		// type's.
		x, ok := v.(tdstest.Variant)
		if !ok {
			return nil, fmt.Errorf("mssqlmodel: %s.%s: a sql_variant value is a tdstest.Variant, not %T", table, c.name, v)
		}
		inner, err := normalize(x.Value, columnDef{name: c.name, typ: x.Type, nullable: true}, table)
		if err != nil || inner == nil {
			return nil, err
		}
		return tdstest.Variant{Type: x.Type, Value: inner}, nil
	}
	var from schemas.Type
	switch x := v.(type) {
	case int:
		v, from = int64(x), tBigint
	case int8:
		v, from = int64(x), tBigint
	case int16:
		v, from = int64(x), tBigint
	case int32:
		v, from = int64(x), tBigint
	case int64:
		from = tBigint
	case uint8:
		v, from = int64(x), tBigint
	case uint16:
		v, from = int64(x), tBigint
	case uint32:
		v, from = int64(x), tBigint
	case float32:
		v, from = float64(x), tFloat
	case float64:
		from = tFloat
	case bool:
		from = tBit
	case *big.Rat:
		v, from = x.FloatString(decimalScale(t)), schemas.Type{Name: "decimal", Precision: 38, Scale: decimalScale(t)}
	case string:
		from = nvarchar(-1)
		if familyOf(t) == famDecimal {
			from = varchar(-1)
		}
	case uuid.UUID:
		v, from = GUIDWire(x), tGUID
	case []byte:
		switch familyOf(t) {
		case famDecimal:
			v, from = string(x), varchar(-1) // go-mssqldb's driver value: decimal text bytes
		case famGUID:
			if len(x) != 16 {
				return nil, fmt.Errorf("mssqlmodel: %s.%s: a uniqueidentifier has 16 bytes, not %d", table, c.name, len(x))
			}
			from = tGUID
		default:
			from = varbinaryT(-1)
		}
	case time.Time:
		// A zone-less column keeps the value's wall clock.
		v, from = wallUTC(x), tDatetime2
		if t.Name == "datetimeoffset" {
			v, from = x, tDTO
		}
	default:
		return nil, fmt.Errorf("mssqlmodel: %s.%s: no conversion from %T", table, c.name, v)
	}
	if familyOf(t) == famString {
		if s, ok := v.(string); ok && t.Length > 0 && len([]rune(strings.TrimRight(s, " "))) > t.Length {
			return nil, fmt.Errorf("mssqlmodel: String or binary data would be truncated in table '%s', column '%s'", table, c.name)
		}
	}
	if familyOf(t) == famBinary && t.Name != "rowversion" {
		if b, ok := v.([]byte); ok && t.Length > 0 && len(b) > t.Length {
			return nil, fmt.Errorf("mssqlmodel: String or binary data would be truncated in table '%s', column '%s'", table, c.name)
		}
	}
	out, err := convert(v, from, t, false)
	if err != nil {
		return nil, fmt.Errorf("mssqlmodel: %s.%s: %w", table, c.name, err)
	}
	return out, nil
}

func decimalScale(t schemas.Type) int {
	_, s := decimalPS(t)
	return s
}

// DriverRow converts a row from handler.go's representation to the driver
// values go-mssqldb returns to database/sql (decimals as text bytes), the
// shape extractortest.Model's Rows wants.
func DriverRow(t *schemas.Table, row map[string]any) map[string]any {
	out := make(map[string]any, len(row))
	for k, v := range row {
		out[k] = v
		if c, ok := t.Column(k); ok && familyOf(c.Type) == famDecimal {
			if s, ok := v.(string); ok {
				out[k] = []byte(s)
			}
		}
	}
	return out
}

// Clock.

// Now returns the model's clock (an instant).
func (m *Model) Now() time.Time {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.now
}

// SetNow sets the clock.
func (m *Model) SetNow(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = t
}

// Advance moves the clock by d.
func (m *Model) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.now = m.now.Add(d)
}

// localNow is GETDATE(): the server's wall clock, zone-less.
func (m *Model) localNow() time.Time { return wallUTC(m.now.In(m.opts.ServerZone)) }

// SetSnapshotIsolation turns ALLOW_SNAPSHOT_ISOLATION on or off.
func (m *Model) SetSnapshotIsolation(on bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.db.snapshot = on
}

// clone deep-copies the committed state for a SNAPSHOT transaction.
func (s *dbState) clone() *dbState {
	c := *s
	c.tables = make(map[string]*tableState, len(s.tables))
	for k, t := range s.tables {
		nt := &tableState{def: t.def, rows: maps.Clone(t.rows)}
		if t.ct != nil {
			nt.ct = t.ct.clone()
		}
		c.tables[k] = nt
	}
	c.instances = make([]*cdcInstance, len(s.instances))
	for i, in := range s.instances {
		x := *in
		x.rows = slices.Clone(in.rows)
		x.cols = slices.Clone(in.cols)
		c.instances[i] = &x
	}
	c.lsnMap = slices.Clone(s.lsnMap)
	c.scans = slices.Clone(s.scans)
	c.cdcErrors = slices.Clone(s.cdcErrors)
	return &c
}
