package schemas

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
)

// Op is a change row's operation.
type Op int8

// The operations. The zero Op is invalid.
const (
	OpInsert Op = 1
	OpUpdate Op = 2
	OpDelete Op = 3
)

// String returns "insert", "update" or "delete" ("op(N)" for anything else).
func (o Op) String() string {
	switch o {
	case OpInsert:
		return "insert"
	case OpUpdate:
		return "update"
	case OpDelete:
		return "delete"
	}
	return "op(" + strconv.Itoa(int(o)) + ")"
}

// Valid reports whether o is OpInsert, OpUpdate or OpDelete.
func (o Op) Valid() bool {
	return o >= OpInsert && o <= OpDelete
}

// Names of the columns ehrsync appends to every change batch.
const (
	// OpColumn holds the row's Op: arrow.PrimitiveTypes.Int8, non-null.
	OpColumn = "_ehrsync_op"
	// SeqColumn holds the row's place in source order:
	// arrow.PrimitiveTypes.Int64, non-null, strictly increasing within a batch.
	SeqColumn = "_ehrsync_seq"
	// SourcePosColumn holds the row's position in the source's global change
	// order when the strategy has one (CDC: start_lsn||command_id||seqval||
	// operation, 10+4+10+1 bytes, compared bytewise): arrow.BinaryTypes.Binary,
	// nullable.
	SourcePosColumn = "_ehrsync_source_pos"
)

// MetaSourceType is the field-metadata key under which change-batch fields
// carry their source type text (Type.String(), e.g. "numeric(19,2)").
const MetaSourceType = "ehrsync.source_type"

// ChangeSchema returns the Arrow schema of change batches for t. It validates
// t. This is the change-batch contract, the definition both the extractors
// and the sink are written against.
//
// Every extractor (CDC, Change Tracking, high-water mark, keyset snapshot)
// produces, and the sink consumes, change batches: arrow.RecordBatch values
// whose schema is exactly ChangeSchema(t) for the (possibly projected) source
// table t. ValidateChangeBatch checks a batch against this contract.
//
// Columns, in this order:
//
//   - t's columns in source order, each typed by Map(t.Dialect, col.Type).Arrow,
//     named exactly as at the source, with field metadata
//     MetaSourceType = col.Type.String(). Key columns are non-nullable; every
//     other column is nullable whatever its source declaration, because a
//     delete may carry the key alone (CDC delete images and the key
//     reconciliation of high-water-mark tables; PITFALLS.md P16).
//   - OpColumn (int8, non-null): the row's Op.
//   - SeqColumn (int64, non-null): the row's place in source order, strictly
//     increasing within a batch. Extractors keep it increasing across the
//     batches of one run too, but consumers rely only on batch order plus
//     in-batch order.
//   - SourcePosColumn (binary, nullable): the row's position in the source's
//     global change order, when the strategy has one, encoded so that
//     bytewise comparison is change order. CDC writes
//     __$start_lsn (10) || __$command_id (4, big-endian) || __$seqval (10) || __$operation (1),
//     25 bytes. Strategies without a per-row global order (snapshot,
//     high-water mark) leave it null. The sink uses it to de-duplicate
//     change-log entries when a window is replayed after a crash.
//
// Rows are in source order. An insert or update carries the full row image
// (every projected column, NULL only where the source value is NULL). A delete
// carries at least the key; its other columns may be null. The sink applies
// rows by key in batch order: the last image per key wins, and a delete of a
// key the store does not hold is a no-op, so replaying a window is idempotent.
//
// Values follow the type mapping (see the package comment): UUIDs in RFC 4122
// byte order, decimals at the column's declared scale, zone-less date-times
// as wall-clock microseconds, instants as UTC microseconds, rowversion as its
// 8 big-endian bytes.
//
// Ownership: the producer of a batch hands it to the consumer, which calls
// Release when done (arrow-go reference counting).
func ChangeSchema(t *Table) (*arrow.Schema, error) {
	if err := t.Validate(); err != nil {
		return nil, err
	}
	fields := make([]arrow.Field, 0, len(t.Columns)+3)
	for _, c := range t.Columns {
		m, err := Map(t.Dialect, c.Type)
		if err != nil {
			return nil, fmt.Errorf("table %s: column %s: %w", t.QualifiedName(), c.Name, err)
		}
		fields = append(fields, arrow.Field{
			Name:     c.Name,
			Type:     m.Arrow,
			Nullable: !t.IsKey(c.Name),
			Metadata: arrow.NewMetadata([]string{MetaSourceType}, []string{c.Type.String()}),
		})
	}
	fields = append(fields,
		arrow.Field{Name: OpColumn, Type: arrow.PrimitiveTypes.Int8},
		arrow.Field{Name: SeqColumn, Type: arrow.PrimitiveTypes.Int64},
		arrow.Field{Name: SourcePosColumn, Type: arrow.BinaryTypes.Binary, Nullable: true},
	)
	return arrow.NewSchema(fields, nil), nil
}

