package tdstest_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

func TestSelectOne(t *testing.T) {
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		return []tdstest.Result{{
			Columns: []tdstest.Column{{Name: "n", Type: typ(t, "int")}, {Name: "s", Type: typ(t, "nvarchar(10)"), Nullable: true}},
			Rows:    [][]any{{int64(1), "one"}, {int64(2), nil}},
		}}, nil
	})
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)
	rows, err := db.Query("select n, s from t")
	require.NoError(t, err)
	defer rows.Close()
	var got []string
	for rows.Next() {
		var n int
		var str *string
		require.NoError(t, rows.Scan(&n, &str))
		if str == nil {
			got = append(got, "nil")
		} else {
			got = append(got, *str)
		}
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"one", "nil"}, got)
}
