package arrowscan

import (
	"encoding/binary"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// A colBuf accumulates one column of a Batch in byte slices allocated from
// the batch's allocator, in place of an Arrow builder: a builder's Append
// costs several capacity checks and calls per value (about 20% of the
// engine's CPU on the benchmark's claim-line table), a colBuf's a check, a
// store and a count. NULLs are noted by row and the validity bitmap is
// written once, by newArray, and only when there is a NULL.
//
// newArray hands the slices over to the array (each a memory.Buffer that
// frees it to the allocator once the array is released) and starts new
// ones, so that an array never shares memory a later value overwrites;
// free returns the slices of rows not yet made an array. Every slice keeps
// the length the allocator gave it (a memory.CheckedAllocator accounts by
// it), with counts beside it. The arrays equal the builders' (same type,
// NULL count and values; offsets from 0), except that a column without
// NULLs has no validity buffer and buffers may be longer than their data.
type colBuf interface {
	appendNull()
	// reserve makes room for rows more values and data more bytes of
	// variable-length values.
	reserve(rows, data int)
	// dataLen returns the bytes of variable-length values appended since
	// the last newArray (0 for fixed-width columns).
	dataLen() int
	newArray() arrow.Array
	// free returns the buffers of values not yet made an array to the
	// allocator. The colBuf is not used after.
	free()
}

// newColBuf returns the colBuf for values of dt, allocating from mem.
func newColBuf(dt arrow.DataType, mem memory.Allocator) (colBuf, error) {
	storage := dt
	if e, ok := dt.(arrow.ExtensionType); ok {
		storage = e.StorageType()
	}
	switch t := storage.(type) {
	case *arrow.BooleanType:
		return &boolCol{mem: mem}, nil
	case *arrow.StringType, *arrow.BinaryType:
		return &varCol{mem: mem, dt: dt}, nil
	case arrow.FixedWidthDataType:
		if t.BitWidth()%8 == 0 {
			return &fixedCol{mem: mem, dt: dt, width: t.BitWidth() / 8}, nil
		}
	}
	return nil, fmt.Errorf("no column buffer for Arrow type %s", dt)
}

// grow returns b (of which used bytes hold values) with room for k more
// bytes: b itself when it has the room, else a larger allocation from mem
// holding b's bytes (b is then freed). It grows as append does, so that
// appending value by value costs amortized constant time. From a Pool, the
// room is not zeroed (Pool.grow) and may exceed what was asked.
func grow(mem memory.Allocator, b []byte, used, k int) []byte {
	if used+k <= len(b) {
		return b
	}
	n := max(used+k, 2*len(b), 64)
	if p, ok := mem.(*Pool); ok {
		return p.grow(b, used, n)
	}
	if b == nil {
		return mem.Allocate(n)
	}
	return mem.Reallocate(n, b)
}

// newArray makes an array of dt of n values, k of them NULL, from bufs and
// hands them over to it: the array frees them to mem once released. Each
// of bufs is the used part of an allocation from mem, whose capacity is
// the allocation's length; a nil one is an absent buffer.
func newArray(mem memory.Allocator, dt arrow.DataType, n, k int, bufs ...[]byte) arrow.Array {
	bs := make([]*memory.Buffer, len(bufs))
	for i, b := range bufs {
		if b != nil {
			bs[i] = memory.NewBufferWithAllocator(b[:cap(b)], mem)
			bs[i].ResizeNoShrink(len(b))
			defer bs[i].Release() // the array data retains it
		}
	}
	data := array.NewData(dt, n, bs, nil, k, 0)
	defer data.Release()
	return array.MakeFromData(data)
}

// free returns b to mem (nothing when b is nil).
func free(mem memory.Allocator, b []byte) {
	if b != nil {
		mem.Free(b)
	}
}

// nullBinary returns an array of dt, a binary type, of n NULLs, allocated
// from mem.
func nullBinary(mem memory.Allocator, dt arrow.DataType, n int) arrow.Array {
	bits := mem.Allocate(int(bitutil.BytesForBits(int64(n))))
	clear(bits)
	offs := mem.Allocate(4 * (n + 1))
	clear(offs)
	return newArray(mem, dt, n, n, bits, offs, mem.Allocate(0))
}

// nulls notes the rows of a column's NULLs.
type nulls []int32

// bitmap returns the validity bitmap of n values allocated from mem (nil
// when none is NULL) and the NULL count, and forgets the NULLs.
func (ns *nulls) bitmap(mem memory.Allocator, n int) ([]byte, int) {
	k := len(*ns)
	if k == 0 {
		return nil, 0
	}
	bits := mem.Allocate(int(bitutil.BytesForBits(int64(n))))
	bitutil.SetBitsTo(bits, 0, int64(n), true)
	for _, i := range *ns {
		bitutil.ClearBit(bits, int(i))
	}
	*ns = (*ns)[:0]
	return bits, k
}

// fixedCol holds fixed-width values (integers, floats, decimals, dates,
// times, timestamps, fixed-size binary and UUIDs) as their bytes in
// Arrow's layout: native byte order, as Arrow's own buffers.
//
// Its slices are used to their length (the allocation), with counts beside them: an
// append stores a value and a count, where appending to a slice in a
// struct would store the slice's pointer (and check for a write barrier)
// every time.
type fixedCol struct {
	mem   memory.Allocator
	dt    arrow.DataType
	width int
	buf   []byte // the values' bytes, then room for more
	n     int    // bytes of values in buf
	nulls nulls
}

// grow makes room for k more bytes.
func (c *fixedCol) grow(k int) { c.buf = grow(c.mem, c.buf, c.n, k) }

func (c *fixedCol) add8(x uint8) {
	if c.n >= len(c.buf) {
		c.grow(1)
	}
	c.buf[c.n] = x
	c.n++
}

func (c *fixedCol) add16(x uint16) {
	if len(c.buf)-c.n < 2 {
		c.grow(2)
	}
	binary.NativeEndian.PutUint16(c.buf[c.n:], x)
	c.n += 2
}

func (c *fixedCol) add32(x uint32) {
	if len(c.buf)-c.n < 4 {
		c.grow(4)
	}
	binary.NativeEndian.PutUint32(c.buf[c.n:], x)
	c.n += 4
}

func (c *fixedCol) add64(x uint64) {
	if len(c.buf)-c.n < 8 {
		c.grow(8)
	}
	binary.NativeEndian.PutUint64(c.buf[c.n:], x)
	c.n += 8
}

// addBytes appends a value given as its width bytes.
func (c *fixedCol) addBytes(b []byte) {
	if len(c.buf)-c.n < len(b) {
		c.grow(len(b))
	}
	c.n += copy(c.buf[c.n:], b)
}

// addInt appends an integer known to fit the column's width.
func (c *fixedCol) addInt(x int64) {
	switch c.width {
	case 1:
		c.add8(uint8(x))
	case 2:
		c.add16(uint16(x))
	case 4:
		c.add32(uint32(x))
	default:
		c.add64(uint64(x))
	}
}

// addDecimal appends a decimal128 as Arrow lays it out: low word first.
func (c *fixedCol) addDecimal(n decimal128.Num) {
	c.add64(n.LowBits())
	c.add64(uint64(n.HighBits()))
}

func (c *fixedCol) appendNull() {
	if len(c.buf)-c.n < c.width {
		c.grow(c.width)
	}
	c.nulls = append(c.nulls, int32(c.n/c.width))
	clear(c.buf[c.n : c.n+c.width])
	c.n += c.width
}

func (c *fixedCol) reserve(rows, _ int) { c.grow(rows * c.width) }

func (c *fixedCol) dataLen() int { return 0 }

func (c *fixedCol) newArray() arrow.Array {
	n := c.n / c.width
	valid, k := c.nulls.bitmap(c.mem, n)
	a := newArray(c.mem, c.dt, n, k, valid, c.buf[:c.n])
	c.buf, c.n = nil, 0
	return a
}

func (c *fixedCol) free() {
	free(c.mem, c.buf)
	c.buf, c.n = nil, 0
}

// varCol holds variable-length values (strings, binary): their bytes end
// to end and the int32 offset of each value's end after a leading 0. Its
// slices are used to their length, as fixedCol's.
type varCol struct {
	mem     memory.Allocator
	dt      arrow.DataType
	ob      []byte  // nil, or the offsets' bytes and room for more
	offs    []int32 // ob as offsets: n+1 of them, then room
	data    []byte  // the values' bytes and room for more
	n, size int     // values; bytes of values
	nulls   nulls
}

// addVar appends one value (a function: methods cannot have type
// parameters, and strings would otherwise be copied to a []byte first).
func addVar[T string | []byte](c *varCol, v T) {
	if c.n+1 >= len(c.offs) || len(c.data)-c.size < len(v) {
		c.grow(1, len(v))
	}
	c.size += copy(c.data[c.size:], v)
	c.n++
	c.offs[c.n] = int32(c.size)
}

// grow makes room for rows more values and bytes more bytes of values.
func (c *varCol) grow(rows, bytes int) {
	first := c.ob == nil
	c.ob = grow(c.mem, c.ob, 4*(c.n+1), 4*rows)
	c.offs = arrow.Int32Traits.CastFromBytes(c.ob)
	if first {
		c.offs[0] = 0
	}
	c.data = grow(c.mem, c.data, c.size, bytes)
}

func (c *varCol) appendNull() {
	if c.n+1 >= len(c.offs) {
		c.grow(1, 0)
	}
	c.nulls = append(c.nulls, int32(c.n))
	c.n++
	c.offs[c.n] = int32(c.size)
}

func (c *varCol) reserve(rows, data int) { c.grow(rows, data) }

func (c *varCol) dataLen() int { return c.size }

func (c *varCol) newArray() arrow.Array {
	if c.ob == nil {
		c.grow(0, 0) // the leading 0 of no value
	}
	valid, k := c.nulls.bitmap(c.mem, c.n)
	a := newArray(c.mem, c.dt, c.n, k, valid, c.ob[:4*(c.n+1)], c.data[:c.size])
	c.ob, c.offs, c.data, c.n, c.size = nil, nil, nil, 0, 0
	return a
}

func (c *varCol) free() {
	free(c.mem, c.ob)
	free(c.mem, c.data)
	c.ob, c.offs, c.data, c.n, c.size = nil, nil, nil, 0, 0
}

// boolCol holds booleans as a bitmap.
type boolCol struct {
	mem   memory.Allocator
	bits  []byte // the bitmap and room for more
	n     int
	nulls nulls
}

func (c *boolCol) add(x bool) {
	if c.n%8 == 0 {
		c.bits = grow(c.mem, c.bits, c.n/8, 1)
		c.bits[c.n/8] = 0
	}
	if x {
		bitutil.SetBit(c.bits, c.n)
	}
	c.n++
}

func (c *boolCol) appendNull() {
	c.nulls = append(c.nulls, int32(c.n))
	c.add(false)
}

func (c *boolCol) reserve(rows, _ int) {
	used := int(bitutil.BytesForBits(int64(c.n)))
	c.bits = grow(c.mem, c.bits, used, int(bitutil.BytesForBits(int64(c.n+rows)))-used)
}

func (c *boolCol) dataLen() int { return 0 }

func (c *boolCol) newArray() arrow.Array {
	valid, k := c.nulls.bitmap(c.mem, c.n)
	a := newArray(c.mem, arrow.FixedWidthTypes.Boolean, c.n, k, valid, c.bits[:bitutil.BytesForBits(int64(c.n))])
	c.bits, c.n = nil, 0
	return a
}

func (c *boolCol) free() {
	free(c.mem, c.bits)
	c.bits, c.n = nil, 0
}
