package sink

import (
	"context"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestKeySetTellsUniqueKeys(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	u1, u2 := uuid.MustParse(keyA), uuid.MustParse(keyB)
	build := map[string]func(dup, null bool) arrow.Array{
		"int64": func(dup, null bool) arrow.Array {
			b := array.NewInt64Builder(mem)
			defer b.Release()
			b.AppendValues([]int64{1, 2, 3}, nil)
			appendLast(b, dup, null, func() { b.Append(2) })
			return b.NewArray()
		},
		"int32": func(dup, null bool) arrow.Array {
			b := array.NewInt32Builder(mem)
			defer b.Release()
			b.AppendValues([]int32{1, 2, 3}, nil)
			appendLast(b, dup, null, func() { b.Append(3) })
			return b.NewArray()
		},
		"int16": func(dup, null bool) arrow.Array {
			b := array.NewInt16Builder(mem)
			defer b.Release()
			b.AppendValues([]int16{-1, 1}, nil)
			appendLast(b, dup, null, func() { b.Append(-1) })
			return b.NewArray()
		},
		"uuid": func(dup, null bool) arrow.Array {
			b := extensions.NewUUIDBuilder(mem)
			defer b.Release()
			b.Append(u1)
			b.Append(u2)
			appendLast(b, dup, null, func() { b.Append(u1) })
			return b.NewArray()
		},
		"rowversion": func(dup, null bool) arrow.Array {
			b := array.NewFixedSizeBinaryBuilder(mem, &arrow.FixedSizeBinaryType{ByteWidth: 8})
			defer b.Release()
			b.Append([]byte{0, 0, 0, 0, 0, 0, 0, 1})
			b.Append([]byte{1, 0, 0, 0, 0, 0, 0, 0})
			appendLast(b, dup, null, func() { b.Append([]byte{1, 0, 0, 0, 0, 0, 0, 0}) })
			return b.NewArray()
		},
		"string": func(dup, null bool) arrow.Array {
			b := array.NewStringBuilder(mem)
			defer b.Release()
			b.AppendValues([]string{"A-1", "A-10", "a-1", ""}, nil)
			appendLast(b, dup, null, func() { b.Append("A-10") })
			return b.NewArray()
		},
	}
	var scratch []uint64
	keys := func(col arrow.Array) (known, unique bool) {
		tg := &Target{key: []string{"k"}, cols: []column{{name: "k", pgType: "bigint"}}}
		rec := array.NewRecordBatch(arrow.NewSchema([]arrow.Field{{Name: "k", Type: col.DataType(), Nullable: true}}, nil), []arrow.Array{col}, int64(col.Len()))
		defer rec.Release()
		return tg.chunkKeys(rec, keySet{}, &scratch)
	}
	for name, f := range build {
		for _, tc := range []struct {
			dup, null, known, unique bool
		}{{known: true, unique: true}, {dup: true, known: true}, {null: true}} {
			col := f(tc.dup, tc.null)
			known, unique := keys(col)
			require.Equal(t, [2]bool{tc.known, tc.unique}, [2]bool{known, unique}, "%s dup=%v null=%v", name, tc.dup, tc.null)
			col.Release()
		}
	}
	// Shapes it cannot tell: not known, never a guess.
	b := array.NewFloat64Builder(mem)
	defer b.Release()
	b.AppendValues([]float64{1, 2}, nil)
	col := b.NewArray()
	defer col.Release()
	known, unique := keys(col)
	require.False(t, known || unique)
}

// TestCompositeKeysHashWhole: rows are one key only when every key column
// matches, and two chunks are disjoint when no row's whole key is shared.
func TestCompositeKeysHashWhole(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	tg := &Target{key: []string{"practice", "n"}, cols: []column{{name: "n", pgType: "bigint"}, {name: "practice", pgType: "text"}}}
	schema := arrow.NewSchema([]arrow.Field{{Name: "n", Type: arrow.PrimitiveTypes.Int64}, {Name: "practice", Type: arrow.BinaryTypes.String}}, nil)
	chunk := func(ns []int64, ps []string) arrow.RecordBatch {
		b := array.NewRecordBuilder(mem, schema)
		defer b.Release()
		b.Field(0).(*array.Int64Builder).AppendValues(ns, nil)
		b.Field(1).(*array.StringBuilder).AppendValues(ps, nil)
		return b.NewRecordBatch()
	}
	var scratch []uint64
	hash := func(rec arrow.RecordBatch) (keySet, bool) {
		defer rec.Release()
		s := keySet{}
		known, unique := tg.chunkKeys(rec, s, &scratch)
		require.True(t, known)
		return s, unique
	}
	a, unique := hash(chunk([]int64{1, 2, 1}, []string{"P1", "P1", "P2"}))
	require.True(t, unique, "(1,P1) (2,P1) (1,P2) are three keys")
	_, unique = hash(chunk([]int64{1, 2, 1}, []string{"P1", "P1", "P1"}))
	require.False(t, unique, "(1,P1) twice")
	b, _ := hash(chunk([]int64{2, 1}, []string{"P2", "P3"}))
	require.True(t, a.disjoint(b), "(2,P2) (1,P3) share no whole key with the first chunk")
	c, _ := hash(chunk([]int64{9, 2}, []string{"P9", "P1"}))
	require.False(t, a.disjoint(c), "(2,P1) is in both")
	require.False(t, c.disjoint(a), "either way round")
}

func appendLast(b array.Builder, dup, null bool, appendDup func()) {
	switch {
	case dup:
		appendDup()
	case null:
		b.AppendNull()
	}
}

// TestUniqueKeysOnlyWhereBytesAreEquality: character(n) ignores trailing
// blanks ('A' and 'A ' are one key), numeric trailing zeros ('1.0' and
// '1.00'), so a key with such a column is never hashed: its chunks always
// collapse per key, and are never upserted early.
func TestUniqueKeysOnlyWhereBytesAreEquality(t *testing.T) {
	for typ, want := range map[string][]int{
		"character(4)": nil, "character": nil, "numeric": nil, "numeric(19,2)": nil, "timestamp(3) without time zone": nil,
		"character varying(20)": {1}, "character varying": {1}, "text": {1}, "uuid": {1}, "bigint": {1}, "integer": {1}, "bytea": {1},
	} {
		tg := &Target{key: []string{"k"}, cols: []column{{name: "x", pgType: "text"}, {name: "k", pgType: typ}}}
		require.Equal(t, want, tg.keyCols(), typ)
	}
	tg := &Target{key: []string{"k", "x"}, cols: []column{{name: "x", pgType: "text"}, {name: "k", pgType: "text"}}}
	require.Equal(t, []int{1, 0}, tg.keyCols(), "a key of two columns")
	tg.cols[0].pgType = "character(4)"
	require.Nil(t, tg.keyCols(), "a key of two columns, one of them character(4)")
}

// TestEveryApplyFormEndsInTheSameState applies the same chunks through the
// statement chosen for each (unique keys or not, deletes or not) and
// through the general one (collapse, deletes), which is right for any
// chunk: the rows and the counts must be the same.
func TestEveryApplyFormEndsInTheSameState(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	chosen, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	general, err := f.sink.Prepare(ctx, "st-joseph", claimLines(t), TableOptions{})
	require.NoError(t, err)
	g := general.applySQL(false, true, partAll)
	for i := range general.applies {
		general.applies[i] = g
	}

	del := func(key string) change { return change{op: schemas.OpDelete, row: map[string]any{"line_id": key}} }
	chunks := []struct {
		form    int // the index of the statement chosen: 1 unique, 2 deletes
		changes []change
	}{
		{1, []change{ins(key1, "S", "1.00"), ins(key2, "D", "2.00"), ins(key3, "P", "3.00")}},
		{1, []change{ins(key1, "S", "1.00"), upd(key2, "A", "2.50"), ins(key4, "P", "4.00")}}, // a replayed row, an update, a new key
		{0, []change{upd(key2, "B", "2.75"), upd(key2, "C", "2.80"), ins(keyA, "P", "5.00")}},
		{3, []change{del(key1), upd(key3, "R", "3.10"), del(keyC)}}, // keyC is not there
		{2, []change{del(key2), ins(key2, "N", "7.00"), ins(key1, "Z", "8.00"), del(key4)}},
	}
	var from watermarks.Position
	for i, c := range chunks {
		to := cursorAt(int64(i + 1))
		want, err := f.apply(t, general, from, to, c.changes...)
		require.NoError(t, err, "chunk %d", i+1)
		got, err := f.apply(t, chosen, from, to, c.changes...)
		require.NoError(t, err, "chunk %d", i+1)
		require.Equal(t, want, got, "chunk %d", i+1)
		require.NotEmpty(t, chosen.applies[c.form], "chunk %d did not choose statement %d", i+1, c.form)
		require.Equal(t, f.dump(t, general.Ident(), everyColumn...), f.dump(t, chosen.Ident(), everyColumn...), "chunk %d", i+1)
		from = to
	}
	require.Equal(t, []string{key1 + "|Z", key2 + "|N", key3 + "|R", keyA + "|P"}, f.dump(t, chosen.Ident(), "line_id", "status"))
}
