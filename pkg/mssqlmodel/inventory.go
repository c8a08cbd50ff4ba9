package mssqlmodel

import (
	"slices"
	"sort"
	"strings"
)

// Shape is one kind of statement ehrsync sends to SQL Server: how the
// model recognises it (from its parse tree: what it reads and calls, never
// its exact text, so that a reworded query still matches) and what answers
// it. Every shape is answered by the same evaluator; Reads says over which
// of the model's data.
type Shape struct {
	Name  string // a short name, as Statements reports it
	From  string // where ehrsync sends it
	Reads string // what answers it
	match func(f *facts) bool
}

// Inventory lists every statement shape the model answers, most specific
// first. A statement matching none fails with a Go error that names its
// shape (a loud test failure through tdstest), never with a SQL Server
// error.
var Inventory = []Shape{
	{Name: "ping", From: "pkg/check (query step: SELECT 1); go-mssqldb Ping (select 1;)",
		Reads: "a constant",
		match: func(f *facts) bool { return f.noSources() && len(f.funcs) == 0 && f.constantOnly }},
	{Name: "rowversion bound", From: "extractors/internal/dialect RowVersionBound (hwm)",
		Reads: "MIN_ACTIVE_ROWVERSION(): the lowest rowversion an open transaction took, or @@DBTS + 1",
		match: func(f *facts) bool { return f.noSources() && f.calls("min_active_rowversion") }},
	{Name: "CT current version", From: "extractors/changetracking currentVersionQuery",
		Reads: "CHANGE_TRACKING_CURRENT_VERSION() (NULL while change tracking is off for the database)",
		match: func(f *facts) bool { return f.noSources() && f.onlyCalls("change_tracking_current_version") }},
	{Name: "CT minimum valid version", From: "extractors/changetracking minValidQuery",
		Reads: "CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1)): the table's minimum valid version, raised by cleanup and TRUNCATE",
		match: func(f *facts) bool { return f.noSources() && f.calls("change_tracking_min_valid_version") }},
	{Name: "CDC minimum LSN", From: "extractors/cdc minLSNSQL",
		Reads: "sys.fn_cdc_get_min_lsn(@p1): the capture instance's start LSN (zero when unknown or not readable)",
		match: func(f *facts) bool { return f.noSources() && f.calls("sys.fn_cdc_get_min_lsn") }},
	{Name: "CDC maximum LSN (function)", From: "extractors/cdc (SELECT sys.fn_cdc_get_max_lsn(), replacing maxLSNSQL)",
		Reads: "sys.fn_cdc_get_max_lsn(): the highest harvested LSN",
		match: func(f *facts) bool { return f.noSources() && f.calls("sys.fn_cdc_get_max_lsn") }},
	{Name: "CDC maximum LSN", From: "extractors/cdc maxLSNSQL",
		Reads: "MAX(start_lsn) over cdc.lsn_time_mapping: one row per harvested transaction",
		match: func(f *facts) bool { return f.readsOnly("cdc.lsn_time_mapping") }},
	{Name: "CDC capture instances", From: "extractors/cdc instancesSQL (cdc source, planner)",
		Reads: "cdc.change_tables joined to sys.tables, sys.schemas and cdc.captured_columns",
		match: func(f *facts) bool { return f.reads("cdc.change_tables") && f.reads("cdc.captured_columns") }},
	{Name: "CDC gating role", From: "pkg/check tables.go permissions",
		Reads: "cdc.change_tables' role_name of the table's newest instance",
		match: func(f *facts) bool { return f.readsOnly("cdc.change_tables") }},
	{Name: "CDC readable probe", From: "extractors/cdc CheckReadable (planner)",
		Reads: "SELECT TOP (0) * from the change table: the columns, or error 229 without SELECT on cdc or the gating role",
		match: func(f *facts) bool { return f.changeTable && f.star && f.top0 }},
	{Name: "CDC changes chunk", From: "extractors/cdc changesSQL",
		Reads: "the capture instance's change table cdc.<instance>_CT: harvested change rows (207 for a missing __$command_id)",
		match: func(f *facts) bool { return f.changeTable && len(f.user) == 0 }},
	{Name: "CDC capture agent health", From: "extractors/cdc agentSQL; pkg/check captureAgent",
		Reads: "sys.dm_cdc_log_scan_sessions and sys.dm_cdc_errors (262 without VIEW DATABASE STATE), GETDATE()",
		match: func(f *facts) bool {
			return f.reads("sys.dm_cdc_log_scan_sessions") || f.reads("sys.dm_cdc_errors")
		}},
	{Name: "CDC __$command_id probe", From: "extractors/cdc (COL_LENGTH probe, planned)",
		Reads: "COL_LENGTH('[cdc].[<instance>_CT]', '__$command_id'): 4, or NULL when the change table lacks it",
		match: func(f *facts) bool { return f.noSources() && f.calls("col_length") }},
	{Name: "CDC computed columns", From: "extractors/cdc computedSQL (planner: computed columns are left out of CDC reads)",
		Reads: "sys.columns.is_computed of OBJECT_ID(@p1)",
		match: func(f *facts) bool { return f.readsOnly("sys.columns") && f.cols["is_computed"] }},
	{Name: "source columns", From: "extractors/planner sqlServerColumnsQuery (each table's run: schema drift; check)",
		Reads: "sys.columns' names, base types and sizes of OBJECT_ID(@p1)",
		match: func(f *facts) bool { return f.readsOnly("sys.columns") && f.cols["system_type_id"] }},
	{Name: "CT changes chunk", From: "extractors/changetracking changesQuery (in a SNAPSHOT transaction where allowed)",
		Reads: "CHANGETABLE(CHANGES t, @v) (net operations per key) LEFT JOIN the table's committed rows",
		match: func(f *facts) bool { return f.changetable }},
	{Name: "CT probe", From: "extractors/changetracking probeQuery (planner)",
		Reads: "sys.databases, sys.change_tracking_tables, HAS_PERMS_BY_NAME, USER_NAME(), DB_NAME()",
		match: func(f *facts) bool { return f.reads("sys.databases") && f.calls("has_perms_by_name") }},
	{Name: "snapshot isolation state", From: "extractors/changetracking snapshotIsolationQuery",
		Reads: "sys.databases.snapshot_isolation_state of DB_ID()",
		match: func(f *facts) bool { return f.readsOnly("sys.databases") && f.cols["snapshot_isolation_state"] }},
	{Name: "read committed snapshot state", From: "extractors/extractortest SQLServer",
		Reads: "sys.databases.is_read_committed_snapshot_on of DB_ID()",
		match: func(f *facts) bool { return f.readsOnly("sys.databases") && f.cols["is_read_committed_snapshot_on"] }},
	{Name: "row estimate", From: "pkg/source EstimateRows (the progress line's estimate)",
		Reads: "SUM(rows) of sys.partitions of OBJECT_ID(@p1), heap or clustered index: the table's committed rows; NULL when the login cannot see it",
		match: func(f *facts) bool { return f.readsOnly("sys.partitions") }},
	{Name: "check: primary key", From: "pkg/check tables.go",
		Reads: "sys.indexes, sys.index_columns, sys.columns of OBJECT_ID(@p1)",
		match: func(f *facts) bool { return f.reads("sys.indexes") }},
	{Name: "check: CDC and CT status", From: "pkg/check tables.go",
		Reads: "sys.tables.is_tracked_by_cdc and sys.change_tracking_tables",
		match: func(f *facts) bool { return f.reads("sys.tables") && f.cols["is_tracked_by_cdc"] }},
	{Name: "check: table exists", From: "pkg/check tables.go",
		Reads: "OBJECT_ID(@p1, 'U'): NULL when the table is missing or the login cannot see it",
		match: func(f *facts) bool { return f.noSources() && f.calls("object_id") }},
	{Name: "check: permission", From: "pkg/check tables.go permissions",
		Reads: "HAS_PERMS_BY_NAME(securable, 'OBJECT' | 'SCHEMA', permission) from the login's grants and roles",
		match: func(f *facts) bool { return f.noSources() && f.calls("has_perms_by_name") }},
	{Name: "check: role membership", From: "pkg/check tables.go permissions",
		Reads: "IS_ROLEMEMBER(@p1): the login's membership of the gating role",
		match: func(f *facts) bool { return f.noSources() && f.calls("is_rolemember") }},
	{Name: "check: database name", From: "pkg/check check.go",
		Reads: "DB_NAME()",
		match: func(f *facts) bool { return f.noSources() && f.onlyCalls("db_name") }},
	{Name: "check: server version", From: "pkg/check check.go version",
		Reads: "SERVERPROPERTY('ProductVersion' | 'Edition' | ...), @@VERSION",
		match: func(f *facts) bool { return f.noSources() && (f.calls("serverproperty") || f.calls("@@version")) }},
	{Name: "cursor maximum", From: "extractors/internal/dialect Max (hwm timestamp cursor)",
		Reads: "MAX(column) over the user table's committed rows",
		match: func(f *facts) bool { return len(f.user) == 1 && len(f.system) == 0 && f.aggregate && !f.top }},
	{Name: "chunk read", From: "extractors/internal/dialect Build (snapshot, hwm, reader: keyset and high-water-mark chunks)",
		Reads: "the user table's committed rows: filter, order in SQL Server's order, TOP",
		match: func(f *facts) bool { return len(f.user) == 1 && len(f.system) == 0 && f.top && !f.aggregate }},
}

