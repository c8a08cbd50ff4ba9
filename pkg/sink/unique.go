package sink

import (
	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
)

// keySet tells whether a batch's keys are unique, so that the apply can
// skip collapsing the staged changes to the last per key (a sort of the
// whole chunk on the server). Snapshot, high-water-mark and Change
// Tracking chunks hold each key once; CDC chunks may not. It keeps its maps
// between batches (a Target applies one batch at a time).
type keySet struct {
	ints  map[int64]struct{}
	bytes map[[16]byte]struct{}
	strs  map[string]struct{}
}

// unique reports whether no key of col appears twice. It answers only for
// single-column keys of integer, uuid, 8- or 16-byte binary or string
// columns without NULLs, and false otherwise: false only costs the sort.
func (s *keySet) unique(col arrow.Array) bool {
	if col.NullN() > 0 {
		return false
	}
	n := col.Len()
	switch a := col.(type) {
	case *array.Int64:
		return uniqueIn(&s.ints, n, func(i int) int64 { return a.Value(i) })
	case *array.Int32:
		return uniqueIn(&s.ints, n, func(i int) int64 { return int64(a.Value(i)) })
	case *array.Int16:
		return uniqueIn(&s.ints, n, func(i int) int64 { return int64(a.Value(i)) })
	case *extensions.UUIDArray:
		fixed := a.Storage().(*array.FixedSizeBinary)
		return uniqueIn(&s.bytes, n, func(i int) [16]byte { return [16]byte(fixed.Value(i)) })
	case *array.FixedSizeBinary:
		switch a.DataType().(*arrow.FixedSizeBinaryType).ByteWidth {
		case 16:
			return uniqueIn(&s.bytes, n, func(i int) [16]byte { return [16]byte(a.Value(i)) })
		case 8:
			return uniqueIn(&s.bytes, n, func(i int) (k [16]byte) {
				copy(k[:], a.Value(i))
				return k
			})
		}
	case *array.String:
		// The strings point into the batch; the map is cleared before it
		// is released.
		return uniqueIn(&s.strs, n, a.Value)
	}
	return false
}

func uniqueIn[K comparable](m *map[K]struct{}, n int, key func(int) K) bool {
	if *m == nil {
		*m = make(map[K]struct{}, n)
	}
	defer clear(*m)
	for i := range n {
		k := key(i)
		if _, dup := (*m)[k]; dup {
			return false
		}
		(*m)[k] = struct{}{}
	}
	return true
}
