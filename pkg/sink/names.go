package sink

import (
	"fmt"

	"github.com/ehrsync/ehrsync/schemas"
)

// maxIdentBytes is PostgreSQL's identifier limit (NAMEDATALEN - 1). A longer
// name is truncated by the server with only a NOTICE: two long names could
// then land in one table or column.
const maxIdentBytes = 63

// checkNames refuses store names PostgreSQL would silently truncate: the
// table's (and its change log's) and each column's. The error names what is
// too long and the fix; names are not row values.
func checkNames(t *schemas.Table, name string, opts TableOptions) error {
	tooLong := func(what, n, fix string) error {
		return fmt.Errorf("prepare %s: %s %q is %d bytes in the store, more than PostgreSQL's %d, which would silently truncate it: %s",
			t.QualifiedName(), what, n, len(n), maxIdentBytes, fix)
	}
	const tableFix = "read the table through a source view with a shorter name, and name the view in a catalog file"
	if len(name) > maxIdentBytes {
		return tooLong("table name", name, tableFix)
	}
	if opts.ChangeLog && len(name+ChangeLogSuffix) > maxIdentBytes {
		return tooLong("change log name", name+ChangeLogSuffix, "turn change_log off for the table, or "+tableFix)
	}
	for _, c := range t.Columns {
		if len(c.Name) > maxIdentBytes {
			return tooLong("column name", c.Name, "leave the column out with the table's columns allow-list, or rename it in a source view")
		}
	}
	return nil
}
