package sink

import (
	"encoding/binary"
	"hash/maphash"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/extensions"
)

// A chunk's keys, hashed, tell two things about its staged rows:
//
//   - whether the chunk holds each key once, so that its apply can skip
//     collapsing the staged changes to the last per key (a sort of the
//     whole chunk on the server). Snapshot, high-water-mark and Change
//     Tracking chunks hold each key once; CDC chunks may not;
//   - which of its keys it shares with the chunk begun before it, so that
//     the upsert of the others can run while that one commits (Pending,
//     "early"), and that of the shared ones after.
//
// Two keys with one hash read as one key: that costs the sort or the
// early upsert, never a wrong result.

var keySeed = maphash.MakeSeed()

// keyCols are the batch columns of the table's key, or nil when the key
// has a column whose store type may hold two different source values as
// one key: character(n) ignores trailing blanks ('A' and 'A '), numeric
// its trailing zeros ('1.0' and '1.00', which a source's unconstrained
// numeric sends as text), and so on. Only the types listed compare their
// values byte for byte.
func (tg *Target) keyCols() []int {
	idx := make([]int, 0, len(tg.key))
	for _, k := range tg.key {
		i := tg.colIndex(k)
		if i < 0 || !bytewiseEqual(tg.cols[i].pgType) {
			return nil
		}
		idx = append(idx, i)
	}
	return idx
}

// bytewiseEqual reports whether the store type's equality is its values'
// bytes (text and varchar under the database's deterministic collation).
func bytewiseEqual(pgType string) bool {
	switch pgType {
	case "smallint", "integer", "bigint", "uuid", "bytea", "text", "character varying":
		return true
	}
	return strings.HasPrefix(pgType, "character varying(")
}

// keySet is the hashes of one chunk's keys.
type keySet map[uint64]struct{}

// chunkKeys hashes the keys of rec's rows into set (cleared first), using
// scratch, and reports whether every row's key could be hashed (a NULL or
// a column type it does not hash cannot) and whether no key hashed twice.
func (tg *Target) chunkKeys(rec arrow.RecordBatch, set keySet, scratch *[]uint64) (known, unique bool) {
	clear(set)
	cols := tg.keyCols()
	if len(cols) == 0 {
		return false, false
	}
	n := int(rec.NumRows())
	if cap(*scratch) < n {
		*scratch = make([]uint64, n)
	}
	hs := (*scratch)[:n]
	clear(hs)
	for _, c := range cols {
		if !hashColumn(rec.Column(c), hs) {
			return false, false
		}
	}
	for _, h := range hs {
		set[h] = struct{}{}
	}
	return true, len(set) == n
}

// lateRows flags each row whose key hash (hs, one per row) is in o, and
// reports whether some row is not flagged: a part of the chunk is then
// upserted early.
func lateRows(hs []uint64, o keySet) (late []bool, some bool) {
	late = make([]bool, len(hs))
	for i, h := range hs {
		_, late[i] = o[h]
		some = some || !late[i]
	}
	return late, some
}

// disjoint reports whether no hash of s is in o.
func (s keySet) disjoint(o keySet) bool {
	if len(o) < len(s) {
		s, o = o, s
	}
	for h := range s {
		if _, ok := o[h]; ok {
			return false
		}
	}
	return true
}

// hashColumn mixes the hash of each of col's values into hs (one per row),
// and reports false for a NULL or a type it does not hash: integers, uuid,
// 8- or 16-byte binary and strings.
func hashColumn(col arrow.Array, hs []uint64) bool {
	if col.NullN() > 0 {
		return false
	}
	var b [8]byte
	mix := func(i int, h uint64) { hs[i] = hs[i]*0x9e3779b97f4a7c15 ^ h }
	ints := func(v func(int) int64) bool {
		for i := range hs {
			binary.LittleEndian.PutUint64(b[:], uint64(v(i)))
			mix(i, maphash.Bytes(keySeed, b[:]))
		}
		return true
	}
	switch a := col.(type) {
	case *array.Int64:
		return ints(a.Value)
	case *array.Int32:
		return ints(func(i int) int64 { return int64(a.Value(i)) })
	case *array.Int16:
		return ints(func(i int) int64 { return int64(a.Value(i)) })
	case *extensions.UUIDArray:
		return hashColumn(a.Storage(), hs)
	case *array.FixedSizeBinary:
		if w := a.DataType().(*arrow.FixedSizeBinaryType).ByteWidth; w != 8 && w != 16 {
			return false
		}
		for i := range hs {
			mix(i, maphash.Bytes(keySeed, a.Value(i)))
		}
		return true
	case *array.String:
		for i := range hs {
			mix(i, maphash.String(keySeed, a.Value(i)))
		}
		return true
	}
	return false
}
