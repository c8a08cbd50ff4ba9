package arrowscan

import (
	"fmt"
	"math/big"
	"sync"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// TestClassOf: a class's size holds the allocation, wastes at most a
// quarter of it (above the smallest class), and sizes grow with classes.
func TestClassOf(t *testing.T) {
	prevClass, prevSize := -1, 0
	for n := 0; n <= 1<<20; n += 1 + n/37 {
		class, size, ok := classOf(n)
		require.True(t, ok, n)
		require.GreaterOrEqual(t, size, n, n)
		if n > minClass {
			require.LessOrEqual(t, size-n, n/4+1, n)
		}
		require.GreaterOrEqual(t, class, prevClass, n)
		if class == prevClass {
			require.Equal(t, prevSize, size, n)
		} else {
			require.Greater(t, size, prevSize, n)
		}
		require.Less(t, class, numClasses)
		prevClass, prevSize = class, size
	}
	_, _, ok := classOf(1<<maxShift + 1)
	require.False(t, ok)
}

// poolTable is a table of every kind of column buffer: fixed-width
// (integers, decimals, UUIDs), variable-length (strings) and booleans,
// nullable.
func poolTable(t *testing.T) *Scanner {
	t.Helper()
	table := &schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer, Key: []string{"k"}}
	for _, c := range []struct{ name, typ string }{
		{"k", "bigint"}, {"code", "varchar(40)"}, {"amt", "numeric(19,2)"}, {"flag", "bit"}, {"guid", "uniqueidentifier"},
	} {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err)
		table.Columns = append(table.Columns, schemas.Column{Name: c.name, Type: typ, Nullable: c.name != "k"})
	}
	s, err := New(schemas.Postgres, table)
	require.NoError(t, err)
	return s
}

// poolRows appends n rows to b, their values a function of from+i.
func poolRows(t *testing.T, b *Batch, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		raw := []any{int64(i), fmt.Sprintf("code-%d-%s", i, "xxxxxxxx"[:i%9]), fmt.Sprintf("%d.%02d", i, i%100), i%3 == 0,
			fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i)}
		if i%7 == 3 {
			raw[1], raw[2], raw[3], raw[4] = nil, nil, nil, nil
		}
		require.NoError(t, b.Append(raw, schemas.OpInsert, int64(i)))
	}
}

// poolBatch reads rows from+0..n-1 into a record batch allocated from mem.
func poolBatch(t *testing.T, s *Scanner, mem memory.Allocator, from, n int) arrow.RecordBatch {
	t.Helper()
	b := s.NewBatch(mem)
	defer b.Release()
	b.Reserve(n, []int{0, 16 * n})
	poolRows(t, b, from, n)
	return b.NewRecordBatch()
}

// TestPoolReusesOnlyReleasedBuffers builds record batches from a Pool that
// poisons every buffer freed to it, and requires each batch to keep its
// values (against the same rows built from Go memory) while others are
// released and later ones reuse their buffers: a buffer that went back to
// the pool while a batch held it would show the poison or a later batch's
// values. A reader goroutine reads one batch all along (under -race, a
// buffer reused while read is a race). A column retained past its batch's
// release keeps its buffers too. Once everything is released the pool has
// freed all it took to the underlying allocator.
func TestPoolReusesOnlyReleasedBuffers(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	pool := NewPool(mem, 64<<20)
	pool.poison = true
	s := poolTable(t)
	const n = 1000

	want := func(from int) arrow.RecordBatch { return poolBatch(t, s, memory.NewGoAllocator(), from, n) }
	requireSame := func(from int, got arrow.RecordBatch) {
		t.Helper()
		w := want(from)
		defer w.Release()
		require.True(t, array.RecordEqual(w, got), "batch of rows from %d changed", from)
	}

	a := poolBatch(t, s, pool, 0, n)
	b := poolBatch(t, s, pool, n, n)
	require.Zero(t, pool.Kept(), "nothing released, nothing kept")

	// A reader holds b throughout.
	bWant := want(n)
	defer bWant.Release()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readErr error
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if !array.RecordEqual(bWant, b) {
				readErr = fmt.Errorf("batch b changed while held")
				return
			}
		}
	})

	// a's code column is retained past a's release.
	code := a.Column(1)
	code.Retain()
	codeWant := want(0)
	defer codeWant.Release()
	a.Release()
	kept := pool.Kept()
	require.Positive(t, kept, "a's buffers (but the retained column's) go back to the pool")

	// c and d take a's buffers; b and a's code column stay as they were.
	c := poolBatch(t, s, pool, 2*n, n)
	require.Less(t, pool.Kept(), kept, "c reuses a's buffers")
	d := poolBatch(t, s, pool, 3*n, n)
	requireSame(2*n, c)
	requireSame(3*n, d)
	require.True(t, array.Equal(codeWant.Column(1), code), "a's retained column changed")
	code.Release()

	c.Release()
	e := poolBatch(t, s, pool, 4*n, n)
	requireSame(3*n, d)
	requireSame(4*n, e)
	close(stop)
	wg.Wait()
	require.NoError(t, readErr)
	requireSame(n, b)

	for _, r := range []arrow.RecordBatch{b, d, e} {
		r.Release()
	}
	require.Zero(t, pool.Kept(), "everything back: the pool keeps nothing")
}

