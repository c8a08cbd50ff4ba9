package schemas

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// SourceColumn is a column as the source database describes it now, in the
// source's dialect.
type SourceColumn struct {
	Name string
	// Type is the parsed type; TypeText is how the source spells it. Type
	// is the zero Type when TypeText does not parse (a type ehrsync does
	// not know).
	Type     Type
	TypeText string
	Nullable bool
}

// Adapted is a catalog table checked against its source table.
type Adapted struct {
	// Table is the table to read: the catalog's, with the source's current
	// types where they changed and the source's new columns the allow-list
	// names.
	Table *Table
	// Changed are the columns whose type was taken from the source
	// ("name: old -> new"); Added are the allow-listed source columns not
	// in the catalog; Ignored are the source columns not in the catalog
	// and not allow-listed, which are not read.
	Changed, Added, Ignored []string
}

// AdaptToSource compares t (a catalog table) with the columns its source
// table has now (in dialect source), for a read of the columns in allow
// (all of t's when empty; key, row-version, modified-at and practice
// columns always):
//
//   - a column read that is gone at the source is an error naming the
//     column and the fix (leave it out with the allow-list, or remove it
//     from the catalog file);
//   - a column whose type changed takes the source's type when t is in the
//     source's dialect (the sink then widens the store column, or keeps a
//     wider one for a narrowed type); across dialects (a SQL Server catalog
//     on a PostgreSQL source) it is an error;
//   - a column of a type ehrsync cannot carry is an error;
//   - a source column not in t is read only when allow names it.
//
// Types compare by their store mapping, so spellings that land in the same
// store type (varchar(40) and character varying(40)) are not a change; the
// row-version column is not compared across dialects (bigint stands in for
// rowversion on PostgreSQL). Every problem is reported, joined, each
// wrapping ErrSourceChanged.
func AdaptToSource(t *Table, source Dialect, cols []SourceColumn, allow []string) (Adapted, error) {
	out := Adapted{Table: t.clone()}
	bySource := make(map[string]SourceColumn, len(cols))
	for _, c := range cols {
		bySource[strings.ToLower(c.Name)] = c
	}
	allowed := func(name string) bool {
		return len(allow) == 0 || slices.ContainsFunc(allow, func(a string) bool { return strings.EqualFold(a, name) })
	}
	always := func(name string) bool {
		return t.IsKey(name) || strings.EqualFold(name, t.RowVersion) || strings.EqualFold(name, t.ModifiedAt) || strings.EqualFold(name, t.Practice)
	}
	var errs []error
	fail := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("table %s: %w: "+format, append([]any{t.QualifiedName(), ErrSourceChanged}, args...)...))
	}
	for i, c := range t.Columns {
		if !allowed(c.Name) && !always(c.Name) {
			continue
		}
		s, ok := bySource[strings.ToLower(c.Name)]
		if !ok {
			fix := "leave it out with the table's columns allow-list, or remove it from the table's catalog file"
			if always(c.Name) {
				fix = "it is a key, cursor or practice column, so the table cannot be read without it: fix the table's catalog file"
			}
			fail("column %s is in the catalog but no longer at the source: %s", c.Name, fix)
			continue
		}
		if t.Dialect != source && strings.EqualFold(c.Name, t.RowVersion) {
			continue
		}
		want, err := Map(t.Dialect, c.Type)
		if err != nil {
			fail("column %s: %v", c.Name, err)
			continue
		}
		if s.TypeText != "" && s.Type.Name == "" {
			fail("column %s now has type %s at the source, which ehrsync cannot carry: leave it out with the table's columns allow-list", c.Name, s.TypeText)
			continue
		}
		got, err := Map(source, s.Type)
		if err != nil {
			fail("column %s now has type %s at the source, which ehrsync cannot carry (%v): leave it out with the table's columns allow-list", c.Name, s.Type, err)
			continue
		}
		if got.Postgres == want.Postgres {
			continue
		}
		if t.Dialect != source {
			fail("column %s changed type at the source (the catalog says %s, the source has %s): update the table's catalog file", c.Name, c.Type, s.Type)
			continue
		}
		out.Changed = append(out.Changed, fmt.Sprintf("%s: %s -> %s", c.Name, c.Type, s.Type))
		out.Table.Columns[i].Type = s.Type
	}
	for _, s := range cols {
		if _, known := t.Column(s.Name); known {
			continue
		}
		if len(allow) == 0 || !allowed(s.Name) {
			out.Ignored = append(out.Ignored, s.Name)
			continue
		}
		if t.Dialect != source {
			fail("column %s is new at the source and allow-listed, but the catalog is in the %s dialect: add it to the table's catalog file", s.Name, t.Dialect)
			continue
		}
		if s.Type.Name == "" {
			fail("column %s is new at the source and allow-listed, but its type %s cannot be carried: leave it out of the allow-list", s.Name, s.TypeText)
			continue
		}
		if _, err := Map(source, s.Type); err != nil {
			fail("column %s is new at the source and allow-listed, but its type %s cannot be carried (%v): leave it out of the allow-list", s.Name, s.Type, err)
			continue
		}
		out.Added = append(out.Added, s.Name)
		out.Table.Columns = append(out.Table.Columns, Column{Name: s.Name, Type: s.Type, Nullable: s.Nullable})
	}
	if err := errors.Join(errs...); err != nil {
		return Adapted{}, err
	}
	return out, nil
}
