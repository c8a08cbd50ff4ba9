package mssqlmodel

import (
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/ehrsync/ehrsync/schemas"
)

// FROM sources: user tables, the cdc schema's tables, catalog views and
// DMVs the model synthesises from its state, CHANGETABLE, derived tables
// and joins.

func (x *exec) source(src Source, outer *scope) (*relation, error) {
	switch s := src.(type) {
	case *TableSource:
		return x.tableSource(s)
	case *ChangeTableSource:
		return x.changeTableSource(s, outer)
	case *DerivedSource:
		if s.Alias == "" {
			return nil, sqlError(102, 15, "Incorrect syntax near ')'.")
		}
		p, err := x.prepareSelect(s.Select, nil)
		if err != nil {
			return nil, err
		}
		var cols []colMeta
		for _, it := range p.items {
			if it.name == "" {
				return nil, sqlError(8155, 16, "No column name was specified for column of '%s'.", s.Alias)
			}
			cols = append(cols, colMeta{qual: s.Alias, name: it.name, typ: it.typ, nullable: it.null})
		}
		return &relation{cols: cols, rows: x.cached(src, func() ([][]any, error) { return x.run(p, nil) })}, nil
	case *JoinSource:
		l, err := x.source(s.Left, outer)
		if err != nil {
			return nil, err
		}
		r, err := x.source(s.Right, outer)
		if err != nil {
			return nil, err
		}
		if s.Kind == "CROSS" {
			return crossJoin(l, r), nil
		}
		cols := slices.Clone(l.cols)
		for _, c := range r.cols {
			if s.Kind == "LEFT" {
				c.nullable = true // the outer join's NULL rows
			}
			cols = append(cols, c)
		}
		sc := &scope{cols: cols, parent: outer}
		if err := x.bindExpr(s.On, sc, false); err != nil {
			return nil, err
		}
		left := s.Kind == "LEFT"
		nr := len(r.cols)
		eq := x.equiJoin(s.On, cols, len(l.cols))
		return &relation{cols: cols, rows: func(oe *env) ([][]any, error) {
			lr, err := l.rows(oe)
			if err != nil {
				return nil, err
			}
			rr, err := r.rows(oe)
			if err != nil {
				return nil, err
			}
			candidates := func([]any) []int { return nil }
			if eq != nil {
				candidates = eq.index(rr)
			}
			var out [][]any
			for _, a := range lr {
				matched := false
				each := rr
				if eq != nil {
					idx := candidates(a)
					each = make([][]any, len(idx))
					for i, j := range idx {
						each[i] = rr[j]
					}
				}
				for _, b := range each {
					row := append(slices.Clone(a), b...)
					ok, err := x.truth(s.On, &env{row: row, parent: oe})
					if err != nil {
						return nil, err
					}
					if ok {
						matched = true
						out = append(out, row)
					}
				}
				if !matched && left {
					out = append(out, append(slices.Clone(a), make([]any, nr)...))
				}
			}
			return out, nil
		}}, nil
	}
	return nil, notModelled("FROM item %T", src)
}

// equi is a join's equality of a left column and a right column of a type
// whose equality is its Go value's (the integer family, uniqueidentifier):
// the join looks up the right rows with an equal value instead of testing
// every pair. The full ON condition is still evaluated on each candidate.
type equi struct{ l, r int } // column indexes in the left and the right row