// facts are what a batch reads and calls, from its parse tree.
type facts struct {
	declares     int
	selects      int
	user         []string        // user tables read ("dbo.claim_lines")
	system       []string        // sys. and cdc. objects read
	changeTable  bool            // a cdc.<instance>_CT change table
	changetable  bool            // CHANGETABLE(CHANGES ...)
	funcs        map[string]bool // functions called, system variables read
	cols         map[string]bool // column names referenced (lower case)
	star         bool
	top, top0    bool
	aggregate    bool // the outermost select aggregates
	constantOnly bool // SELECT <literals> without FROM
}

func (f *facts) noSources() bool {
	return len(f.user) == 0 && len(f.system) == 0 && !f.changeTable && !f.changetable
}
func (f *facts) calls(name string) bool { return f.funcs[name] }
func (f *facts) reads(name string) bool { return slices.Contains(f.system, name) }
func (f *facts) readsOnly(name string) bool {
	return len(f.user) == 0 && !f.changeTable && !f.changetable && len(f.system) > 0 &&
		!slices.ContainsFunc(f.system, func(s string) bool { return s != name })
}

// onlyCalls reports that name is the only function the batch calls (CAST
// and CASE are not functions).
func (f *facts) onlyCalls(name string) bool { return len(f.funcs) == 1 && f.funcs[name] }

