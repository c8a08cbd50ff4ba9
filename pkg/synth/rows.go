package synth

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ehrsync/ehrsync/schemas"
)

// tableRows builds rows of one catalog table. The generator names the
// columns it knows; the catalog may drop some (they are skipped) or add
// others (NULL when nullable, else a plausible value of their type).
type tableRows struct {
	t     *schemas.Table
	cols  []string       // insert columns: the catalog's, less the rowversion
	index map[string]int // lower-case name -> position in cols
	base  []any          // value of every column not named
	now   []int          // NOT NULL date-time columns: the batch time
	key   []int          // Table.Key positions in cols
}

// nowMarker stands in base for the batch time.
type nowMarker struct{}

func newTableRows(t *schemas.Table) (*tableRows, error) {
	tr := &tableRows{t: t, index: map[string]int{}}
	for _, c := range t.Columns {
		if strings.EqualFold(c.Name, t.RowVersion) {
			continue
		}
		tr.index[strings.ToLower(c.Name)] = len(tr.cols)
		tr.cols = append(tr.cols, c.Name)
		v := filler(c)
		if _, ok := v.(nowMarker); ok {
			tr.now = append(tr.now, len(tr.base))
			v = nil
		}
		tr.base = append(tr.base, v)
	}
	for _, k := range t.Key {
		i, ok := tr.index[strings.ToLower(k)]
		if !ok {
			return nil, fmt.Errorf("table %s: key column %s is its rowversion", t.QualifiedName(), k)
		}
		tr.key = append(tr.key, i)
	}
	return tr, nil
}

// filler is the value of a column the generator does not know.
func filler(c schemas.Column) any {
	if c.Nullable {
		return nil
	}
	switch c.Type.Name {
	case "bit":
		return false
	case "tinyint", "smallint", "int", "bigint":
		return int64(0)
	case "decimal", "numeric", "money", "smallmoney", "float", "real":
		return Amount(0)
	case "char", "nchar", "varchar", "nvarchar", "text", "ntext", "xml", "sql_variant":
		return ""
	case "uniqueidentifier":
		return UUID{}
	case "date", "datetime", "datetime2", "smalldatetime", "datetimeoffset":
		return nowMarker{}
	case "time":
		return "00:00:00"
	case "binary", "varbinary", "image", "hierarchyid", "geography", "geometry":
		return []byte{}
	}
	return nil
}

func (tr *tableRows) has(col string) bool {
	_, ok := tr.index[col]
	return ok
}

// row returns an insert row: defaults, then the standard audit columns, then
// kv (name, value pairs). Names the catalog lacks are skipped.
func (tr *tableRows) row(at time.Time, user int64, kv ...any) []any {
	row := slices.Clone(tr.base)
	for _, i := range tr.now {
		row[i] = at
	}
	tr.set(row, "create_timestamp", at)
	tr.set(row, "modify_timestamp", at)
	tr.set(row, "created_by", user)
	tr.set(row, "modified_by", user)
	for i := 0; i+1 < len(kv); i += 2 {
		tr.set(row, kv[i].(string), kv[i+1])
	}
	return row
}

func (tr *tableRows) set(row []any, col string, v any) {
	if i, ok := tr.index[col]; ok {
		row[i] = v
	}
}

// keyOf returns the Table.Key values named in kv, in key order.
func (tr *tableRows) keyOf(kv []any) []any {
	key := make([]any, len(tr.t.Key))
	for j, k := range tr.t.Key {
		for i := 0; i+1 < len(kv); i += 2 {
			if strings.EqualFold(kv[i].(string), k) {
				key[j] = kv[i+1]
			}
		}
	}
	return key
}

// batchBuilder appends changes to a batch. Rows of one table, kind and
// column list go into one Op (at the place of the first such row), so that
// a writer sends them together; a batch never changes one row twice with
// different column lists, so the grouping keeps every row's order.
type batchBuilder struct {
	g    *Generator
	b    *Batch
	user int64
	ops  map[opKey]int
}

type opKey struct {
	kind  schemas.Op
	table string
	cols  string
}

func (bb *batchBuilder) op(kind schemas.Op, tr *tableRows, cols []string) *Op {
	k := opKey{kind, tr.t.Name, strings.Join(cols, ",")}
	if i, ok := bb.ops[k]; ok {
		return &bb.b.Ops[i]
	}
	if bb.ops == nil {
		bb.ops = map[opKey]int{}
	}
	bb.ops[k] = len(bb.b.Ops)
	bb.b.Ops = append(bb.b.Ops, Op{Kind: kind, Table: tr.t, Columns: cols})
	return &bb.b.Ops[len(bb.b.Ops)-1]
}

func (bb *batchBuilder) insert(table string, kv ...any) {
	tr := bb.g.tables[table]
	op := bb.op(schemas.OpInsert, tr, tr.cols)
	op.Rows = append(op.Rows, tr.row(bb.b.At, bb.user, kv...))
}

// update sets kv (name, value pairs) on the row whose key is key (name,
// value pairs), and its modify_timestamp and modified_by.
func (bb *batchBuilder) update(table string, key []any, kv ...any) {
	tr := bb.g.tables[table]
	cols := make([]string, 0, len(kv)/2+2)
	vals := make([]any, 0, len(kv)/2+2+len(tr.key))
	for i := 0; i+1 < len(kv); i += 2 {
		if name := kv[i].(string); tr.has(name) {
			cols = append(cols, tr.cols[tr.index[name]])
			vals = append(vals, kv[i+1])
		}
	}
	for _, a := range []struct {
		col string
		v   any
	}{{"modify_timestamp", bb.b.At}, {"modified_by", bb.user}} {
		if tr.has(a.col) && !slices.Contains(cols, a.col) {
			cols = append(cols, tr.cols[tr.index[a.col]])
			vals = append(vals, a.v)
		}
	}
	op := bb.op(schemas.OpUpdate, tr, bb.g.internCols(cols))
	op.Rows = append(op.Rows, append(vals, tr.keyOf(key)...))
}

// delete removes the row whose key is key (name, value pairs).
func (bb *batchBuilder) delete(table string, key ...any) {
	tr := bb.g.tables[table]
	op := bb.op(schemas.OpDelete, tr, nil)
	op.Rows = append(op.Rows, tr.keyOf(key))
}

// internCols returns one shared slice per distinct column list, so that
// ops compare equal cheaply and share their Columns.
func (g *Generator) internCols(cols []string) []string {
	k := strings.Join(cols, ",")
	if c, ok := g.colLists[k]; ok {
		return c
	}
	g.colLists[k] = cols
	return cols
}
