package reader

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/extractors/internal/dialect"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Value converts the native value of column c (as Chunk.Last holds it) into
// a watermarks.Value that keeps it exactly, with c's type as its SQL type.
//
// The value type follows what the source holds: a datetime read from SQL
// Server is a watermarks.DateTime (1/300 s ticks: the driver's millisecond
// reading maps back to the stored tick exactly, PITFALLS.md P14), but the
// same catalog column on a PostgreSQL source is a timestamp(3) and becomes a
// DateTime2, so that binding it back compares equal to the stored value.
func (r *Reader) Value(c schemas.Column, native any) (watermarks.Value, error) {
	v, err := toValue(r.cfg.Dialect, c, native)
	if err != nil {
		return watermarks.Value{}, fmt.Errorf("column %s: %w", c.Name, err)
	}
	return v, nil
}

func toValue(source schemas.Dialect, c schemas.Column, native any) (watermarks.Value, error) {
	sqlType := c.Type.String()
	switch x := native.(type) {
	case nil:
		return watermarks.Null().WithSQLType(sqlType), nil
	case int64:
		return watermarks.Int64(x).WithSQLType(sqlType), nil
	case bool:
		return watermarks.Bool(x).WithSQLType(sqlType), nil
	case string:
		if isDecimal(c.Type) {
			v, err := watermarks.ParseDecimal(x)
			if err != nil {
				return watermarks.Value{}, err
			}
			return v.WithSQLType(sqlType), nil
		}
		return watermarks.String(sqlType, x), nil
	case uuid.UUID:
		return watermarks.UUID(x).WithSQLType(sqlType), nil
	case time.Time:
		var (
			v   watermarks.Value
			err error
		)
		switch c.Type.Name {
		case "date":
			v, err = watermarks.Date(x)
		case "datetime":
			if source == schemas.SQLServer {
				v, err = watermarks.DateTime(x)
			} else {
				v, err = watermarks.DateTime2(x)
			}
		case "datetimeoffset", "timestamp with time zone":
			if source == schemas.Postgres {
				x = x.UTC() // timestamptz keeps no offset
			}
			v, err = watermarks.DateTimeOffset(x)
		default:
			v, err = watermarks.DateTime2(x)
		}
		if err != nil {
			return watermarks.Value{}, err
		}
		return v.WithSQLType(sqlType), nil
	case []byte:
		if c.Type.Name == "rowversion" && len(x) == 8 {
			return watermarks.RowVersion([8]byte(x)).WithSQLType(sqlType), nil
		}
		return watermarks.Bytes(x).WithSQLType(sqlType), nil
	}
	return watermarks.Value{}, fmt.Errorf("type %s cannot be a key or cursor", c.Type)
}

func isDecimal(t schemas.Type) bool {
	switch t.Name {
	case "decimal", "numeric", "money", "smallmoney":
		return true
	}
	return false
}

// Native converts a watermarks.Value back to the native value Value took.
func Native(v watermarks.Value) (any, error) {
	switch v.Type() {
	case watermarks.TypeInt:
		x, _ := v.AsInt64()
		return x, nil
	case watermarks.TypeBool:
		x, _ := v.AsBool()
		return x, nil
	case watermarks.TypeString:
		x, _ := v.AsString()
		return x, nil
	case watermarks.TypeDecimal:
		return v.Text(), nil
	case watermarks.TypeUUID:
		x, _ := v.AsUUID()
		return uuid.UUID(x), nil
	case watermarks.TypeDate:
		x, _ := v.AsDate()
		return x, nil
	case watermarks.TypeDateTime:
		x, _ := v.AsDateTime()
		return x, nil
	case watermarks.TypeDateTime2:
		x, _ := v.AsDateTime2()
		return x, nil
	case watermarks.TypeDateTimeOffset:
		x, _ := v.AsDateTimeOffset()
		return x, nil
	case watermarks.TypeRowVersion:
		x, _ := v.AsRowVersion()
		return x[:], nil
	case watermarks.TypeBytes:
		x, _ := v.AsBytes()
		return x, nil
	case watermarks.TypeNull:
		return nil, errors.New("null value")
	}
	return nil, fmt.Errorf("value of type %s", v.Type())
}

// Param binds v as a parameter of column c's exact type.
func (r *Reader) Param(c schemas.Column, v watermarks.Value) (dialect.Param, error) {
	n, err := Native(v)
	if err != nil {
		return dialect.Param{}, fmt.Errorf("column %s: %w", c.Name, err)
	}
	return r.d.Param(c, r.cfg.Table.Dialect, n)
}

// KeyColumns returns the batch columns of t's key, in key order.
func (r *Reader) KeyColumns(t *schemas.Table) ([]schemas.Column, []int, error) {
	cols := make([]schemas.Column, len(t.Key))
	idx := make([]int, len(t.Key))
	for i, k := range t.Key {
		c, j, err := r.Column(k)
		if err != nil {
			return nil, nil, err
		}
		cols[i], idx[i] = c, j
	}
	return cols, idx, nil
}

// Key returns the key of a row from its native values.
func (r *Reader) Key(cols []schemas.Column, idx []int, natives []any) (watermarks.Key, error) {
	k := make(watermarks.Key, len(cols))
	for i, c := range cols {
		v, err := r.Value(c, natives[idx[i]])
		if err != nil {
			return nil, err
		}
		if v.IsNull() {
			return nil, fmt.Errorf("key column %s is null", c.Name)
		}
		k[i] = v
	}
	return k, nil
}

// Cond returns the row comparison (cols) op (vals), each value bound with
// its column's exact type.
func (r *Reader) Cond(cols []schemas.Column, op dialect.Op, vals []watermarks.Value) (dialect.Cond, error) {
	if len(cols) != len(vals) {
		return dialect.Cond{}, fmt.Errorf("%d values for %d columns", len(vals), len(cols))
	}
	c := dialect.Cond{Op: op}
	for i, col := range cols {
		p, err := r.Param(col, vals[i])
		if err != nil {
			return dialect.Cond{}, err
		}
		c.Columns = append(c.Columns, col.Name)
		c.Values = append(c.Values, p)
	}
	return c, nil
}

// ValueOf is Value without a Reader: the watermarks.Value of column c's
// native value as read from a source of dialect source. Operators' key
// bounds (a ranged backfill) are made with it, so that they bind exactly as
// keys read from the source do.
func ValueOf(source schemas.Dialect, c schemas.Column, native any) (watermarks.Value, error) {
	v, err := toValue(source, c, native)
	if err != nil {
		return watermarks.Value{}, fmt.Errorf("column %s: %w", c.Name, err)
	}
	return v, nil
}
