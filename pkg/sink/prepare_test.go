package sink

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func TestStoreNamesPostgreSQLWouldTruncateAreRefused(t *testing.T) {
	bigint, err := schemas.ParseType(schemas.Postgres, "bigint")
	require.NoError(t, err)
	table := func(name, column string) *schemas.Table {
		return &schemas.Table{Schema: "dbo", Name: name, Dialect: schemas.Postgres, Key: []string{column},
			Columns: []schemas.Column{{Name: column, Type: bigint}}}
	}
	long := strings.Repeat("𝄞", 16) // 64 bytes
	tests := []struct {
		name      string
		table     *schemas.Table
		changeLog bool
		want      string
	}{
		{"names at the limit", table(strings.Repeat("t", 63), strings.Repeat("c", 63)), false, ""},
		{"table name", table(long, "id"), false, "table name"},
		{"change log name", table(strings.Repeat("t", 60), "id"), true, "change log name"},
		{"column name", table("t", long), false, `column name "` + long + `" is 64 bytes`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkNames(tc.table, TableName(tc.table), TableOptions{ChangeLog: tc.changeLog})
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, "silently truncate")
		})
	}
}
