package sink

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ehrsync/ehrsync/schemas"
)

// A chunk of a table that keeps no change log, and whose columns all have a
// direct binary encoding (encode.go), reaches the apply statement without a
// staging table: each column goes as one query parameter, a PostgreSQL
// binary array encoded straight from the Arrow column, and the statement
// reads the rows from unnest over the arrays. The rows are written once,
// into the target. A table with a change log stages its rows: the log is
// appended at commit from the staged rows and the marks the apply leaves on
// them.

// applyMode says how a Target's staged-or-not chunks reach the apply.
type applyMode int

const (
	applyAuto   applyMode = iota // unnest where the table allows it, staged otherwise
	applyStaged                  // always through the staging table
	applyDeleteCopy
)

// arrayParam is one column's values as a PostgreSQL binary array, sent as a
// query parameter as it is (rawArrayCodec).
type arrayParam []byte

// elemType is a store type's parameter element: its type OID, its array
// type's OID and the array type's SQL name.
type elemType struct {
	oid, arrayOID uint32
	array         string
}

// paramElem returns the parameter element of store type typ, and false for
// a type the unnest path does not send.
func paramElem(typ string) (elemType, bool) {
	switch {
	case typ == "boolean":
		return elemType{pgtype.BoolOID, pgtype.BoolArrayOID, "boolean[]"}, true
	case typ == "smallint":
		return elemType{pgtype.Int2OID, pgtype.Int2ArrayOID, "smallint[]"}, true
	case typ == "integer":
		return elemType{pgtype.Int4OID, pgtype.Int4ArrayOID, "integer[]"}, true
	case typ == "bigint":
		return elemType{pgtype.Int8OID, pgtype.Int8ArrayOID, "bigint[]"}, true
	case typ == "real":
		return elemType{pgtype.Float4OID, pgtype.Float4ArrayOID, "real[]"}, true
	case typ == "double precision":
		return elemType{pgtype.Float8OID, pgtype.Float8ArrayOID, "double precision[]"}, true
	case typ == "text":
		return elemType{pgtype.TextOID, pgtype.TextArrayOID, "text[]"}, true
	case typ == "character varying" || strings.HasPrefix(typ, "character varying("):
		return elemType{pgtype.VarcharOID, pgtype.VarcharArrayOID, "varchar[]"}, true
	case strings.HasPrefix(typ, "character("):
		return elemType{pgtype.BPCharOID, pgtype.BPCharArrayOID, "bpchar[]"}, true
	case typ == "bytea":
		return elemType{pgtype.ByteaOID, pgtype.ByteaArrayOID, "bytea[]"}, true
	case typ == "uuid":
		return elemType{pgtype.UUIDOID, pgtype.UUIDArrayOID, "uuid[]"}, true
	case strings.HasPrefix(typ, "numeric("):
		return elemType{pgtype.NumericOID, pgtype.NumericArrayOID, "numeric[]"}, true
	case typ == "date":
		return elemType{pgtype.DateOID, pgtype.DateArrayOID, "date[]"}, true
	case isTimeType(typ):
		return elemType{pgtype.TimeOID, pgtype.TimeArrayOID, "time[]"}, true
	case strings.HasPrefix(typ, "timestamp") && strings.HasSuffix(typ, "without time zone"):
		return elemType{pgtype.TimestampOID, pgtype.TimestampArrayOID, "timestamp[]"}, true
	case strings.HasPrefix(typ, "timestamp") && strings.HasSuffix(typ, "with time zone"):
		return elemType{pgtype.TimestamptzOID, pgtype.TimestamptzArrayOID, "timestamptz[]"}, true
	}
	return elemType{}, false
}

// paramTypes is the store types of a chunk's parameter columns: the data
// columns, then op and seq.
func (tg *Target) paramTypes() []string {
	types := make([]string, 0, len(tg.cols)+2)
	for _, c := range tg.cols {
		types = append(types, c.pgType)
	}
	return append(types, "smallint", "bigint")
}

// unnests reports whether the target's chunks reach the apply as array
// parameters: no change log, and every column, op and seq with a direct
// encoding as a parameter element. Decided once per Target.
func (tg *Target) unnests() bool {
	if tg.unnest == 0 {
		tg.unnest = 2
		if tg.mode == applyAuto && !tg.opts.ChangeLog && tg.encodesParams() {
			tg.unnest = 1
		}
	}
	return tg.unnest == 1
}

// encodesParams reports whether every parameter column of the target's
// batches has a direct encoding (fieldEncoderFor) and an element type.
func (tg *Target) encodesParams() bool {
	for i, typ := range tg.paramTypes() {
		if _, ok := paramElem(typ); !ok {
			return false
		}
		empty := array.MakeArrayOfNull(memory.DefaultAllocator, tg.schema.Field(i).Type, 0)
		ok := fieldEncoderFor(empty, typ) != nil
		empty.Release()
		if !ok {
			return false
		}
	}
	return true
}

