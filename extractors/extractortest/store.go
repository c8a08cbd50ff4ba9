package extractortest

import (
	"context"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
	"github.com/ehrsync/ehrsync/extractors/internal/dialect"
	"github.com/ehrsync/ehrsync/schemas"
)

// row is one row in canonical text form, by column name.
type row map[string]string

// store is the in-memory model of the sink: rows by key, change batches
// applied in order (insert and update upsert, delete removes; a delete of a
// missing key is a no-op).
type store struct {
	table *schemas.Table
	rows  map[string]row
}

func newStore(t *schemas.Table) *store {
	return &store{table: t, rows: map[string]row{}}
}

// apply applies one change batch.
func (s *store) apply(t *testing.T, rec arrow.RecordBatch) {
	t.Helper()
	schema := rec.Schema()
	opIdx := schema.FieldIndices(schemas.OpColumn)[0]
	ops := rec.Column(opIdx).(*array.Int8)
	for i := 0; i < int(rec.NumRows()); i++ {
		r := row{}
		for j, c := range s.table.Columns {
			r[c.Name] = canon(rec.Column(j), i)
		}
		k := s.key(r)
		switch schemas.Op(ops.Value(i)) {
		case schemas.OpInsert, schemas.OpUpdate:
			s.rows[k] = r
		case schemas.OpDelete:
			delete(s.rows, k)
		default:
			t.Fatalf("row %d: invalid op", i)
		}
	}
}

func (s *store) key(r row) string {
	parts := make([]string, len(s.table.Key))
	for i, k := range s.table.Key {
		parts[i] = r[k]
	}
	return strings.Join(parts, "|")
}

// sourceRows reads the source table's rows of the organization's practice
// in canonical form, through a plain SELECT (not through an extractor).
func sourceRows(t *testing.T, d *db, table *schemas.Table) map[string]row {
	t.Helper()
	sc, err := arrowscan.New(d.dialect, table)
	require.NoError(t, err)
	dl, err := dialect.New(d.dialect)
	require.NoError(t, err)
	cols := make([]string, len(table.Columns))
	for i, c := range table.Columns {
		cols[i] = dl.Quote(c.Name)
	}
	query := "SELECT " + strings.Join(cols, ", ") + " FROM " + dl.QuoteTable(table) +
		" WHERE " + dl.Quote(table.Practice) + " = " + d.lit(Practice)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rows, err := d.conn.QueryContext(ctx, query)
	require.NoError(t, err)
	defer rows.Close()
	mem := memory.NewGoAllocator()
	b := sc.NewBatch(mem)
	defer b.Release()
	var seq int64
	_, err = sc.Read(rows, b, schemas.OpInsert, &seq, arrowscan.Limits{Rows: 1 << 30})
	require.NoError(t, err)
	rec := b.NewRecordBatch()
	defer rec.Release()
	s := newStore(table)
	s.apply(t, rec)
	return s.rows
}

// canon renders one Arrow value as text, exactly: decimals at their scale,
// date-times to the microsecond, binary as hex, UUIDs in their text form.
func canon(col arrow.Array, i int) string {
	if col.IsNull(i) {
		return "NULL"
	}
	switch a := col.(type) {
	case *array.Boolean:
		return strconv.FormatBool(a.Value(i))
	case *array.Uint8:
		return strconv.FormatUint(uint64(a.Value(i)), 10)
	case *array.Int16:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.Int32:
		return strconv.FormatInt(int64(a.Value(i)), 10)
	case *array.Int64:
		return strconv.FormatInt(a.Value(i), 10)
	case *array.Float32:
		return strconv.FormatFloat(float64(a.Value(i)), 'g', -1, 32)
	case *array.Float64:
		return strconv.FormatFloat(a.Value(i), 'g', -1, 64)
	case *array.Decimal128:
		return a.Value(i).ToString(a.DataType().(*arrow.Decimal128Type).Scale)
	case *array.String:
		return a.Value(i)
	case *extensions.UUIDArray:
		return a.Value(i).String()
	case *array.FixedSizeBinary:
		return "0x" + hex.EncodeToString(a.Value(i))
	case *array.Binary:
		return "0x" + hex.EncodeToString(a.Value(i))
	case *array.Date32:
		return a.Value(i).ToTime().Format("2006-01-02")
	case *array.Time64:
		return time.UnixMicro(int64(a.Value(i))).UTC().Format("15:04:05.000000")
	case *array.Timestamp:
		s := time.UnixMicro(int64(a.Value(i))).UTC().Format("2006-01-02T15:04:05.000000")
		if a.DataType().(*arrow.TimestampType).TimeZone != "" {
			s += "Z"
		}
		return s
	}
	return "<" + col.DataType().String() + ">"
}