// equiJoin finds such an equality among on's top-level AND terms, or nil.
func (x *exec) equiJoin(on Expr, cols []colMeta, nl int) *equi {
	var terms []Expr
	var walk func(e Expr)
	walk = func(e Expr) {
		if b, ok := e.(*Binary); ok && strings.EqualFold(b.Op, "AND") {
			walk(b.L)
			walk(b.R)
			return
		}
		terms = append(terms, e)
	}
	walk(on)
	exact := func(t schemas.Type) bool {
		switch t.Name {
		case "tinyint", "smallint", "int", "bigint", "uniqueidentifier":
			return true
		}
		return false
	}
	for _, e := range terms {
		b, ok := e.(*Binary)
		if !ok || b.Op != "=" {
			continue
		}
		lr, lok := b.L.(*ColumnRef)
		rr, rok := b.R.(*ColumnRef)
		if !lok || !rok {
			continue
		}
		bl, bok1 := x.binds[lr]
		br, bok2 := x.binds[rr]
		if !bok1 || !bok2 || bl.up != 0 || br.up != 0 {
			continue
		}
		i, j := bl.idx, br.idx
		if i >= nl {
			i, j = j, i
		}
		if i >= nl || j < nl || !exact(cols[i].typ) || !exact(cols[j].typ) ||
			(cols[i].typ.Name == "uniqueidentifier") != (cols[j].typ.Name == "uniqueidentifier") {
			continue
		}
		return &equi{l: i, r: j - nl}
	}
	return nil
}

// index maps the right rows by their join value and returns the lookup of
// a left row's candidates, in the right rows' order. NULL matches nothing.
func (e *equi) index(rows [][]any) func(left []any) []int {
	byValue := map[string][]int{}
	for i, r := range rows {
		if k, ok := equiKey(r[e.r]); ok {
			byValue[k] = append(byValue[k], i)
		}
	}
	return func(left []any) []int {
		k, ok := equiKey(left[e.l])
		if !ok {
			return nil
		}
		return byValue[k]
	}
}

func equiKey(v any) (string, bool) {
	switch x := v.(type) {
	case int64:
		return strconv.FormatInt(x, 10), true
	case []byte:
		return string(x), true
	}
	return "", false
}

// cached reads a source's rows once per statement.
func (x *exec) cached(src Source, read func() ([][]any, error)) func(*env) ([][]any, error) {
	return func(*env) ([][]any, error) {
		if rows, ok := x.cache[src]; ok {
			return rows, nil
		}
		rows, err := read()
		if err != nil {
			return nil, err
		}
		x.cache[src] = rows
		return rows, nil
	}
}

func fixed(rows [][]any) func(*env) ([][]any, error) {
	return func(*env) ([][]any, error) { return rows, nil }
}

func invalidObject(parts []string) error {
	return sqlError(208, 16, "Invalid object name '%s'.", strings.Join(parts, "."))
}

