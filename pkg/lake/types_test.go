package lake

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go/table"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// Every source type the mapping maps (the mapping's golden files, both
// dialects) goes into a lake table: the change batch's Arrow type has an
// Iceberg type.
func TestEveryMappedTypeHasALakeType(t *testing.T) {
	for _, d := range []struct {
		dialect schemas.Dialect
		golden  string
	}{{schemas.SQLServer, "mapping_sqlserver.golden"}, {schemas.Postgres, "mapping_postgres.golden"}} {
		t.Run(string(d.dialect), func(t *testing.T) {
			f, err := os.Open("../../schemas/testdata/" + d.golden)
			require.NoError(t, err)
			defer f.Close()
			tb := &schemas.Table{Schema: "dbo", Name: "every_type", Dialect: d.dialect, Key: []string{"k"},
				Columns: []schemas.Column{{Name: "k", Type: mustType(t, d.dialect, "int")}}}
			sc := bufio.NewScanner(f)
			sc.Scan() // the header
			for sc.Scan() {
				parts := strings.Split(sc.Text(), "|")
				if len(parts) < 2 || strings.TrimSpace(parts[1]) == "-" {
					continue
				}
				src, _, _ := strings.Cut(parts[0], " = ")
				tb.Columns = append(tb.Columns, schemas.Column{Name: fmt.Sprintf("c%d", len(tb.Columns)), Type: mustType(t, d.dialect, strings.TrimSpace(src)), Nullable: true})
			}
			require.NoError(t, sc.Err())
			require.Greater(t, len(tb.Columns), 20)
			cs, err := schemas.ChangeSchema(tb)
			require.NoError(t, err)
			ls, err := lakeSchema([]*arrow.Schema{cs})
			require.NoError(t, err)
			ice, err := table.ArrowSchemaToIcebergWithFreshIDs(ls, false)
			require.NoError(t, err)
			require.Len(t, ice.Fields(), len(ls.Fields()))
		})
	}
}

func mustType(t *testing.T, d schemas.Dialect, s string) schemas.Type {
	t.Helper()
	ty, err := schemas.ParseType(d, s)
	require.NoError(t, err, s)
	return ty
}
