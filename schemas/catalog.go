package schemas

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Catalog is a set of source tables, looked up by qualified name
// case-insensitively. It is immutable and safe for concurrent use; the
// tables it returns are copies the caller owns.
type Catalog struct {
	tables map[string]*Table // by lower-case qualified name
}

// DefaultSchema is the schema Catalog.Table assumes for an unqualified name.
const DefaultSchema = "dbo"

// NewCatalog returns a catalog of the given tables, each validated; a
// duplicate qualified name is an error. The catalog keeps its own copies.
func NewCatalog(tables ...*Table) (*Catalog, error) {
	c := &Catalog{tables: make(map[string]*Table, len(tables))}
	var errs []error
	for _, t := range tables {
		if err := t.Validate(); err != nil {
			errs = append(errs, err)
			continue
		}
		key := strings.ToLower(t.QualifiedName())
		if _, dup := c.tables[key]; dup {
			errs = append(errs, fmt.Errorf("table %s defined twice", t.QualifiedName()))
			continue
		}
		c.tables[key] = t.clone()
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// Table returns the table called name: "dbo.claims", or "claims" for
// DefaultSchema (or, failing that, the only table of that name in any
// schema). Names match case-insensitively.
func (c *Catalog) Table(name string) (*Table, bool) {
	lower := strings.ToLower(name)
	if !strings.Contains(lower, ".") {
		if t, ok := c.tables[DefaultSchema+"."+lower]; ok {
			return t.clone(), true
		}
		var found *Table
		for _, t := range c.tables {
			if strings.EqualFold(t.Name, name) {
				if found != nil {
					return nil, false // ambiguous
				}
				found = t
			}
		}
		if found == nil {
			return nil, false
		}
		return found.clone(), true
	}
	t, ok := c.tables[lower]
	if !ok {
		return nil, false
	}
	return t.clone(), true
}

// Tables returns every table, sorted by qualified name.
func (c *Catalog) Tables() []*Table {
	keys := make([]string, 0, len(c.tables))
	for k := range c.tables {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]*Table, len(keys))
	for i, k := range keys {
		out[i] = c.tables[k].clone()
	}
	return out
}

//go:embed catalog/nextgen/*.yaml
var nextgenFiles embed.FS

var nextgen = sync.OnceValues(func() (*Catalog, error) {
	return LoadCatalog(nextgenFiles, "catalog/nextgen")
})

// NextGen returns the embedded catalog of the NextGen denied-claims tables
// (DOMAIN.md §3), all in the SQL Server dialect. It is parsed once. It panics
// if an embedded file is broken, which TestNextGen rules out.
func NextGen() *Catalog {
	c, err := nextgen()
	if err != nil {
		panic(fmt.Sprintf("schemas: embedded nextgen catalog: %v", err))
	}
	return c
}

// LoadCatalog reads every *.yaml and *.yml file in dir of fsys, one table per
// file, and returns the catalog of them. Unknown keys are errors. Every
// problem is reported, each naming its file.
//
// A table file:
//
//	schema: dbo
//	name: claims
//	dialect: sqlserver
//	provenance: C            # optional: C, I or X
//	description: ...
//	key: [claim_id]
//	row_version: row_timestamp   # optional
//	modified_at: modify_timestamp # optional
//	practice: practice_id        # the practice column, or none: rows shared by every practice
//	columns:
//	  - {name: claim_id, type: uniqueidentifier, nullable: false, provenance: I}
func LoadCatalog(fsys fs.FS, dir string) (*Catalog, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read catalog directory: %w", err)
	}
	var (
		tables []*Table
		errs   []error
	)
	for _, e := range entries {
		ext := path.Ext(e.Name())
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		file := path.Join(dir, e.Name())
		data, err := fs.ReadFile(fsys, file)
		if err != nil {
			errs = append(errs, fmt.Errorf("read %s: %w", file, err))
			continue
		}
		t, err := decodeTable(data)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		if err := t.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", file, err))
			continue
		}
		tables = append(tables, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(tables) == 0 {
		return nil, fmt.Errorf("catalog directory %s has no table files", dir)
	}
	return NewCatalog(tables...)
}

type tableFile struct {
	Schema      string       `yaml:"schema"`
	Name        string       `yaml:"name"`
	Dialect     string       `yaml:"dialect"`
	Provenance  string       `yaml:"provenance"`
	Description string       `yaml:"description"`
	Key         []string     `yaml:"key"`
	RowVersion  string       `yaml:"row_version"`
	ModifiedAt  string       `yaml:"modified_at"`
	Practice    string       `yaml:"practice"`
	Columns     []columnFile `yaml:"columns"`
}

type columnFile struct {
	Name       string `yaml:"name"`
	Type       string `yaml:"type"`
	Nullable   *bool  `yaml:"nullable"`
	Provenance string `yaml:"provenance"`
}

func decodeTable(data []byte) (*Table, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f tableFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("decode table: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document")
	}
	d, err := ParseDialect(f.Dialect)
	if err != nil {
		return nil, fmt.Errorf("dialect: %w", err)
	}
	t := &Table{
		Schema:      f.Schema,
		Name:        f.Name,
		Dialect:     d,
		Key:         f.Key,
		RowVersion:  f.RowVersion,
		ModifiedAt:  f.ModifiedAt,
		Practice:    f.Practice,
		Description: strings.TrimSpace(f.Description),
		Shared:      f.Practice == "none",
		Provenance:  f.Provenance,
	}
	if t.Shared {
		t.Practice = ""
	}
	var errs []error
	for i, c := range f.Columns {
		if c.Nullable == nil {
			errs = append(errs, fmt.Errorf("column %d (%s): nullable is required", i+1, c.Name))
			continue
		}
		typ, err := ParseType(d, c.Type)
		if err != nil {
			errs = append(errs, fmt.Errorf("column %d (%s): %w", i+1, c.Name, err))
			continue
		}
		t.Columns = append(t.Columns, Column{Name: c.Name, Type: typ, Nullable: *c.Nullable, Provenance: c.Provenance})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, nil
}

// LoadTableFiles reads table files (the format LoadCatalog reads, one table
// per file) from the operating system's file system: the extra catalog
// files a configuration lists. Every problem is reported, each naming its
// file.
func LoadTableFiles(paths ...string) ([]*Table, error) {
	var (
		tables []*Table
		errs   []error
	)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("read catalog file: %w", err))
			continue
		}
		t, err := decodeTable(data)
		if err == nil {
			err = t.Validate()
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("catalog file %s: %w", p, err))
			continue
		}
		tables = append(tables, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return tables, nil
}

// With returns a new catalog of c's tables and these. A table c already
// has (by qualified name, case-insensitively) is an error: an extra file
// cannot silently replace a built-in table.
func (c *Catalog) With(tables ...*Table) (*Catalog, error) {
	all := make([]*Table, 0, len(c.tables)+len(tables))
	for _, t := range c.tables {
		all = append(all, t)
	}
	var errs []error
	for _, t := range tables {
		if _, dup := c.tables[strings.ToLower(t.QualifiedName())]; dup {
			errs = append(errs, fmt.Errorf("table %s is already in the catalog: name another table, or leave the file out", t.QualifiedName()))
			continue
		}
		all = append(all, t)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return NewCatalog(all...)
}