func (x *exec) tableSource(s *TableSource) (*relation, error) {
	for _, h := range s.Hints {
		switch h {
		case "READCOMMITTED", "NOLOCK", "READUNCOMMITTED", "READCOMMITTEDLOCK", "ROWLOCK", "PAGELOCK":
		default:
			return nil, notModelled("table hint %s", h)
		}
	}
	parts := s.Parts
	if len(parts) > 3 {
		return nil, invalidObject(parts)
	}
	if len(parts) == 3 && !strings.EqualFold(parts[0], x.m.opts.Database) {
		return nil, notModelled("object %s in another database", strings.Join(parts, "."))
	}
	schema, name := "dbo", parts[len(parts)-1]
	if len(parts) >= 2 && parts[len(parts)-2] != "" {
		schema = parts[len(parts)-2]
	}
	qual := name
	if s.Alias != "" {
		qual = s.Alias
	}
	setQual := func(cols []colMeta) []colMeta {
		for i := range cols {
			cols[i].qual, cols[i].schema = qual, schema
		}
		return cols
	}
	m, db := x.m, x.db
	if ts, ok := db.tables[tableKey(schema, name)]; ok {
		if !m.may(x.login, "SELECT", schema, name) {
			return nil, deniedSelect("SELECT", ts.def.name, m.opts.Database, ts.def.schema)
		}
		return &relation{cols: setQual(tableCols(ts.def, qual)), rows: x.cached(s, func() ([][]any, error) {
			return sortedRows(ts), nil
		})}, nil
	}
	lower := strings.ToLower(schema + "." + name)
	if strings.EqualFold(schema, "cdc") {
		if !db.cdcEnabled {
			return nil, invalidObject(parts)
		}
		var in *cdcInstance
		for _, i := range db.instances {
			if strings.EqualFold(i.name+"_CT", name) {
				in = i
			}
		}
		if _, meta := cdcMetaIDs[strings.ToLower(name)]; !meta && in == nil {
			return nil, invalidObject(parts)
		}
		if !m.may(x.login, "SELECT", "cdc", name) {
			return nil, deniedSelect("SELECT", name, m.opts.Database, "cdc")
		}
		if in != nil {
			// The gating role: a login outside it may not read the change
			// data (the model enforces it on the change table itself).
			if in.role != "" && !m.isOwner(x.login) && !m.isMember(x.login, in.role) {
				return nil, deniedSelect("SELECT", in.name+"_CT", m.opts.Database, "cdc")
			}
			return &relation{cols: setQual(in.columns(qual)), rows: x.cached(s, func() ([][]any, error) { return in.tableRows(), nil })}, nil
		}
	}
	if strings.HasPrefix(lower, "sys.dm_") && !m.may(x.login, "VIEW DATABASE STATE", "", "") {
		if _, ok := views[lower]; ok {
			return nil, sqlError(262, 14, "VIEW DATABASE STATE permission denied in database '%s'.", m.opts.Database)
		}
	}
	v, ok := views[lower]
	if !ok {
		if strings.EqualFold(schema, "sys") || strings.EqualFold(schema, "cdc") || strings.EqualFold(schema, "INFORMATION_SCHEMA") {
			return nil, notModelled("system object %s", strings.Join(parts, "."))
		}
		return nil, invalidObject(parts)
	}
	cols, rows := v(x)
	out := make([]colMeta, len(cols))
	for i, c := range cols {
		out[i] = colMeta{name: c.name, typ: c.typ, nullable: true}
	}
	return &relation{cols: setQual(out), rows: fixed(rows)}, nil
}

func tableCols(d *tableDef, qual string) []colMeta {
	cols := make([]colMeta, len(d.cols))
	for i, c := range d.cols {
		cols[i] = colMeta{qual: qual, schema: d.schema, name: c.name, typ: c.typ, nullable: c.nullable || c.computed}
	}
	return cols
}

// columns are the change table's columns.
func (in *cdcInstance) columns(qual string) []colMeta {
	cols := []colMeta{
		{qual: qual, schema: "cdc", name: "__$start_lsn", typ: tLSN},
		{qual: qual, schema: "cdc", name: "__$end_lsn", typ: tLSN, nullable: true},
		{qual: qual, schema: "cdc", name: "__$seqval", typ: tLSN},
		{qual: qual, schema: "cdc", name: "__$operation", typ: tInt},
		{qual: qual, schema: "cdc", name: "__$update_mask", typ: varbinaryT(128), nullable: true},
	}
	for _, c := range in.cols {
		i := in.def.column(c)
		cols = append(cols, colMeta{qual: qual, schema: "cdc", name: in.def.cols[i].name, typ: in.def.cols[i].typ, nullable: true})
	}
	if in.commandID {
		cols = append(cols, colMeta{qual: qual, schema: "cdc", name: "__$command_id", typ: tInt, nullable: true})
	}
	return cols
}

func (in *cdcInstance) tableRows() [][]any {
	out := make([][]any, 0, len(in.rows))
	for _, r := range in.rows {
		row := []any{LSN(r.start), nil, LSN(r.seqval), r.op, r.mask}
		row = append(row, r.vals...)
		if in.commandID {
			row = append(row, int64(r.cmd))
		}
		out = append(out, row)
	}
	return out
}

