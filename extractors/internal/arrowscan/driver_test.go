package arrowscan

import (
	"database/sql/driver"
	"encoding/binary"
	"errors"
	"io"
	"testing"

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