func factsOf(b *Batch) *facts {
	f := &facts{funcs: map[string]bool{}, cols: map[string]bool{}, constantOnly: true}
	var selectFacts func(s *Select, top bool)
	exprFacts := func(e Expr) {
		walkExpr(e, func(y Expr, _ bool) {
			switch n := y.(type) {
			case *ColumnRef:
				f.cols[strings.ToLower(n.Parts[len(n.Parts)-1])] = true
				f.constantOnly = false
			case *Func:
				f.funcs[n.Name] = true
				f.constantOnly = false
			case *VarRef:
				if strings.HasPrefix(n.Name, "@@") {
					f.funcs[strings.ToLower(n.Name)] = true
				}
				f.constantOnly = false
			case *Exists:
				selectFacts(n.Sub, false)
				f.constantOnly = false
			case *Subquery:
				selectFacts(n.Sub, false)
				f.constantOnly = false
			case *In:
				if n.Sub != nil {
					selectFacts(n.Sub, false)
				}
			case *Cast, *Case, *Unary, *Binary, *IsNull, *Between:
				f.constantOnly = false
			}
		}, false)
	}
	var sourceFacts func(src Source)
	sourceFacts = func(src Source) {
		switch s := src.(type) {
		case *TableSource:
			name := canonicalName(s.Parts)
			switch {
			case strings.HasPrefix(name, "cdc.") && strings.HasSuffix(name, "_ct"):
				f.changeTable = true
			case strings.HasPrefix(name, "sys.") || strings.HasPrefix(name, "cdc.") || strings.HasPrefix(name, "information_schema."):
				if !slices.Contains(f.system, name) {
					f.system = append(f.system, name)
				}
			default:
				if !slices.Contains(f.user, name) {
					f.user = append(f.user, name)
				}
			}
		case *ChangeTableSource:
			f.changetable = true
			exprFacts(s.Version)
		case *DerivedSource:
			selectFacts(s.Select, false)
		case *JoinSource:
			sourceFacts(s.Left)
			sourceFacts(s.Right)
			exprFacts(s.On)
		}
	}
	selectFacts = func(s *Select, outermost bool) {
		f.selects++
		if len(s.From) > 0 {
			f.constantOnly = false
		}
		if s.Top != nil && outermost {
			f.top = true
			if l, ok := s.Top.(*Literal); ok && l.Value == int64(0) {
				f.top0 = true
			}
		}
		for _, src := range s.From {
			sourceFacts(src)
		}
		for _, it := range s.Items {
			if it.Star {
				f.star = true
				f.constantOnly = false
				continue
			}
			exprFacts(it.Expr)
			if outermost && hasAggregate(it.Expr) {
				f.aggregate = true
			}
		}
		exprFacts(s.Where)
		exprFacts(s.Top)
		for _, o := range s.OrderBy {
			exprFacts(o.Expr)
		}
	}
	for _, st := range b.Stmts {
		switch s := st.(type) {
		case *Declare:
			f.declares++
			f.constantOnly = false
			for _, v := range s.Vars {
				exprFacts(v.Init)
			}
		case *Select:
			selectFacts(s, true)
		}
	}
	sort.Strings(f.user)
	sort.Strings(f.system)
	return f
}