func (x *exec) changeTableSource(s *ChangeTableSource, outer *scope) (*relation, error) {
	if s.Alias == "" {
		return nil, sqlError(22104, 16, "A table returned by the CHANGETABLE function must be aliased.")
	}
	switch s.Version.(type) {
	case *VarRef, *Literal:
	default:
		return nil, sqlError(102, 15, "Incorrect syntax near '('.")
	}
	parts := s.Table
	schema, name := "dbo", parts[len(parts)-1]
	if len(parts) >= 2 {
		schema = parts[len(parts)-2]
	}
	m, db := x.m, x.db
	ts, ok := db.tables[tableKey(schema, name)]
	if !ok {
		return nil, invalidObject(parts)
	}
	if !m.may(x.login, "SELECT", schema, name) {
		return nil, deniedSelect("SELECT", ts.def.name, m.opts.Database, ts.def.schema)
	}
	if ts.ct == nil || !db.ctEnabled {
		return nil, sqlError(22105, 16, "Change tracking is not enabled on table '%s'.", strings.Join(parts, "."))
	}
	if !m.may(x.login, "VIEW CHANGE TRACKING", schema, name) {
		return nil, deniedSelect("VIEW CHANGE TRACKING", ts.def.name, m.opts.Database, ts.def.schema)
	}
	if err := x.bindExpr(s.Version, outer, false); err != nil {
		return nil, err
	}
	cols := []colMeta{
		{name: "SYS_CHANGE_VERSION", typ: tBigint, nullable: true},
		{name: "SYS_CHANGE_CREATION_VERSION", typ: tBigint, nullable: true},
		{name: "SYS_CHANGE_OPERATION", typ: nchar(1), nullable: true},
		{name: "SYS_CHANGE_COLUMNS", typ: varbinaryT(4100), nullable: true},
		{name: "SYS_CHANGE_CONTEXT", typ: varbinaryT(128), nullable: true},
	}
	for _, k := range ts.def.key {
		c := ts.def.cols[k]
		cols = append(cols, colMeta{name: c.name, typ: c.typ})
	}
	for i := range cols {
		cols[i].qual = s.Alias
	}
	return &relation{cols: cols, rows: x.cached(s, func() ([][]any, error) {
		v, err := x.eval(s.Version, nil)
		if err != nil {
			return nil, err
		}
		var from *int64
		if v != nil {
			n, err := convert(v, x.types[s.Version], tBigint, false)
			if err != nil {
				return nil, err
			}
			f := n.(int64)
			from = &f
		}
		chs := ts.ct.changes(from, db.ctVersion)
		var out [][]any
		for _, ch := range chs {
			var created any
			if ch.created != 0 {
				created = ch.created
			}
			row := []any{ch.version, created, ch.op, nil, nil}
			out = append(out, append(row, ch.key...))
		}
		sort.SliceStable(out, func(i, j int) bool {
			for k := range ts.def.key {
				t := cols[5+k].typ
				c, err := compareValues(out[i][5+k], t, out[j][5+k], t)
				if err == nil && c != 0 {
					return c < 0
				}
			}
			return false
		})
		return out, nil
	})}, nil
}

// Catalog views and DMVs.

type viewCol struct {
	name string
	typ  schemas.Type
}

var views = map[string]func(x *exec) ([]viewCol, [][]any){
	"sys.tables":                    (*exec).sysTables,
	"sys.schemas":                   (*exec).sysSchemas,
	"sys.columns":                   (*exec).sysColumns,
	"sys.indexes":                   (*exec).sysIndexes,
	"sys.index_columns":             (*exec).sysIndexColumns,
	"sys.partitions":                (*exec).sysPartitions,
	"sys.databases":                 (*exec).sysDatabases,
	"sys.change_tracking_tables":    (*exec).sysCTTables,
	"sys.change_tracking_databases": (*exec).sysCTDatabases,
	"cdc.change_tables":             (*exec).cdcChangeTables,
	"cdc.captured_columns":          (*exec).cdcCapturedColumns,
	"cdc.lsn_time_mapping":          (*exec).cdcLSNTimeMapping,
	"sys.dm_cdc_log_scan_sessions":  (*exec).dmLogScanSessions,
	"sys.dm_cdc_errors":             (*exec).dmCDCErrors,
}

