package bench

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"testing"

	"github.com/stretchr/testify/require"
)

// BenchmarkSQLServerRead reads b.N rows of the bench table from the SQL
// Server stand-in (in this process, TLS off) in one chunk query, two ways:
// through database/sql into *any destinations, a fresh row each time, as
// arrowscan.Scanner.Read does; and from go-mssqldb's driver.Rows below
// database/sql, as a reader like arrowscan.ReadPgx would. ns/op,
// cpu-ns/row (this process's user+system CPU) and allocs/op are per row
// and include the stand-in's own work (the same in both), so their
// difference is what reading below database/sql saves; neither builds
// Arrow columns.
func BenchmarkSQLServerRead(b *testing.B) {
	b.Run("database-sql", func(b *testing.B) {
		src, db := startCharges(b, b.N)
		vals := make([]any, len(Columns))
		dest := make([]any, len(Columns))
		n := 0
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := selfCPU()
		rows, err := db.Query(src.h.first, int64(b.N))
		require.NoError(b, err)
		for rows.Next() {
			vals = make([]any, len(Columns))
			for i := range vals {
				dest[i] = &vals[i]
			}
			if err := rows.Scan(dest...); err != nil {
				b.Fatal(err)
			}
			n++
		}
		require.NoError(b, rows.Err())
		b.StopTimer()
		b.ReportMetric(float64(selfCPU()-cpu0)/float64(b.N), "cpu-ns/row")
		require.NoError(b, rows.Close())
		require.Equal(b, b.N, n)
		_ = vals
	})
	b.Run("driver-rows", func(b *testing.B) {
		src, db := startCharges(b, b.N)
		conn, err := db.Conn(context.Background())
		require.NoError(b, err)
		defer conn.Close()
		n := 0
		b.ReportAllocs()
		b.ResetTimer()
		cpu0 := selfCPU()
		err = conn.Raw(func(dc any) error {
			stmt, err := dc.(driver.ConnPrepareContext).PrepareContext(context.Background(), src.h.first)
			if err != nil {
				return err
			}
			defer stmt.Close()
			rows, err := stmt.(driver.StmtQueryContext).QueryContext(context.Background(), []driver.NamedValue{{Ordinal: 1, Value: int64(b.N)}})
			if err != nil {
				return err
			}
			defer rows.Close()
			dest := make([]driver.Value, len(Columns))
			for {
				if err := rows.Next(dest); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
				n++
			}
		})
		b.StopTimer()
		b.ReportMetric(float64(selfCPU()-cpu0)/float64(b.N), "cpu-ns/row")
		require.NoError(b, err)
		require.Equal(b, b.N, n)
	})
}
