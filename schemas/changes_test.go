package schemas

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"
)

func TestOpString(t *testing.T) {
	tests := []struct {
		op    Op
		want  string
		valid bool
	}{
		{op: OpInsert, want: "insert", valid: true},
		{op: OpUpdate, want: "update", valid: true},
		{op: OpDelete, want: "delete", valid: true},
		{op: 0, want: "op(0)"},
		{op: 4, want: "op(4)"},
		{op: -1, want: "op(-1)"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			require.Equal(t, tt.want, tt.op.String())
			require.Equal(t, tt.valid, tt.op.Valid())
		})
	}
}

func TestChangeSchema(t *testing.T) {
	s, err := ChangeSchema(testTable())
	require.NoError(t, err)
	type field struct {
		name, typ, source string
		nullable          bool
	}
	var got []field
	for _, f := range s.Fields() {
		src, _ := f.Metadata.GetValue(MetaSourceType)
		got = append(got, field{name: f.Name, typ: f.Type.String(), source: src, nullable: f.Nullable})
	}
	require.Equal(t, []field{
		{name: "line_id", typ: "extension<arrow.uuid>", source: "uniqueidentifier"},
		{name: "line_no", typ: "int16", source: "smallint"},
		// NOT NULL at the source, nullable in change batches: a delete may
		// carry the key alone (P16).
		{name: "practice_id", typ: "utf8", source: "char(4)", nullable: true},
		{name: "amount", typ: "decimal(19, 2)", source: "numeric(19,2)", nullable: true},
		{name: "note", typ: "utf8", source: "nvarchar(max)", nullable: true},
		{name: "modify_timestamp", typ: "timestamp[us]", source: "datetime", nullable: true},
		{name: "row_timestamp", typ: "fixed_size_binary[8]", source: "rowversion", nullable: true},
		{name: OpColumn, typ: "int8"},
		{name: SeqColumn, typ: "int64"},
		{name: SourcePosColumn, typ: "binary", nullable: true},
	}, got)
	require.True(t, arrow.TypeEqual(s.Field(0).Type, extensions.NewUUIDType()))
}

func TestChangeSchemaNextGen(t *testing.T) {
	for _, tbl := range NextGen().Tables() {
		t.Run(tbl.Name, func(t *testing.T) {
			s, err := ChangeSchema(tbl)
			require.NoError(t, err)
			require.Equal(t, len(tbl.Columns)+3, s.NumFields())
		})
	}
}

func TestChangeSchemaInvalidTable(t *testing.T) {
	tbl := testTable()
	tbl.Key = []string{"nope"}
	_, err := ChangeSchema(tbl)
	require.ErrorContains(t, err, "key column nope does not exist")
}

// row is one change row of testTable. Nil pointers are NULLs.
type row struct {
	id     *[16]byte
	lineNo *int16
	amount *decimal128.Num // unscaled, scale 2
	note   *string
	op     *int8
	seq    *int64
	pos    []byte
}

func ptr[T any](v T) *T { return &v }

var (
	id1 = [16]byte{0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff}
	id2 = [16]byte{0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10}
)

// goodRows: an insert, an update of the same key, and a delete that carries
// only the key.
func goodRows() []row {
	return []row{
		{id: &id1, lineNo: ptr[int16](1), amount: ptr(decimal128.FromI64(12345)), note: ptr("first"), op: ptr(int8(OpInsert)), seq: ptr[int64](10), pos: []byte{0, 0, 0, 1}},
		{id: &id1, lineNo: ptr[int16](1), amount: ptr(decimal128.FromI64(-99999999999999999)), note: nil, op: ptr(int8(OpUpdate)), seq: ptr[int64](11), pos: []byte{0, 0, 0, 2}},
		{id: &id2, lineNo: ptr[int16](2), op: ptr(int8(OpDelete)), seq: ptr[int64](12)},
	}
}