// visibleTables lists the user tables the login can see, by object id.
func (x *exec) visibleTables() []*tableState {
	var out []*tableState
	for _, ts := range x.db.tables {
		if x.m.visible(x.login, ts.def.schema, ts.def.name) {
			out = append(out, ts)
		}
	}
	slices.SortFunc(out, func(a, b *tableState) int { return a.def.objectID - b.def.objectID })
	return out
}

type schemaRow struct {
	name string
	id   int
}

func (x *exec) schemas() []schemaRow {
	out := []schemaRow{{"dbo", 1}, {"guest", 2}, {"INFORMATION_SCHEMA", 3}, {"sys", 4}}
	if x.db.cdcEnabled {
		out = append(out, schemaRow{"cdc", 5})
	}
	var user []string
	for _, ts := range x.db.tables {
		s := ts.def.schema
		if !slices.ContainsFunc(out, func(r schemaRow) bool { return strings.EqualFold(r.name, s) }) &&
			!slices.ContainsFunc(user, func(u string) bool { return strings.EqualFold(u, s) }) {
			user = append(user, s)
		}
	}
	slices.Sort(user)
	for i, s := range user {
		out = append(out, schemaRow{s, 6 + i})
	}
	return out
}

func (x *exec) schemaID(name string) int {
	for _, s := range x.schemas() {
		if strings.EqualFold(s.name, name) {
			return s.id
		}
	}
	return 0
}

func (x *exec) sysTables() ([]viewCol, [][]any) {
	cols := []viewCol{{"object_id", tInt}, {"name", tSysname}, {"schema_id", tInt}, {"type", schemas.Type{Name: "char", Length: 2}},
		{"type_desc", nvarchar(60)}, {"create_date", tDatetime}, {"modify_date", tDatetime}, {"is_ms_shipped", tBit},
		{"is_tracked_by_cdc", tBit}}
	var rows [][]any
	for _, ts := range x.visibleTables() {
		cdc := slices.ContainsFunc(x.db.instances, func(in *cdcInstance) bool { return in.table == ts.def.objectID })
		created := roundDatetime(x.m.local(ts.def.created))
		rows = append(rows, []any{int64(ts.def.objectID), ts.def.name, int64(x.schemaID(ts.def.schema)), "U ", "USER_TABLE",
			created, created, false, cdc})
	}
	return cols, rows
}

func (x *exec) sysSchemas() ([]viewCol, [][]any) {
	cols := []viewCol{{"name", tSysname}, {"schema_id", tInt}, {"principal_id", tInt}}
	var rows [][]any
	for _, s := range x.schemas() {
		rows = append(rows, []any{s.name, int64(s.id), int64(1)})
	}
	return cols, rows
}

// systemTypeIDs are sys.types' ids of the base types.
var systemTypeIDs = map[string]int64{
	"image": 34, "text": 35, "uniqueidentifier": 36, "date": 40, "time": 41, "datetime2": 42, "datetimeoffset": 43,
	"tinyint": 48, "smallint": 52, "int": 56, "smalldatetime": 58, "real": 59, "money": 60, "datetime": 61,
	"float": 62, "sql_variant": 98, "ntext": 99, "bit": 104, "decimal": 106, "numeric": 108, "smallmoney": 122,
	"bigint": 127, "varbinary": 165, "varchar": 167, "binary": 173, "char": 175, "rowversion": 189,
	"nvarchar": 231, "nchar": 239, "xml": 241,
}

