package sink

import (
	"bytes"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/jackc/pgx/v5/pgtype"
)

// recordSource is a pgx.CopyFromSource over one Arrow record batch: it walks
// the rows and converts each column's value to the Go value pgx encodes for
// the column's store type. The caller keeps ownership of the batch.
type recordSource struct {
	rec   arrow.RecordBatch
	conv  []valueFunc
	row   int
	vals  []any
	nrows int
}

// valueFunc returns row i of a column as a value pgx can encode, or nil for NULL.
type valueFunc func(i int) any

func newRecordSource(rec arrow.RecordBatch) (*recordSource, error) {
	conv := make([]valueFunc, rec.NumCols())
	for c := range conv {
		f, err := converter(rec.Column(c))
		if err != nil {
			return nil, fmt.Errorf("column %s: %w", rec.ColumnName(c), err)
		}
		conv[c] = f
	}
	return &recordSource{rec: rec, conv: conv, row: -1, vals: make([]any, len(conv)), nrows: int(rec.NumRows())}, nil
}

func (s *recordSource) Next() bool {
	s.row++
	return s.row < s.nrows
}

func (s *recordSource) Values() ([]any, error) {
	for c, f := range s.conv {
		s.vals[c] = f(s.row)
	}
	return s.vals, nil
}

func (s *recordSource) Err() error { return nil }

// converter picks the conversion for one Arrow column. Every Arrow type that
// schemas.Map produces has a case here; anything else is an error, not a guess.
func converter(col arrow.Array) (valueFunc, error) {
	nullable := func(f valueFunc) valueFunc {
		return func(i int) any {
			if col.IsNull(i) {
				return nil
			}
			return f(i)
		}
	}
	switch a := col.(type) {
	case *array.Boolean:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.Int8:
		return nullable(func(i int) any { return int16(a.Value(i)) }), nil
	case *array.Uint8:
		return nullable(func(i int) any { return int16(a.Value(i)) }), nil
	case *array.Int16:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.Int32:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.Int64:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.Float32:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.Float64:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.String:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.LargeString:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.Binary:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.LargeBinary:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *array.FixedSizeBinary:
		return nullable(func(i int) any { return a.Value(i) }), nil
	case *extensions.UUIDArray:
		return nullable(func(i int) any { return [16]byte(a.Value(i)) }), nil
	case *array.Decimal128:
		scale := a.DataType().(*arrow.Decimal128Type).Scale
		return nullable(func(i int) any { return decimalValue(a.Value(i), scale) }), nil
	case *array.Date32:
		return nullable(func(i int) any {
			return pgtype.Date{Time: a.Value(i).ToTime(), Valid: true}
		}), nil
	case *array.Time64:
		unit := a.DataType().(*arrow.Time64Type).Unit
		return nullable(func(i int) any {
			return pgtype.Time{Microseconds: int64(a.Value(i).ToTime(unit).Sub(time.Unix(0, 0).UTC()) / time.Microsecond), Valid: true}
		}), nil
	case *array.Timestamp:
		typ := a.DataType().(*arrow.TimestampType)
		toTime, err := typ.GetToTimeFunc()
		if err != nil {
			return nil, err
		}
		if typ.TimeZone == "" {
			// A zoneless source value: keep its wall clock as a
			// PostgreSQL timestamp without time zone.
			return nullable(func(i int) any {
				return pgtype.Timestamp{Time: toTime(a.Value(i)).UTC(), Valid: true}
			}), nil
		}
		return nullable(func(i int) any { return toTime(a.Value(i)) }), nil
	}
	return nil, fmt.Errorf("no store encoding for Arrow type %s", col.DataType())
}

func decimalValue(n decimal128.Num, scale int32) pgtype.Numeric {
	return pgtype.Numeric{Int: new(big.Int).Set(n.BigInt()), Exp: -scale, Valid: true}
}

// checkText finds a text value holding NUL, which PostgreSQL refuses.
func checkText(rec arrow.RecordBatch) error {
	for c, col := range rec.Columns() {
		s, ok := col.(*array.String)
		if !ok || bytes.IndexByte(s.ValueBytes(), 0) < 0 {
			continue
		}
		for r := 0; r < s.Len(); r++ {
			if s.IsValid(r) && strings.IndexByte(s.Value(r), 0) >= 0 {
				return &TextError{Column: rec.ColumnName(c), Row: r}
			}
		}
	}
	return nil
}