// ValidateChangeBatch checks rec against the change-batch contract for t:
// its fields equal ChangeSchema(t)'s (names, order, types, nullability and
// field metadata; schema-level metadata is ignored); every op is valid; seq
// is non-null and strictly increasing; key columns hold no nulls; decimal
// values fit their precision. Errors name the column and the row index,
// never a value.
func ValidateChangeBatch(t *Table, rec arrow.RecordBatch) error {
	if rec == nil {
		return errors.New("change batch is nil")
	}
	want, err := ChangeSchema(t)
	if err != nil {
		return fmt.Errorf("change schema: %w", err)
	}
	if err := compareFields(want, rec.Schema()); err != nil {
		return fmt.Errorf("change batch for %s: %w", t.QualifiedName(), err)
	}
	if err := checkRows(t, want, rec); err != nil {
		return fmt.Errorf("change batch for %s: %w", t.QualifiedName(), err)
	}
	return nil
}

func compareFields(want, got *arrow.Schema) error {
	for i, w := range want.Fields() {
		if i >= got.NumFields() {
			return fmt.Errorf("missing column %s", w.Name)
		}
		g := got.Field(i)
		if g.Name != w.Name {
			if idx := got.FieldIndices(w.Name); len(idx) > 0 {
				return fmt.Errorf("column %s is at position %d, want %d", w.Name, idx[0], i)
			}
			return fmt.Errorf("missing column %s (position %d holds %s)", w.Name, i, g.Name)
		}
		switch {
		case !arrow.TypeEqual(g.Type, w.Type):
			return fmt.Errorf("column %s has type %s, want %s", w.Name, g.Type, w.Type)
		case g.Nullable != w.Nullable:
			return fmt.Errorf("column %s has nullable=%t, want %t", w.Name, g.Nullable, w.Nullable)
		case !g.Metadata.Equal(w.Metadata):
			return fmt.Errorf("column %s has field metadata %v, want %v", w.Name, g.Metadata, w.Metadata)
		}
	}
	if got.NumFields() > want.NumFields() {
		return fmt.Errorf("unexpected column %s", got.Field(want.NumFields()).Name)
	}
	return nil
}

func checkRows(t *Table, schema *arrow.Schema, rec arrow.RecordBatch) error {
	n := int(rec.NumRows())
	nf := schema.NumFields()
	ops, ok := rec.Column(nf - 3).(*array.Int8)
	if !ok {
		return fmt.Errorf("column %s is not an int8 array", OpColumn)
	}
	seqs, ok := rec.Column(nf - 2).(*array.Int64)
	if !ok {
		return fmt.Errorf("column %s is not an int64 array", SeqColumn)
	}
	for i := range n {
		if ops.IsNull(i) {
			return fmt.Errorf("row %d: column %s is null", i, OpColumn)
		}
		if !Op(ops.Value(i)).Valid() {
			return fmt.Errorf("row %d: column %s holds an invalid op", i, OpColumn)
		}
		if seqs.IsNull(i) {
			return fmt.Errorf("row %d: column %s is null", i, SeqColumn)
		}
		if i > 0 && seqs.Value(i) <= seqs.Value(i-1) {
			return fmt.Errorf("row %d: column %s is not strictly increasing", i, SeqColumn)
		}
	}
	for j, c := range t.Columns {
		col := rec.Column(j)
		if t.IsKey(c.Name) && col.NullN() > 0 {
			for i := range n {
				if col.IsNull(i) {
					return fmt.Errorf("row %d: key column %s is null", i, c.Name)
				}
			}
		}
		if dt, ok := schema.Field(j).Type.(*arrow.Decimal128Type); ok {
			dec, ok := col.(*array.Decimal128)
			if !ok {
				return fmt.Errorf("column %s is not a decimal128 array", c.Name)
			}
			for i := range n {
				if dec.IsValid(i) && !dec.Value(i).FitsInPrecision(dt.Precision) {
					return fmt.Errorf("row %d: column %s holds a value wider than precision %d", i, c.Name, dt.Precision)
				}
			}
		}
	}
	return nil
}