// ColumnFacts is what sys.columns says of a column of type t: its system
// type id, max_length (bytes; -1 for max), precision and scale.
func ColumnFacts(t schemas.Type) (id, maxLength, precision, scale int64) {
	switch familyOf(t) {
	case famDecimal:
		p, s := decimalPS(t)
		precision, scale = int64(p), int64(s)
	case famInt:
		precision = map[string]int64{"tinyint": 3, "smallint": 5, "int": 10, "bigint": 19}[t.Name]
	case famDateTime, famTime, famDTO:
		scale = int64(fraction(t))
		if t.Name == "datetime" {
			precision, scale = 23, 3
		}
	}
	return systemTypeIDs[t.Name], int64(colBytes(t)), precision, scale
}

func (x *exec) sysColumns() ([]viewCol, [][]any) {
	cols := []viewCol{{"object_id", tInt}, {"name", tSysname}, {"column_id", tInt}, {"system_type_id", tTinyint},
		{"user_type_id", tInt}, {"max_length", tSmallint}, {"precision", tTinyint}, {"scale", tTinyint},
		{"collation_name", tSysname}, {"is_nullable", tBit}, {"is_identity", tBit}, {"is_computed", tBit}}
	var rows [][]any
	for _, ts := range x.visibleTables() {
		for _, c := range ts.def.cols {
			var coll any
			if familyOf(c.typ) == famString {
				coll = "SQL_Latin1_General_CP1_CI_AS"
			}
			id, length, p, s := ColumnFacts(c.typ)
			rows = append(rows, []any{int64(ts.def.objectID), c.name, int64(c.id), id, id, length, p, s,
				coll, c.nullable, false, c.computed})
		}
	}
	return cols, rows
}

func (x *exec) sysIndexes() ([]viewCol, [][]any) {
	cols := []viewCol{{"object_id", tInt}, {"name", tSysname}, {"index_id", tInt}, {"type", tTinyint},
		{"type_desc", nvarchar(60)}, {"is_unique", tBit}, {"is_primary_key", tBit}, {"is_unique_constraint", tBit}}
	var rows [][]any
	for _, ts := range x.visibleTables() {
		rows = append(rows, []any{int64(ts.def.objectID), "PK_" + ts.def.name, int64(1), int64(1), "CLUSTERED", true, true, false})
	}
	return cols, rows
}

func (x *exec) sysIndexColumns() ([]viewCol, [][]any) {
	cols := []viewCol{{"object_id", tInt}, {"index_id", tInt}, {"index_column_id", tInt}, {"column_id", tInt},
		{"key_ordinal", tTinyint}, {"partition_ordinal", tTinyint}, {"is_descending_key", tBit}, {"is_included_column", tBit}}
	var rows [][]any
	for _, ts := range x.visibleTables() {
		for j, i := range ts.def.key {
			rows = append(rows, []any{int64(ts.def.objectID), int64(1), int64(j + 1), int64(ts.def.cols[i].id), int64(j + 1),
				int64(0), false, false})
		}
	}
	return cols, rows
}

// sysPartitions has one partition per user table, of its clustered index
// (index 1, the primary key), whose rows are the table's committed rows
// (SQL Server's count is approximate and may include uncommitted ones).
func (x *exec) sysPartitions() ([]viewCol, [][]any) {
	cols := []viewCol{{"partition_id", tBigint}, {"object_id", tInt}, {"index_id", tInt}, {"partition_number", tInt},
		{"hobt_id", tBigint}, {"rows", tBigint}, {"data_compression", tTinyint}, {"data_compression_desc", nvarchar(60)}}
	var rows [][]any
	for _, ts := range x.visibleTables() {
		id := int64(ts.def.objectID)<<16 | 1
		rows = append(rows, []any{id, int64(ts.def.objectID), int64(1), int64(1), id, int64(len(ts.rows)), int64(0), "NONE"})
	}
	return cols, rows
}

type dbRow struct {
	name string
	id   int
}