// encodeParams encodes rec's data columns, op and seq as binary arrays,
// the unnest statement's parameters after the batch id.
func (tg *Target) encodeParams(rec arrow.RecordBatch) ([]any, error) {
	types := tg.paramTypes()
	params := make([]any, len(types))
	n := int(rec.NumRows())
	for c, typ := range types {
		col := rec.Column(c)
		f := fieldEncoderFor(col, typ)
		el, ok := paramElem(typ)
		if f == nil || !ok {
			return nil, fmt.Errorf("column %s: no array encoding for %s", rec.ColumnName(c), typ)
		}
		hasNull := uint32(0)
		if col.NullN() > 0 {
			hasNull = 1
		}
		b := make([]byte, 0, 20+n*(4+valueWidth(typ)))
		b = binary.BigEndian.AppendUint32(b, 1) // dimensions
		b = binary.BigEndian.AppendUint32(b, hasNull)
		b = binary.BigEndian.AppendUint32(b, el.oid)
		b = binary.BigEndian.AppendUint32(b, uint32(n))
		b = binary.BigEndian.AppendUint32(b, 1) // lower bound
		for i := range n {
			b = f(b, i) // a COPY field is an array element: length (-1 for NULL), bytes
		}
		params[c] = arrayParam(b)
	}
	return params, nil
}

// valueWidth guesses the bytes of one value of typ, to size a buffer.
func valueWidth(typ string) int {
	switch typ {
	case "boolean":
		return 1
	case "smallint":
		return 2
	case "integer", "real", "date":
		return 4
	case "uuid":
		return 16
	}
	return 8
}

// unnestSource is the CTE that reads a chunk's rows from its array
// parameters ($2 on), with the data columns cast to their store types (a
// length-limited character type stays bpchar or varchar: an explicit cast
// would cut a value the insert refuses).
func (tg *Target) unnestSource() string {
	types := tg.paramTypes()
	var sel, args, names []string
	for i, typ := range types {
		el, _ := paramElem(typ)
		args = append(args, fmt.Sprintf("$%d::%s", i+2, el.array))
	}
	for _, c := range tg.cols {
		q := pgx.Identifier{c.name}.Sanitize()
		names = append(names, q)
		cast := "::" + c.pgType
		if strings.HasPrefix(c.pgType, "character") {
			cast = ""
		}
		sel = append(sel, "u."+q+cast+" AS "+q)
	}
	names = append(names, schemas.OpColumn, schemas.SeqColumn)
	sel = append(sel, "u."+schemas.OpColumn, "u."+schemas.SeqColumn)
	return fmt.Sprintf("src AS (SELECT %s FROM unnest(%s) AS u(%s))",
		strings.Join(sel, ", "), strings.Join(args, ", "), strings.Join(names, ", "))
}

// rawArrayCodec is an array type's codec that sends an arrayParam's bytes
// as they are and leaves every other value to the codec it wraps.
type rawArrayCodec struct{ pgtype.Codec }

func (c rawArrayCodec) PlanEncode(m *pgtype.Map, oid uint32, format int16, value any) pgtype.EncodePlan {
	if _, ok := value.(arrayParam); ok && format == pgtype.BinaryFormatCode {
		return rawArrayPlan{}
	}
	return c.Codec.PlanEncode(m, oid, format, value)
}

type rawArrayPlan struct{}

func (rawArrayPlan) Encode(value any, buf []byte) ([]byte, error) {
	return append(buf, value.(arrayParam)...), nil
}

// rawArrayOIDs is every array type paramElem sends.
var rawArrayOIDs = []uint32{
	pgtype.BoolArrayOID, pgtype.Int2ArrayOID, pgtype.Int4ArrayOID, pgtype.Int8ArrayOID,
	pgtype.Float4ArrayOID, pgtype.Float8ArrayOID, pgtype.TextArrayOID, pgtype.VarcharArrayOID,
	pgtype.BPCharArrayOID, pgtype.ByteaArrayOID, pgtype.UUIDArrayOID, pgtype.NumericArrayOID,
	pgtype.DateArrayOID, pgtype.TimeArrayOID, pgtype.TimestampArrayOID, pgtype.TimestamptzArrayOID,
}

// sendRawArrays wraps the codecs of the connection's array types in
// rawArrayCodec, once per connection.
func sendRawArrays(m *pgtype.Map) {
	if t, ok := m.TypeForOID(rawArrayOIDs[0]); ok {
		if _, done := t.Codec.(rawArrayCodec); done {
			return
		}
	}
	for _, oid := range rawArrayOIDs {
		if t, ok := m.TypeForOID(oid); ok {
			if _, done := t.Codec.(rawArrayCodec); !done {
				m.RegisterType(&pgtype.Type{Name: t.Name, OID: t.OID, Codec: rawArrayCodec{t.Codec}})
			}
		}
	}
}