// buildBatch builds a change batch of testTable's schema. The caller
// releases it.
func buildBatch(t *testing.T, mem memory.Allocator, rows []row) arrow.RecordBatch {
	t.Helper()
	schema, err := ChangeSchema(testTable())
	require.NoError(t, err)
	b := array.NewRecordBuilder(mem, schema)
	defer b.Release()
	for _, r := range rows {
		for i, f := range schema.Fields() {
			fb := b.Field(i)
			switch f.Name {
			case "line_id":
				if r.id == nil {
					fb.AppendNull()
				} else {
					fb.(*extensions.UUIDBuilder).AppendBytes(*r.id)
				}
			case "line_no":
				if r.lineNo == nil {
					fb.AppendNull()
				} else {
					fb.(*array.Int16Builder).Append(*r.lineNo)
				}
			case "amount":
				if r.amount == nil {
					fb.AppendNull()
				} else {
					fb.(*array.Decimal128Builder).Append(*r.amount)
				}
			case "note":
				if r.note == nil {
					fb.AppendNull()
				} else {
					fb.(*array.StringBuilder).Append(*r.note)
				}
			case OpColumn:
				if r.op == nil {
					fb.AppendNull()
				} else {
					fb.(*array.Int8Builder).Append(*r.op)
				}
			case SeqColumn:
				if r.seq == nil {
					fb.AppendNull()
				} else {
					fb.(*array.Int64Builder).Append(*r.seq)
				}
			case SourcePosColumn:
				if r.pos == nil {
					fb.AppendNull()
				} else {
					fb.(*array.BinaryBuilder).Append(r.pos)
				}
			default:
				fb.AppendNull()
			}
		}
	}
	return b.NewRecordBatch()
}

func TestValidateChangeBatchRows(t *testing.T) {
	tests := []struct {
		name    string
		rows    func() []row
		wantErr string
	}{
		{name: "good", rows: goodRows},
		{name: "empty batch", rows: func() []row { return nil }},
		{
			name:    "decreasing seq",
			rows:    func() []row { r := goodRows(); r[2].seq = ptr[int64](11); return r },
			wantErr: "change batch for dbo.lines: row 2: column _ehrsync_seq is not strictly increasing",
		},
		{
			name:    "null seq",
			rows:    func() []row { r := goodRows(); r[1].seq = nil; return r },
			wantErr: "change batch for dbo.lines: row 1: column _ehrsync_seq is null",
		},
		{
			name:    "null key",
			rows:    func() []row { r := goodRows(); r[2].id = nil; return r },
			wantErr: "change batch for dbo.lines: row 2: key column line_id is null",
		},
		{
			name:    "null second key column",
			rows:    func() []row { r := goodRows(); r[0].lineNo = nil; return r },
			wantErr: "change batch for dbo.lines: row 0: key column line_no is null",
		},
		{
			name:    "bad op value",
			rows:    func() []row { r := goodRows(); r[1].op = ptr[int8](4); return r },
			wantErr: "change batch for dbo.lines: row 1: column _ehrsync_op holds an invalid op",
		},
		{
			name:    "zero op",
			rows:    func() []row { r := goodRows(); r[0].op = ptr[int8](0); return r },
			wantErr: "change batch for dbo.lines: row 0: column _ehrsync_op holds an invalid op",
		},
		{
			name:    "null op",
			rows:    func() []row { r := goodRows(); r[2].op = nil; return r },
			wantErr: "change batch for dbo.lines: row 2: column _ehrsync_op is null",
		},
		{
			name:    "decimal wider than precision",
			rows:    func() []row { r := goodRows(); r[1].amount = ptr(decimal128.New(1, 0)); return r }, // 2^64: 20 digits
			wantErr: "change batch for dbo.lines: row 1: column amount holds a value wider than precision 19",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			rec := buildBatch(t, mem, tt.rows())
			defer rec.Release()
			err := ValidateChangeBatch(testTable(), rec)
			if tt.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.wantErr)
			require.NotContains(t, err.Error(), "first", "errors never carry values")
		})
	}
}