func (x *exec) databases() []dbRow {
	return []dbRow{{"master", 1}, {"tempdb", 2}, {"model", 3}, {"msdb", 4}, {x.m.opts.Database, 5}}
}

func (x *exec) sysDatabases() ([]viewCol, [][]any) {
	cols := []viewCol{{"name", tSysname}, {"database_id", tInt}, {"compatibility_level", tTinyint}, {"collation_name", tSysname},
		{"state_desc", nvarchar(60)}, {"snapshot_isolation_state", tTinyint}, {"snapshot_isolation_state_desc", nvarchar(60)},
		{"is_read_committed_snapshot_on", tBit}, {"is_cdc_enabled", tBit}}
	var rows [][]any
	for _, d := range x.databases() {
		snap, rcsi, cdc := int64(0), false, false
		if d.id == 5 {
			rcsi, cdc = x.db.rcsi, x.db.cdcEnabled
			if x.db.snapshot {
				snap = 1
			}
		}
		if d.name == "tempdb" || d.name == "master" || d.name == "msdb" {
			snap = 1
		}
		desc := map[int64]string{0: "OFF", 1: "ON"}[snap]
		rows = append(rows, []any{d.name, int64(d.id), int64(160), "SQL_Latin1_General_CP1_CI_AS", "ONLINE", snap, desc, rcsi, cdc})
	}
	return cols, rows
}

func (x *exec) sysCTTables() ([]viewCol, [][]any) {
	cols := []viewCol{{"object_id", tInt}, {"is_track_columns_updated_on", tBit}, {"min_valid_version", tBigint},
		{"begin_version", tBigint}, {"cleanup_version", tBigint}}
	var rows [][]any
	if !x.db.ctEnabled {
		return cols, rows
	}
	for _, ts := range x.visibleTables() {
		if ts.ct != nil {
			rows = append(rows, []any{int64(ts.def.objectID), false, ts.ct.minValid, ts.ct.begin, ts.ct.minValid})
		}
	}
	return cols, rows
}

func (x *exec) sysCTDatabases() ([]viewCol, [][]any) {
	cols := []viewCol{{"database_id", tInt}, {"is_auto_cleanup_on", tBit}, {"retention_period", tInt},
		{"retention_period_units", tTinyint}, {"retention_period_units_desc", nvarchar(60)}}
	var rows [][]any
	if x.db.ctEnabled {
		rows = append(rows, []any{int64(5), true, int64(2), int64(3), "DAYS"})
	}
	return cols, rows
}

func (x *exec) cdcChangeTables() ([]viewCol, [][]any) {
	cols := []viewCol{{"object_id", tInt}, {"version", tInt}, {"source_object_id", tInt}, {"capture_instance", tSysname},
		{"start_lsn", tLSN}, {"end_lsn", tLSN}, {"supports_net_changes", tBit}, {"has_drop_pending", tBit},
		{"role_name", tSysname}, {"index_name", tSysname}, {"filegroup_name", tSysname}, {"create_date", tDatetime},
		{"partition_switch", tBit}}
	var rows [][]any
	for _, in := range x.db.instances {
		var role any
		if in.role != "" {
			role = in.role
		}
		rows = append(rows, []any{int64(in.objectID), int64(0), int64(in.table), in.name, LSN(in.start), nil, true, nil,
			role, "PK_" + in.def.name, nil, roundDatetime(in.created), false})
	}
	return cols, rows
}

func (x *exec) cdcCapturedColumns() ([]viewCol, [][]any) {
	cols := []viewCol{{"object_id", tInt}, {"column_name", tSysname}, {"column_id", tInt}, {"column_type", tSysname},
		{"column_ordinal", tInt}, {"is_computed", tBit}, {"masking_function", nvarchar(4000)}}
	var rows [][]any
	for _, in := range x.db.instances {
		for j, c := range in.cols {
			i := in.def.column(c)
			col := in.def.cols[i]
			rows = append(rows, []any{int64(in.objectID), col.name, int64(col.id), col.typ.Name, int64(j + 1), col.computed, nil})
		}
	}
	return cols, rows
}

