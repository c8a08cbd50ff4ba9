package arrowscan

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// A colBuf accumulates one column of a Batch in plain Go slices, in place
// of an Arrow builder: a builder's Append costs several capacity checks and
// calls per value (about 20% of the engine's CPU on the benchmark's
// claim-line table), a colBuf's a check, a store and a count. NULLs are
// noted by row and the validity bitmap is written once, by newArray, and
// only when there is a NULL.
//
// newArray hands the slices over to the array (memory.NewBufferBytes: Go
// memory, which the garbage collector frees once the array is unreachable)
// and starts new ones, so that an array never shares memory a later value
// overwrites. The arrays equal the builders' (same type, NULL count and
// values; offsets from 0), except that a column without NULLs has no
// validity buffer.
type colBuf interface {
	appendNull()
	// reserve makes room for rows more values and data more bytes of
	// variable-length values.
	reserve(rows, data int)
	// dataLen returns the bytes of variable-length values appended since
	// the last newArray (0 for fixed-width columns).
	dataLen() int
	newArray() arrow.Array
}

// newColBuf returns the colBuf for values of dt.
func newColBuf(dt arrow.DataType) (colBuf, error) {
	storage := dt
	if e, ok := dt.(arrow.ExtensionType); ok {
		storage = e.StorageType()
	}
	switch t := storage.(type) {
	case *arrow.BooleanType:
		return &boolCol{}, nil
	case *arrow.StringType, *arrow.BinaryType:
		return &varCol{dt: dt}, nil
	case arrow.FixedWidthDataType:
		if t.BitWidth()%8 == 0 {
			return &fixedCol{dt: dt, width: t.BitWidth() / 8}, nil
		}
	}
	return nil, fmt.Errorf("no column buffer for Arrow type %s", dt)
}

// nulls notes the rows of a column's NULLs.
type nulls []int32

// bitmap returns the validity bitmap of n values (nil when none is NULL)
// and the NULL count, and forgets the NULLs.
func (ns *nulls) bitmap(n int) (*memory.Buffer, int) {
	k := len(*ns)
	if k == 0 {
		return nil, 0
	}
	bits := make([]byte, bitutil.BytesForBits(int64(n)))
	bitutil.SetBitsTo(bits, 0, int64(n), true)
	for _, i := range *ns {
		bitutil.ClearBit(bits, int(i))
	}
	*ns = nil
	return memory.NewBufferBytes(bits), k
}

// fixedCol holds fixed-width values (integers, floats, decimals, dates,
// times, timestamps, fixed-size binary and UUIDs) as their bytes in
// Arrow's layout: native byte order, as Arrow's own buffers.
//
// Its slices are used to their capacity, with counts beside them: an
// append stores a value and a count, where appending to a slice in a
// struct would store the slice's pointer (and check for a write barrier)
// every time.
type fixedCol struct {
	dt    arrow.DataType
	width int
	buf   []byte // the values' bytes, then room for more
	n     int    // bytes of values in buf
	nulls nulls
}

// grow makes room for k more bytes.
func (c *fixedCol) grow(k int) {
	c.buf = slices.Grow(c.buf[:c.n], k)
	c.buf = c.buf[:cap(c.buf)]
}

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
	valid, k := c.nulls.bitmap(n)
	data := array.NewData(c.dt, n, []*memory.Buffer{valid, memory.NewBufferBytes(c.buf[:c.n])}, nil, k, 0)
	defer data.Release()
	c.buf, c.n = nil, 0
	return array.MakeFromData(data)
}

// varCol holds variable-length values (strings, binary): their bytes end
// to end and the int32 offset of each value's end after a leading 0. Its
// slices are used to their capacity, as fixedCol's.
type varCol struct {
	dt      arrow.DataType
	offs    []int32 // nil, or the offsets (n+1 of them) and room for more
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
	if c.offs == nil {
		c.offs = []int32{0}
	}
	c.offs = slices.Grow(c.offs[:c.n+1], rows)
	c.offs = c.offs[:cap(c.offs)]
	c.data = slices.Grow(c.data[:c.size], bytes)
	c.data = c.data[:cap(c.data)]
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
	if c.offs == nil {
		c.grow(0, 0) // the leading 0 of no value
	}
	valid, k := c.nulls.bitmap(c.n)
	offs := memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(c.offs[:c.n+1]))
	data := array.NewData(c.dt, c.n, []*memory.Buffer{valid, offs, memory.NewBufferBytes(c.data[:c.size])}, nil, k, 0)
	defer data.Release()
	c.offs, c.data, c.n, c.size = nil, nil, 0, 0
	return array.MakeFromData(data)
}

// boolCol holds booleans as a bitmap.
type boolCol struct {
	bits  []byte
	n     int
	nulls nulls
}

func (c *boolCol) add(x bool) {
	if c.n%8 == 0 {
		c.bits = append(c.bits, 0)
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
	c.bits = slices.Grow(c.bits, int(bitutil.BytesForBits(int64(c.n+rows)))-len(c.bits))
}

func (c *boolCol) dataLen() int { return 0 }

func (c *boolCol) newArray() arrow.Array {
	valid, k := c.nulls.bitmap(c.n)
	data := array.NewData(arrow.FixedWidthTypes.Boolean, c.n, []*memory.Buffer{valid, memory.NewBufferBytes(c.bits)}, nil, k, 0)
	defer data.Release()
	c.bits, c.n = nil, 0
	return array.MakeFromData(data)
}