// TestPoolLimit: the pool keeps at most its limit of freed buffers and
// frees the rest to the underlying allocator.
func TestPoolLimit(t *testing.T) {
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	defer mem.AssertSize(t, 0)
	pool := NewPool(mem, 4096)
	held := pool.Allocate(1)
	var bufs [][]byte
	for range 10 {
		bufs = append(bufs, pool.Allocate(1024))
	}
	for _, b := range bufs {
		pool.Free(b)
	}
	require.Equal(t, 4096, pool.Kept())
	require.Equal(t, 4096+64, mem.CurrentAlloc())
	b := pool.Allocate(1000)
	require.Len(t, b, 1000)
	require.Equal(t, make([]byte, 1000), b, "Allocate zeroes what it reuses")
	pool.Free(b)
	pool.Free(held)
	require.Zero(t, pool.Kept())
}

// overwrittenRows are rows off the wire whose values, as pgx's, live in
// one buffer that the next row (and the end of the rows) overwrites.
type overwrittenRows struct {
	memRows
	buf []byte
}

func (r *overwrittenRows) Next() bool {
	for i := range r.buf {
		r.buf[i] = 0xFF
	}
	return r.memRows.Next()
}

func (r *overwrittenRows) RawValues() [][]byte {
	r.buf = r.buf[:0]
	var out [][]byte
	for _, v := range r.memRows.RawValues() {
		if v == nil {
			out = append(out, nil)
			continue
		}
		start := len(r.buf)
		r.buf = append(r.buf, v...)
		out = append(out, r.buf[start:len(r.buf):len(r.buf)])
	}
	return out
}

// TestReadPgxKeepsOnlyTheLastRowsKeptColumns: with Limits.Last, ReadPgx's
// Last holds the kept columns' values of the last row, as they were
// before the rows' buffer was overwritten, whether it stopped at the row
// bound or at the end of the rows, and no other column's.
func TestReadPgxKeepsOnlyTheLastRowsKeptColumns(t *testing.T) {
	s := poolTable(t)
	m := pgtype.NewMap()
	oids := []uint32{pgtype.Int8OID, pgtype.VarcharOID, pgtype.NumericOID, pgtype.BoolOID, pgtype.UUIDOID}
	var fds []pgconn.FieldDescription
	for _, oid := range oids {
		format := int16(pgx.TextFormatCode)
		if f, ok := PgxResultFormats[oid]; ok {
			format = f
		}
		fds = append(fds, pgconn.FieldDescription{DataTypeOID: oid, Format: format})
	}
	var rows [][][]byte
	for i := range 5 {
		var row [][]byte
		for c, v := range []any{int64(100 + i), fmt.Sprintf("code-%d", i),
			pgtype.Numeric{Int: big.NewInt(150), Exp: -2, Valid: true}, true, pgtype.UUID{Bytes: [16]byte{byte(i)}, Valid: true}} {
			raw, err := m.Encode(oids[c], fds[c].Format, v, nil)
			require.NoError(t, err)
			row = append(row, raw)
		}
		rows = append(rows, row)
	}
	for _, tc := range []struct {
		name  string
		limit int
		last  int64
	}{{"stopped at the row bound", 3, 102}, {"at the end of the rows", 10, 104}} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			b := s.NewBatch(mem)
			defer b.Release()
			var seq int64
			res, err := s.ReadPgx(&overwrittenRows{memRows: memRows{fds: fds, rows: rows}}, m, b, schemas.OpInsert, &seq,
				Limits{Rows: tc.limit, Last: []int{1, 0}})
			require.NoError(t, err)
			require.Equal(t, []any{tc.last, fmt.Sprintf("code-%d", tc.last-100), nil, nil, nil}, res.Last)
		})
	}
}
