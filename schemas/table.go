package schemas

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Provenance tags say where a catalog name comes from (DOMAIN.md).
const (
	// ProvenancePublished: published in public SQL, ETL code or NextGen's
	// help pages.
	ProvenancePublished = "C"
	// ProvenanceInferred: inferred from how public queries use it.
	ProvenanceInferred = "I"
	// ProvenanceInvented: invented for the synthetic source; keep it out of
	// anything that claims to be NextGen's real schema.
	ProvenanceInvented = "X"
)

// ReservedPrefix starts the names of the columns ehrsync adds to change
// batches (OpColumn, SeqColumn, SourcePosColumn). No source column may use it.
const ReservedPrefix = "_ehrsync_"

// Column is one source column.
type Column struct {
	Name     string
	Type     Type // in the table's Dialect
	Nullable bool
	// Provenance is ProvenancePublished, ProvenanceInferred,
	// ProvenanceInvented, or "" when not tracked (user catalogs).
	Provenance string
}

// Table is one source table: its columns in source order and what the
// extractors need to know about it.
//
// A *Table returned by this package is the caller's own copy.
type Table struct {
	Schema, Name string  // "dbo", "trans_detail"
	Dialect      Dialect // dialect of the Column types (catalog tables: SQLServer)
	Columns      []Column
	Key          []string // primary key columns, in key order
	RowVersion   string   // rowversion column name, "" if none
	ModifiedAt   string   // application modify-timestamp column, "" if none
	Practice     string   // practice filter column (practice_id), "" if none
	// Shared declares that the table has no practice column: its rows
	// belong to every practice of the database (reference tables such as
	// payer masters; `practice: none` in a catalog file). A table with
	// neither Practice nor Shared is refused for an organization that
	// filters by practice (CheckPracticeFilter).
	Shared      bool
	Description string
	// Provenance tags the table name itself (see Column.Provenance).
	Provenance string
}

// QualifiedName returns "schema.name", e.g. "dbo.trans_detail".
func (t *Table) QualifiedName() string {
	return t.Schema + "." + t.Name
}

// Column returns the column called name, matched case-insensitively as SQL
// Server does.
func (t *Table) Column(name string) (Column, bool) {
	i := t.columnIndex(name)
	if i < 0 {
		return Column{}, false
	}
	return t.Columns[i], true
}

func (t *Table) columnIndex(name string) int {
	return slices.IndexFunc(t.Columns, func(c Column) bool { return strings.EqualFold(c.Name, name) })
}

// IsKey reports whether the column called name is part of the primary key.
func (t *Table) IsKey(name string) bool {
	return slices.ContainsFunc(t.Key, func(k string) bool { return strings.EqualFold(k, name) })
}

// Project applies a column allow-list: it returns a copy of t with only the
// listed columns (matched case-insensitively), in source order. It always
// keeps the key columns, and the RowVersion, ModifiedAt and Practice columns,
// because the extractors need them for positions, paging and the practice
// filter. The error names every unknown column.
func (t *Table) Project(columns []string) (*Table, error) {
	keep := make([]bool, len(t.Columns))
	var unknown []string
	for _, name := range columns {
		i := t.columnIndex(name)
		if i < 0 {
			unknown = append(unknown, name)
			continue
		}
		keep[i] = true
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("project %s: unknown columns %s", t.QualifiedName(), strings.Join(unknown, ", "))
	}
	always := append(slices.Clone(t.Key), t.RowVersion, t.ModifiedAt, t.Practice)
	for _, name := range always {
		if i := t.columnIndex(name); name != "" && i >= 0 {
			keep[i] = true
		}
	}
	p := t.clone()
	p.Columns = p.Columns[:0]
	for i, c := range t.Columns {
		if keep[i] {
			p.Columns = append(p.Columns, c)
		}
	}
	return p, nil
}

