package sink

import (
	"fmt"
	"strings"
)

// DriftError says a store column cannot hold what the source now sends: the
// source type changed in a way that would lose data if cast. The table stops;
// other tables go on.
type DriftError struct {
	Table, Column         string
	StoreType, SourceType string
}

func (e *DriftError) Error() string {
	return fmt.Sprintf("column %s of %s is %s in the store but the source now maps to %s, which it cannot hold without loss: "+
		"alter the store column by hand (ALTER TABLE %s ALTER COLUMN %s TYPE %s) if that is safe for the data, or re-create the table with a backfill",
		e.Column, e.Table, e.StoreType, e.SourceType, e.Table, e.Column, e.SourceType)
}

// TextError says a text value holds a NUL character (U+0000), which
// PostgreSQL text cannot store (SQL Server varchar can). The chunk is not
// applied and the table stops at its position; nothing is altered silently.
// Fix the value at the source, or leave the column out with the table's
// column allow-list.
type TextError struct {
	Column string
	Row    int // the row's index in its batch
}

func (e *TextError) Error() string {
	return fmt.Sprintf("column %s, row %d of the batch: the text holds a NUL character, which PostgreSQL text cannot store: "+
		"fix the value at the source, or leave the column out of the table's columns allow-list", e.Column, e.Row)
}

// KeyBuildError says a table's primary key could not be built at the end of
// its first snapshot, which loads the table before it indexes it: the
// source sent two rows with the same key. The pass does not end, and the
// table stops at its position; the rows loaded so far stay, without the
// key, and no other run writes into it until the key is built.
type KeyBuildError struct {
	Table string
	Key   []string
}

func (e *KeyBuildError) Error() string {
	key := strings.Join(e.Key, ", ")
	return fmt.Sprintf("the first snapshot of %[1]s loaded two rows with the same key (%[2]s), so its primary key cannot be built: "+
		"the key is not unique at the source, or two source keys are one value in the store. "+
		"Find them with SELECT %[2]s, count(*) FROM %[1]s GROUP BY %[2]s HAVING count(*) > 1; fix the source, "+
		"then empty the table (TRUNCATE %[1]s) and run `ehrsync positions reset` for it to load it again", e.Table, key)
}
