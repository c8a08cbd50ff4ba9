package arrowscan

import (
	"bytes"
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// reusingRows is a driver's Rows at its least helpful: the key is an int
// and the row version's bytes share one buffer that every row, and Close
// (as go-mssqldb's reader goroutine reading ahead), overwrites; the Next
// that ends the rows scribbles over dest.
type reusingRows struct {
	n, rows int
	rv      []byte
	err     error // returned after the rows instead of io.EOF
}

func (r *reusingRows) Columns() []string { return []string{"k", "rv"} }

func (r *reusingRows) Close() error {
	binary.BigEndian.PutUint64(r.rv, 0xdead)
	return nil
}

func (r *reusingRows) Next(dest []driver.Value) error {
	if r.n == r.rows {
		for i := range dest {
			dest[i] = int64(-1)
		}
		if r.err != nil {
			return r.err
		}
		return io.EOF
	}
	r.n++
	binary.BigEndian.PutUint64(r.rv, uint64(r.n))
	dest[0], dest[1] = int64(r.n), r.rv
	return nil
}

// ReadDriver keeps the last row's values as they were when it was
// appended, whatever the driver does with its buffers after, stops at the
// row bound, and returns the driver's error.
func TestReadDriverLast(t *testing.T) {
	table := &schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer, Key: []string{"k"}, Shared: true}
	for _, c := range []struct{ name, typ string }{{"k", "int"}, {"rv", "rowversion"}} {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		require.NoError(t, err)
		table.Columns = append(table.Columns, schemas.Column{Name: c.name, Type: typ})
	}
	require.NoError(t, table.Validate())
	s, err := New(schemas.SQLServer, table)
	require.NoError(t, err)
	for _, tc := range []struct {
		name        string
		rows, limit int
		keep        []int
		stopped     bool
	}{
		{"stopped at the bound", 10, 4, nil, true},
		{"to the end", 3, 4, nil, false},
		{"to the end, kept columns", 3, 4, []int{0, 1}, false},
		{"stopped, the row version kept", 10, 4, []int{1}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
			defer mem.AssertSize(t, 0)
			b := s.NewBatch(mem)
			defer b.Release()
			rows := &reusingRows{rows: tc.rows, rv: make([]byte, 8)}
			var seq int64
			res, err := s.ReadDriver(rows, b, schemas.OpInsert, &seq, Limits{Rows: tc.limit, Last: tc.keep})
			require.NoError(t, err)
			require.NoError(t, rows.Close())
			want := min(tc.rows, tc.limit)
			require.Equal(t, want, res.Rows)
			require.Equal(t, tc.stopped, res.Stopped)
			require.EqualValues(t, want, seq)
			wantRV := binary.BigEndian.AppendUint64(nil, uint64(want))
			require.Equal(t, wantRV, res.Last[1], "the last row version")
			if tc.keep == nil || tc.keep[0] == 0 {
				require.Equal(t, int64(want), res.Last[0], "the last key")
			} else {
				require.Nil(t, res.Last[0])
			}
			rec := b.NewRecordBatch()
			defer rec.Release()
			require.EqualValues(t, want, rec.NumRows())
			for i := range want {
				require.EqualValues(t, i+1, rec.Column(0).(*array.Int32).Value(i))
				require.Equal(t, binary.BigEndian.AppendUint64(nil, uint64(i+1)), rec.Column(1).(*array.FixedSizeBinary).Value(i))
			}
		})
	}
	t.Run("driver error", func(t *testing.T) {
		b := s.NewBatch(nil)
		defer b.Release()
		boom := errors.New("boom")
		var seq int64
		res, err := s.ReadDriver(&reusingRows{rows: 2, rv: make([]byte, 8), err: boom}, b, schemas.OpInsert, &seq, Limits{Rows: 5})
		require.ErrorIs(t, err, boom)
		require.Equal(t, 2, res.Rows)
	})
}

// A query whose columns are not the table's is refused before a row is
// read.
func TestReadDriverRefusesOtherColumns(t *testing.T) {
	table := &schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer, Key: []string{"k"}, Shared: true}
	typ, err := schemas.ParseType(schemas.SQLServer, "int")
	require.NoError(t, err)
	table.Columns = []schemas.Column{{Name: "k", Type: typ}}
	require.NoError(t, table.Validate())
	s, err := New(schemas.SQLServer, table)
	require.NoError(t, err)
	b := s.NewBatch(memory.NewGoAllocator())
	defer b.Release()
	var seq int64
	rows := &reusingRows{rows: 3, rv: make([]byte, 8)}
	_, err = s.ReadDriver(rows, b, schemas.OpInsert, &seq, Limits{Rows: 10})
	require.ErrorContains(t, err, "the query returned 2 columns for 1")
	require.Zero(t, rows.n, "no row read")
}

// memDriverRows hands over rows already decoded as go-mssqldb decodes them.
type memDriverRows struct {
	rows [][]driver.Value
	i    int
}

func (r *memDriverRows) Columns() []string { return make([]string, len(r.rows[0])) }
func (r *memDriverRows) Close() error      { return nil }
func (r *memDriverRows) Next(dest []driver.Value) error {
	if r.i == len(r.rows) {
		return io.EOF
	}
	copy(dest, r.rows[r.i])
	r.i++
	return nil
}

// BenchmarkReadDriver reads chunks of the benchmark's claim line
// (bench.Columns) from go-mssqldb's values with ReadDriver and makes them
// record batches: arrowscan's own share of the SQL Server read path.
func BenchmarkReadDriver(b *testing.B) {
	table := chargesTable(b)
	s, err := New(schemas.SQLServer, table)
	if err != nil {
		b.Fatal(err)
	}
	const chunk = 10000
	rows := make([][]driver.Value, chunk)
	day := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for r := range rows {
		id := make([]byte, 16)
		binary.LittleEndian.PutUint64(id, uint64(r)*0x9E3779B97F4A7C15)
		rv := binary.BigEndian.AppendUint64(nil, uint64(r+1))
		at := day.Add(time.Duration(r) * 10 * time.Millisecond)
		rows[r] = []driver.Value{id, "0001", bytes.Clone(id), "ABCDEF01-2345-6789-ABCD-EF0123456789", "CPT-99213",
			[]byte("1.00"), []byte(fmt.Sprintf("%d.25", r)), []byte("-12345.60"), []byte("0.00"),
			"20200101", "20200102", "A", int64(7), at, int64(8), at, rv}
	}
	mem := memory.NewGoAllocator()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		bt := s.NewBatch(mem)
		var seq int64
		res, err := s.ReadDriver(&memDriverRows{rows: rows}, bt, schemas.OpInsert, &seq, Limits{Rows: chunk + 1, Last: []int{0}})
		if err != nil || res.Rows != chunk {
			b.Fatal(res.Rows, err)
		}
		bt.NewRecordBatch().Release()
		bt.Release()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*chunk), "ns/row")
}
