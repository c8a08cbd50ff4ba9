package sink

import (
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
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
