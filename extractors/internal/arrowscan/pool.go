package arrowscan

import (
	"math/bits"
	"sync"

	"github.com/apache/arrow-go/v18/arrow/memory"
)

// Pool is a memory.Allocator that keeps the buffers freed to it for the
// allocations after, so that a reader's batches reuse the column buffers of
// the batches the sink has released instead of taking fresh pages from the
// heap (which the kernel zeroes on first touch, and the garbage collector
// scans and returns). A record batch frees its buffers to the Pool when its
// last reference is released (memory.Buffer.Release), never before: a
// buffer is reused only once nothing holds it.
//
// Buffers are kept by size class, four classes per power of two (an
// allocation takes at most a quarter more than it asked for), and at most
// limit bytes of them; a buffer freed beyond that goes back to the
// underlying allocator. Once every buffer the Pool handed out has come back,
// it frees the ones it keeps to the underlying allocator too: a reader's
// pool holds memory only while its batches are in use, and an allocator that
// counts (memory.CheckedAllocator) sees everything freed at the end.
//
// Allocate and Reallocate return zeroed memory, as memory.GoAllocator does.
// A Pool is safe for concurrent use: batches are released by the sink's
// goroutines while the reader allocates the next.
type Pool struct {
	mem   memory.Allocator
	limit int

	mu   sync.Mutex
	free [numClasses][][]byte // kept buffers by class, each of its class's size
	kept int                  // bytes in free
	out  int                  // buffers handed out and not yet freed

	// poison, in tests, overwrites every freed buffer, so that a batch
	// read after its buffers came back shows it.
	poison bool
}

// NewPool returns a Pool allocating from mem (nil: memory.DefaultAllocator)
// and keeping at most limit bytes of freed buffers.
func NewPool(mem memory.Allocator, limit int) *Pool {
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &Pool{mem: mem, limit: max(limit, 0)}
}

// Size classes: 64 bytes, then four per power of two up to 1<<maxShift;
// larger allocations are not kept.
const (
	minClass   = 64
	maxShift   = 40
	numClasses = 1 + 4*(maxShift-6)
)

// classOf returns the class of an allocation of n bytes and its size; ok is
// false when n is too large to keep.
func classOf(n int) (class, size int, ok bool) {
	if n <= minClass {
		return 0, minClass, true
	}
	k := bits.Len(uint(n - 1)) // 1<<(k-1) < n <= 1<<k, k >= 7
	if k > maxShift {
		return 0, 0, false
	}
	step := 1 << (k - 3) // a quarter of the half below 1<<k
	q := (n - 1<<(k-1) + step - 1) / step
	return 1 + 4*(k-7) + q - 1, 1<<(k-1) + q*step, true
}

// Allocate returns n zeroed bytes, taken from a kept buffer of n's class
// when there is one.
func (p *Pool) Allocate(n int) []byte {
	b, reused := p.take(n)
	if reused {
		clear(b)
	}
	return b
}

// grow returns b, of which used bytes hold values, with a length of at
// least n, its first used bytes kept and the rest not zeroed: b itself when
// its capacity holds n, else a new allocation (b is then freed). The column
// buffers grow with it: they write every byte before they read it.
func (p *Pool) grow(b []byte, used, n int) []byte {
	if n <= cap(b) {
		return b[:cap(b)]
	}
	nb, _ := p.take(n)
	copy(nb, b[:min(used, cap(b))])
	if cap(b) > 0 {
		p.Free(b)
	}
	return nb[:cap(nb)]
}

// take returns n bytes from a kept buffer of n's class (reused is true: the
// bytes are not zeroed) or from the underlying allocator.
func (p *Pool) take(n int) (b []byte, reused bool) {
	class, size, ok := classOf(n)
	if !ok {
		b := p.mem.Allocate(n)
		p.mu.Lock()
		p.out++
		p.mu.Unlock()
		return b, false
	}
	p.mu.Lock()
	p.out++
	if l := p.free[class]; len(l) > 0 {
		b = l[len(l)-1]
		l[len(l)-1] = nil
		p.free[class] = l[:len(l)-1]
		p.kept -= size
	}
	p.mu.Unlock()
	if b == nil {
		return p.mem.Allocate(size)[:n], false
	}
	return b[:n], true
}

// Reallocate returns b grown or shrunk to n bytes, its first bytes kept
// and the rest zeroed: b itself when its capacity holds n, else a new
// allocation (b is then freed).
func (p *Pool) Reallocate(n int, b []byte) []byte {
	if n <= cap(b) {
		if n > len(b) {
			clear(b[len(b):n])
		}
		return b[:n]
	}
	nb := p.Allocate(n)
	copy(nb, b)
	if cap(b) > 0 {
		p.Free(b)
	}
	return nb
}

// Free takes back a buffer Allocate or Reallocate returned: it keeps it for
// a later allocation of its class, within the limit, or frees it to the
// underlying allocator.
func (p *Pool) Free(b []byte) {
	b = b[:cap(b)]
	class, size, ok := classOf(len(b))
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.poison {
		for i := range b {
			b[i] = poisonByte
		}
	}
	p.out--
	switch {
	case p.out <= 0:
		p.out = 0
		p.mem.Free(b)
		p.drain()
	case ok && size == len(b) && p.kept+size <= p.limit:
		p.free[class] = append(p.free[class], b)
		p.kept += size
	default:
		p.mem.Free(b)
	}
}

// drain frees the kept buffers to the underlying allocator. p.mu is held.
func (p *Pool) drain() {
	for c, l := range p.free {
		for i, b := range l {
			p.mem.Free(b)
			l[i] = nil
		}
		p.free[c] = l[:0]
	}
	p.kept = 0
}

// Kept returns the bytes of freed buffers the pool keeps.
func (p *Pool) Kept() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.kept
}

// poisonByte fills the buffers a poisoning Pool takes back.
const poisonByte = 0xA5
