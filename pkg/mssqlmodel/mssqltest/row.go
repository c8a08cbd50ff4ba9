package mssqltest

import (
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/schemas"
)

// Row is row n of a catalog-shaped table, for writing into a model: every
// column filled by its type, the key unique per n (up to 65535),
// date-times n minutes after a base (a later n is later on a timestamp
// cursor), the practice column "0001", char columns text (cut to their
// length) or, when text is "", n in four digits; rowversion columns are
// left to the model.
func Row(tb *schemas.Table, n int, text string) map[string]any {
	base := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	row := map[string]any{}
	for i, c := range tb.Columns {
		var v any
		switch c.Type.Name {
		case "rowversion", "timestamp":
			continue
		case "uniqueidentifier":
			var u uuid.UUID
			u[0], u[14], u[15] = byte(i), byte(n>>8), byte(n)
			v = u
		case "int", "smallint", "bigint", "tinyint":
			v = n
		case "bit":
			v = n%2 == 1
		case "numeric", "decimal", "money", "smallmoney":
			v = fmt.Sprintf("%d.00", n)
			if c.Type.Scale == 0 {
				v = fmt.Sprintf("%d", n)
			}
		case "datetime", "datetime2", "smalldatetime", "date":
			v = base.Add(time.Duration(n) * time.Minute)
		case "char", "varchar", "nchar", "nvarchar":
			s := text
			if s == "" {
				s = fmt.Sprintf("%04d", n)
			}
			if c.Type.Length > 0 && len(s) > c.Type.Length {
				s = s[len(s)-c.Type.Length:]
			}
			v = s
		default:
			panic("mssqltest.Row: no value for type " + c.Type.Name)
		}
		if c.Name == tb.Practice {
			v = "0001"
		}
		row[c.Name] = v
	}
	return row
}