// canonicalName is schema.name in lower case (dbo when the schema is not
// given; a database part is dropped).
func canonicalName(parts []string) string {
	name := strings.ToLower(parts[len(parts)-1])
	schema := "dbo"
	if len(parts) >= 2 && parts[len(parts)-2] != "" {
		schema = strings.ToLower(parts[len(parts)-2])
	}
	return schema + "." + name
}

func matchShape(b *Batch) (*Shape, *facts) {
	f := factsOf(b)
	for i := range Inventory {
		if Inventory[i].match(f) {
			return &Inventory[i], f
		}
	}
	return nil, f
}

// describe names a statement shape nothing in the inventory matched.
func (f *facts) describe() string {
	var parts []string
	if f.declares > 0 {
		parts = append(parts, "DECLARE")
	}
	parts = append(parts, "SELECT")
	if f.top0 {
		parts = append(parts, "TOP (0)")
	} else if f.top {
		parts = append(parts, "TOP")
	}
	if f.aggregate {
		parts = append(parts, "aggregate")
	}
	var reads []string
	reads = append(reads, f.user...)
	reads = append(reads, f.system...)
	if f.changeTable {
		reads = append(reads, "cdc.<instance>_CT")
	}
	if f.changetable {
		reads = append(reads, "CHANGETABLE(CHANGES ...)")
	}
	if len(reads) == 0 {
		reads = append(reads, "no table")
	}
	parts = append(parts, "reading "+strings.Join(reads, ", "))
	var fs []string
	for k := range f.funcs {
		fs = append(fs, k)
	}
	sort.Strings(fs)
	if len(fs) > 0 {
		parts = append(parts, "calling "+strings.Join(fs, ", "))
	}
	return strings.Join(parts, " ")
}

// statementText is a statement's text on one line, shortened, for
// messages.
func statementText(sql string) string {
	s := strings.Join(strings.Fields(sql), " ")
	if len(s) > 300 {
		s = s[:300] + " ..."
	}
	return s
}