func (x *exec) cdcLSNTimeMapping() ([]viewCol, [][]any) {
	cols := []viewCol{{"start_lsn", tLSN}, {"tran_begin_time", tDatetime}, {"tran_end_time", tDatetime},
		{"tran_id", varbinaryT(10)}, {"tran_begin_lsn", tLSN}}
	var rows [][]any
	for _, r := range x.db.lsnMap {
		rows = append(rows, []any{LSN(r.start), roundDatetime(r.begin), roundDatetime(r.end), r.tranID, LSN(r.beginLSN)})
	}
	return cols, rows
}

func (x *exec) dmLogScanSessions() ([]viewCol, [][]any) {
	lsn := nvarchar(23)
	cols := []viewCol{{"session_id", tInt}, {"start_time", tDatetime}, {"end_time", tDatetime}, {"duration", tInt},
		{"scan_phase", nvarchar(200)}, {"error_count", tInt}, {"start_lsn", lsn}, {"current_lsn", lsn}, {"end_lsn", lsn},
		{"tran_count", tBigint}, {"last_commit_lsn", lsn}, {"last_commit_time", tDatetime}, {"log_record_count", tInt},
		{"schema_change_count", tInt}, {"command_count", tBigint}, {"first_begin_cdc_lsn", lsn},
		{"last_commit_cdc_lsn", lsn}, {"last_commit_cdc_time", tDatetime}, {"latency", tInt},
		{"empty_scan_count", tInt}, {"failed_sessions_count", tInt}}
	scans := x.db.scans
	if len(scans) == 0 {
		return cols, nil
	}
	row := func(id int, start, end time.Time, s scanSession, trans, cmds, empty, errs int64) []any {
		var lc, lct any
		if s.lastCommit != 0 {
			lc, lct = lsnText(s.lastCommit), roundDatetime(s.lastCommitTime)
		}
		var fb any
		if s.firstBegin != 0 {
			fb = lsnText(s.firstBegin)
		}
		return []any{int64(id), roundDatetime(start), roundDatetime(end), int64(end.Sub(start) / time.Second), "Done",
			errs, fb, lc, lc, trans, lc, lct, cmds, int64(0), cmds, fb, lc, lct, int64(0), empty, int64(0)}
	}
	var rows [][]any
	var trans, cmds, empty, errs int64
	for _, s := range scans {
		trans += int64(s.tranCount)
		cmds += int64(s.commands)
		if s.empty {
			empty++
		}
		errs += int64(s.errorCount)
	}
	last := scans[len(scans)-1]
	// Session 0 aggregates every session since the instance started.
	rows = append(rows, row(0, scans[0].start, last.end, last, trans, cmds, empty, errs))
	for _, s := range scans {
		e := int64(0)
		if s.empty {
			e = 1
		}
		rows = append(rows, row(s.id, s.start, s.end, s, int64(s.tranCount), int64(s.commands), e, int64(s.errorCount)))
	}
	return cols, rows
}

func (x *exec) dmCDCErrors() ([]viewCol, [][]any) {
	lsn := nvarchar(23)
	cols := []viewCol{{"session_id", tInt}, {"phase_number", tInt}, {"entry_time", tDatetime}, {"error_number", tInt},
		{"error_severity", tInt}, {"error_state", tInt}, {"error_message", nvarchar(256)}, {"start_lsn", lsn},
		{"begin_lsn", lsn}, {"sequence_value", lsn}}
	var rows [][]any
	for _, e := range x.db.cdcErrors {
		rows = append(rows, []any{int64(e.session), int64(1), roundDatetime(e.entry), int64(e.number), int64(e.severity),
			int64(e.state), e.message, nil, nil, nil})
	}
	return cols, rows
}