// Validate checks t: a schema, name and dialect; columns present, uniquely
// named (case-insensitively), not using ReservedPrefix, each type mapping to
// Arrow and the store; a primary key of existing, NOT NULL, non-lossy
// columns; RowVersion, ModifiedAt and Practice naming existing columns of
// fitting types. It reports every problem, joined.
func (t *Table) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}
	if t.Schema == "" {
		add("no schema")
	}
	if t.Name == "" {
		add("no name")
	}
	if _, ok := dialects[t.Dialect]; !ok {
		add("unknown dialect %q", string(t.Dialect))
	}
	if !validProvenance(t.Provenance) {
		add("provenance %q is not C, I or X", t.Provenance)
	}
	if len(t.Columns) == 0 {
		add("no columns")
	}
	seen := make(map[string]bool, len(t.Columns))
	for _, c := range t.Columns {
		lower := strings.ToLower(c.Name)
		switch {
		case c.Name == "":
			add("column with no name")
			continue
		case seen[lower]:
			add("duplicate column %s", c.Name)
		case strings.HasPrefix(lower, ReservedPrefix):
			add("column %s uses the reserved prefix %s", c.Name, ReservedPrefix)
		}
		seen[lower] = true
		if !validProvenance(c.Provenance) {
			add("column %s: provenance %q is not C, I or X", c.Name, c.Provenance)
		}
		if _, ok := dialects[t.Dialect]; ok {
			if _, err := Map(t.Dialect, c.Type); err != nil {
				add("column %s: %w", c.Name, err)
			}
		}
	}
	if len(t.Key) == 0 {
		add("no primary key")
	}
	seenKey := make(map[string]bool, len(t.Key))
	for _, k := range t.Key {
		if seenKey[strings.ToLower(k)] {
			add("key column %s listed twice", k)
			continue
		}
		seenKey[strings.ToLower(k)] = true
		c, ok := t.Column(k)
		if !ok {
			add("key column %s does not exist", k)
			continue
		}
		if c.Nullable {
			add("key column %s is nullable", k)
		}
		if m, err := Map(t.Dialect, c.Type); err == nil && m.Lossy != "" {
			add("key column %s has type %s, which does not map exactly", k, c.Type)
		}
	}
	if t.RowVersion != "" {
		if c, ok := t.Column(t.RowVersion); !ok {
			add("rowversion column %s does not exist", t.RowVersion)
		} else if !isRowVersion(t.Dialect, c.Type) {
			add("rowversion column %s has type %s, want %s", t.RowVersion, c.Type, rowVersionWant(t.Dialect))
		}
	}
	if t.ModifiedAt != "" {
		if c, ok := t.Column(t.ModifiedAt); !ok {
			add("modified-at column %s does not exist", t.ModifiedAt)
		} else if !isDateTime(t.Dialect, c.Type) {
			add("modified-at column %s has type %s, want a date-time type", t.ModifiedAt, c.Type)
		}
	}
	if t.Practice != "" {
		if _, ok := t.Column(t.Practice); !ok {
			add("practice column %s does not exist", t.Practice)
		}
		if t.Shared {
			add("practice column %s is named, and the table is declared shared by every practice: keep one", t.Practice)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("table %s: %w", t.QualifiedName(), err)
	}
	return nil
}

// AsPostgres returns t as it looks once copied to PostgreSQL: a copy in the
// Postgres dialect whose column types are the store types Map gives for t.
// The synthetic PostgreSQL source creates its tables from it, and mapping the
// result again gives the same store types.
func (t *Table) AsPostgres() (*Table, error) {
	p := t.clone()
	p.Dialect = Postgres
	for i, c := range p.Columns {
		m, err := Map(t.Dialect, c.Type)
		if err != nil {
			return nil, fmt.Errorf("table %s: column %s: %w", t.QualifiedName(), c.Name, err)
		}
		pt, err := ParseType(Postgres, m.Postgres)
		if err != nil {
			return nil, fmt.Errorf("table %s: column %s: %w", t.QualifiedName(), c.Name, err)
		}
		p.Columns[i].Type = pt
	}
	return p, nil
}

func (t *Table) clone() *Table {
	c := *t
	c.Columns = slices.Clone(t.Columns)
	c.Key = slices.Clone(t.Key)
	return &c
}

func validProvenance(p string) bool {
	switch p {
	case "", ProvenancePublished, ProvenanceInferred, ProvenanceInvented:
		return true
	}
	return false
}

// isRowVersion: SQL Server rowversion; on a PostgreSQL source, which has no
// rowversion, a bigint or 8-byte bytea column the source maintains from a
// sequence.
func isRowVersion(d Dialect, t Type) bool {
	switch d {
	case SQLServer:
		return t.Name == "rowversion"
	case Postgres:
		return t.Name == "bigint" || t.Name == "bytea"
	}
	return false
}

func rowVersionWant(d Dialect) string {
	if d == Postgres {
		return "bigint or bytea"
	}
	return "rowversion"
}

func isDateTime(d Dialect, t Type) bool {
	switch d {
	case SQLServer:
		switch t.Name {
		case "datetime", "datetime2", "smalldatetime", "datetimeoffset":
			return true
		}
	case Postgres:
		switch t.Name {
		case "timestamp without time zone", "timestamp with time zone":
			return true
		}
	}
	return false
}

// ErrPracticeUndeclared is a table that neither names its practice column
// nor declares that it has none, read for an organization that filters by
// practice: its rows could belong to any practice.
var ErrPracticeUndeclared = errors.New("the table neither names its practice column nor declares that it has none")

// CheckPracticeFilter returns nil when an organization restricted to
// practices may read t: t names its practice column, or declares that its
// rows are shared by every practice. Otherwise an error matching
// ErrPracticeUndeclared names both fixes.
func (t *Table) CheckPracticeFilter() error {
	if t.Practice != "" || t.Shared {
		return nil
	}
	return fmt.Errorf("table %s: %w, so every practice's rows would reach this organization: "+
		"name it with `practice: <column>` in the table's catalog file, or declare `practice: none` "+
		"if its rows are shared by every practice (a reference table such as a payer master)%s",
		t.QualifiedName(), ErrPracticeUndeclared, t.practiceLikeHint())
}

// PracticeLike returns the columns of t whose names look like a practice
// column (practice_id, PracticeID, ...) that t does not name as its
// practice column.
func (t *Table) PracticeLike() []string {
	var out []string
	for _, c := range t.Columns {
		n := strings.ToLower(strings.ReplaceAll(c.Name, "_", ""))
		if strings.Contains(n, "practice") && !strings.EqualFold(c.Name, t.Practice) {
			out = append(out, c.Name)
		}
	}
	return out
}

func (t *Table) practiceLikeHint() string {
	if like := t.PracticeLike(); len(like) > 0 {
		return " (it has a column " + strings.Join(like, ", ") + ")"
	}
	return ""
}
