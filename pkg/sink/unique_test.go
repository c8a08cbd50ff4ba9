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
	var s keySet
	for name, f := range build {
		for _, tc := range []struct {
			dup, null, want bool
		}{{want: true}, {dup: true}, {null: true}} {
			col := f(tc.dup, tc.null)
			require.Equal(t, tc.want, s.unique(col), "%s dup=%v null=%v", name, tc.dup, tc.null)
			// Reused between batches: a key of the last batch is no duplicate.
			require.Equal(t, tc.want, s.unique(col), "%s again", name)
			col.Release()
		}
	}
	// Shapes it cannot tell: false, never a guess.
	b := array.NewFloat64Builder(mem)
	defer b.Release()
	b.AppendValues([]float64{1, 2}, nil)
	col := b.NewArray()
	defer col.Release()
	require.False(t, s.unique(col))
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
// blanks ('A' and 'A ' are one key), so its keys always collapse per key.
func TestUniqueKeysOnlyWhereBytesAreEquality(t *testing.T) {
	for typ, want := range map[string]int{
		"character(4)": -1, "character": -1, "character varying(20)": 1, "text": 1, "uuid": 1, "bigint": 1,
	} {
		tg := &Target{key: []string{"k"}, cols: []column{{name: "x", pgType: "text"}, {name: "k", pgType: typ}}}
		require.Equal(t, want, tg.keyIndex(), typ)
	}
	tg := &Target{key: []string{"k", "x"}, cols: []column{{name: "x", pgType: "text"}, {name: "k", pgType: "text"}}}
	require.Equal(t, -1, tg.keyIndex(), "a key of two columns")
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
	g := general.applySQL(false, true)
	general.applies = [4]string{g, g, g, g}

	del := func(key string) change { return change{op: schemas.OpDelete, row: map[string]any{"line_id": key}} }
	upd := func(key, status, paid string) change {
		return change{op: schemas.OpUpdate, row: line(key, status, paid)}
	}
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
