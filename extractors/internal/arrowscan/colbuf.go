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
// claim-line table), a colBuf's one append to a slice. NULLs are noted by
// row and the validity bitmap is written once, by newArray, and only when
// there is a NULL.
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
		return &varCol{dt: dt, offs: []int32{0}}, nil
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
type fixedCol struct {
	dt    arrow.DataType
	width int
	vals  []byte
	nulls nulls
}

func (c *fixedCol) add8(x uint8)   { c.vals = append(c.vals, x) }
func (c *fixedCol) add16(x uint16) { c.vals = binary.NativeEndian.AppendUint16(c.vals, x) }
func (c *fixedCol) add32(x uint32) { c.vals = binary.NativeEndian.AppendUint32(c.vals, x) }
func (c *fixedCol) add64(x uint64) { c.vals = binary.NativeEndian.AppendUint64(c.vals, x) }

// addBytes appends a value given as its width bytes.
func (c *fixedCol) addBytes(b []byte) { c.vals = append(c.vals, b...) }

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
	c.nulls = append(c.nulls, int32(len(c.vals)/c.width))
	c.vals = append(c.vals, make([]byte, c.width)...)
}

func (c *fixedCol) reserve(rows, _ int) { c.vals = slices.Grow(c.vals, rows*c.width) }

func (c *fixedCol) dataLen() int { return 0 }

func (c *fixedCol) newArray() arrow.Array {
	n := len(c.vals) / c.width
	valid, k := c.nulls.bitmap(n)
	data := array.NewData(c.dt, n, []*memory.Buffer{valid, memory.NewBufferBytes(c.vals)}, nil, k, 0)
	defer data.Release()
	c.vals = nil
	return array.MakeFromData(data)
}

// varCol holds variable-length values (strings, binary): their bytes
// end to end and the int32 offset of each value's end after a leading 0.
type varCol struct {
	dt    arrow.DataType
	offs  []int32
	data  []byte
	nulls nulls
}

func (c *varCol) add(b []byte) {
	c.data = append(c.data, b...)
	c.offs = append(c.offs, int32(len(c.data)))
}

func (c *varCol) addString(s string) {
	c.data = append(c.data, s...)
	c.offs = append(c.offs, int32(len(c.data)))
}

func (c *varCol) appendNull() {
	c.nulls = append(c.nulls, int32(len(c.offs)-1))
	c.offs = append(c.offs, int32(len(c.data)))
}

func (c *varCol) reserve(rows, data int) {
	c.offs = slices.Grow(c.offs, rows)
	c.data = slices.Grow(c.data, data)
}

func (c *varCol) dataLen() int { return len(c.data) }

func (c *varCol) newArray() arrow.Array {
	n := len(c.offs) - 1
	valid, k := c.nulls.bitmap(n)
	offs := memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(c.offs))
	data := array.NewData(c.dt, n, []*memory.Buffer{valid, offs, memory.NewBufferBytes(c.data)}, nil, k, 0)
	defer data.Release()
	c.offs, c.data = []int32{0}, nil
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
