// Package ctrows converts Change Tracking rows, as go-mssqldb returns them
// (GUIDs in wire order, decimals as text, zone-less date-times in UTC), into
// Arrow change batches and typed keys, for the extractor's incremental
// reads.
package ctrows

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Table is one SQL Server table's row converter. It is immutable and safe
// for concurrent use.
type Table struct {
	*arrowscan.Scanner
	t       *schemas.Table
	keyCols []schemas.Column
	keyIdx  []int
}

// New returns the converter of t's rows (t in the SQL Server dialect).
func New(t *schemas.Table) (*Table, error) {
	s, err := arrowscan.New(schemas.SQLServer, t)
	if err != nil {
		return nil, err
	}
	ct := &Table{Scanner: s, t: t}
	for _, k := range t.Key {
		found := false
		for i, c := range t.Columns {
			if c.Name == k {
				ct.keyCols = append(ct.keyCols, c)
				ct.keyIdx = append(ct.keyIdx, i)
				found = true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("table %s: key column %s is not among its columns", t.QualifiedName(), k)
		}
	}
	return ct, nil
}

// KeyColumns returns the key columns and their indexes in the table's
// column order.
func (t *Table) KeyColumns() ([]schemas.Column, []int) { return t.keyCols, t.keyIdx }

// Key returns the typed key of a row of raw driver values in table column
// order.
func (t *Table) Key(raw []any) (watermarks.Key, error) {
	k := make(watermarks.Key, len(t.keyCols))
	for i, c := range t.keyCols {
		n, err := t.Native(t.keyIdx[i], raw[t.keyIdx[i]])
		if err != nil {
			return nil, err
		}
		if n == nil {
			return nil, fmt.Errorf("key column %s is null", c.Name)
		}
		if k[i], err = Value(c, n); err != nil {
			return nil, err
		}
	}
	return k, nil
}

// Value converts the native value (arrowscan.Scanner.Native) of SQL Server
// column c into a watermarks.Value that keeps it exactly: a datetime keeps
// its 1/300 s tick (PITFALLS.md P14).
func Value(c schemas.Column, native any) (watermarks.Value, error) {
	sqlType := c.Type.String()
	var (
		v   watermarks.Value
		err error
	)
	switch x := native.(type) {
	case int64:
		v = watermarks.Int64(x)
	case bool:
		v = watermarks.Bool(x)
	case string:
		switch c.Type.Name {
		case "decimal", "numeric", "money", "smallmoney":
			v, err = watermarks.ParseDecimal(x)
		default:
			return watermarks.String(sqlType, x), nil
		}
	case uuid.UUID:
		v = watermarks.UUID(x)
	case time.Time:
		switch c.Type.Name {
		case "date":
			v, err = watermarks.Date(x)
		case "datetime":
			v, err = watermarks.DateTime(x)
		case "datetimeoffset":
			v, err = watermarks.DateTimeOffset(x)
		default:
			v, err = watermarks.DateTime2(x)
		}
	case []byte:
		v = watermarks.Bytes(x)
	default:
		return watermarks.Value{}, fmt.Errorf("column %s: type %s cannot be a key", c.Name, c.Type)
	}
	if err != nil {
		return watermarks.Value{}, fmt.Errorf("column %s: %w", c.Name, err)
	}
	return v.WithSQLType(sqlType), nil
}