func TestValidateChangeBatchSchema(t *testing.T) {
	good, err := ChangeSchema(testTable())
	require.NoError(t, err)
	fields := good.Fields()
	without := func(name string) []arrow.Field {
		var out []arrow.Field
		for _, f := range fields {
			if f.Name != name {
				out = append(out, f)
			}
		}
		return out
	}
	replace := func(name string, change func(*arrow.Field)) []arrow.Field {
		out := good.Fields()
		for i := range out {
			if out[i].Name == name {
				change(&out[i])
			}
		}
		return out
	}
	tests := []struct {
		name    string
		fields  []arrow.Field
		wantErr string
	}{
		{
			name:    "missing op column",
			fields:  without(OpColumn),
			wantErr: "change batch for dbo.lines: missing column _ehrsync_op (position 7 holds _ehrsync_seq)",
		},
		{
			name:    "missing trailing column",
			fields:  without(SourcePosColumn),
			wantErr: "change batch for dbo.lines: missing column _ehrsync_source_pos",
		},
		{
			name:    "missing source column",
			fields:  without("note"),
			wantErr: "change batch for dbo.lines: missing column note (position 4 holds modify_timestamp)",
		},
		{
			name:    "extra column",
			fields:  append(good.Fields(), arrow.Field{Name: "extra", Type: arrow.PrimitiveTypes.Int32}),
			wantErr: "change batch for dbo.lines: unexpected column extra",
		},
		{
			name:    "wrong order",
			fields:  append([]arrow.Field{fields[1], fields[0]}, fields[2:]...),
			wantErr: "change batch for dbo.lines: column line_id is at position 1, want 0",
		},
		{
			name:    "amount as float",
			fields:  replace("amount", func(f *arrow.Field) { f.Type = arrow.PrimitiveTypes.Float64 }),
			wantErr: "change batch for dbo.lines: column amount has type float64, want decimal(19, 2)",
		},
		{
			name:    "uuid as plain fixed-size binary",
			fields:  replace("line_id", func(f *arrow.Field) { f.Type = &arrow.FixedSizeBinaryType{ByteWidth: 16} }),
			wantErr: "change batch for dbo.lines: column line_id has type fixed_size_binary[16], want extension<arrow.uuid>",
		},
		{
			name:    "nullable key",
			fields:  replace("line_no", func(f *arrow.Field) { f.Nullable = true }),
			wantErr: "change batch for dbo.lines: column line_no has nullable=true, want false",
		},
		{
			name:    "op with int16",
			fields:  replace(OpColumn, func(f *arrow.Field) { f.Type = arrow.PrimitiveTypes.Int16 }),
			wantErr: "change batch for dbo.lines: column _ehrsync_op has type int16, want int8",
		},
		{
			name:    "missing field metadata",
			fields:  replace("note", func(f *arrow.Field) { f.Metadata = arrow.Metadata{} }),
			wantErr: `change batch for dbo.lines: column note has field metadata [], want ["ehrsync.source_type": "nvarchar(max)"]`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			b := array.NewRecordBuilder(mem, arrow.NewSchema(tt.fields, nil))
			defer b.Release()
			rec := b.NewRecordBatch()
			defer rec.Release()
			require.EqualError(t, ValidateChangeBatch(testTable(), rec), tt.wantErr)
		})
	}
}

func TestValidateChangeBatchNil(t *testing.T) {
	require.EqualError(t, ValidateChangeBatch(testTable(), nil), "change batch is nil")
}

// TestValidateChangeBatchProjected: a batch of a projected table is checked
// against the projection.
func TestValidateChangeBatchProjected(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	rec := buildBatch(t, mem, goodRows())
	defer rec.Release()
	p, err := testTable().Project([]string{"amount"})
	require.NoError(t, err)
	require.EqualError(t, ValidateChangeBatch(p, rec), "change batch for dbo.lines: column modify_timestamp is at position 5, want 4")
}
