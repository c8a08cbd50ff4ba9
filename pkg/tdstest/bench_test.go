package tdstest_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// streamTable answers every statement with n rows of a 6-column table,
// streamed. Its values are boxed once, so that what is measured is the
// server and the driver.
func streamTable(n int) tdstest.Handler {
	cols := []tdstest.Column{
		{Name: "id", Type: mustType("bigint")},
		{Name: "name", Type: mustType("nvarchar(50)"), Nullable: true},
		{Name: "updated", Type: mustType("datetime2(7)")},
		{Name: "amount", Type: mustType("decimal(18,2)"), Nullable: true},
		{Name: "active", Type: mustType("bit")},
		{Name: "code", Type: mustType("varchar(20)"), Nullable: true},
	}
	const distinct = 1024
	rows := make([][]any, distinct)
	base := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	for i := range rows {
		rows[i] = []any{int64(1_000_000 + i), fmt.Sprintf("Patient Name %d", i), base.Add(time.Duration(i) * 1234567 * time.Microsecond),
			fmt.Sprintf("%d.%02d", i*37, i%100), i%3 == 0, fmt.Sprintf("C-%05d", i)}
		if i%10 == 0 {
			rows[i][3] = nil
		}
	}
	return tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		i := 0
		return []tdstest.Result{{Columns: cols, Stream: func(ctx context.Context, row []any) (bool, error) {
			if i == n {
				return false, nil
			}
			copy(row, rows[i%distinct])
			i++
			return true, nil
		}}}, nil
	})
}

// BenchmarkStreamRows streams b.N rows of a 6-column table through
// database/sql in one query: ns/op and allocs/op are per row, server and
// driver together. -benchtime=1000000x streams a million rows.
func BenchmarkStreamRows(b *testing.B) {
	s := tdstest.Start(b, tdstest.Config{Handler: streamTable(b.N)})
	db, err := openB(b, s)
	require.NoError(b, err)
	var (
		id            int64
		name, code    *string
		updated       time.Time
		amount        []byte
		active        bool
		n             int
		rowsProcessed = b.N
	)
	b.ReportAllocs()
	b.ResetTimer()
	rows, err := db.Query("select id, name, updated, amount, active, code from t")
	require.NoError(b, err)
	for rows.Next() {
		if err := rows.Scan(&id, &name, &updated, &amount, &active, &code); err != nil {
			b.Fatal(err)
		}
		n++
	}
	require.NoError(b, rows.Err())
	rows.Close()
	b.StopTimer()
	require.Equal(b, rowsProcessed, n)
}
