// Package engine runs syncs: for each table, under its lease, it loads the
// saved position, opens the table's extractor, and hands each chunk to the
// sink, which commits the rows and the new position in one transaction.
//
// The engine defines the small interfaces it needs; extractors and the sink
// implement them without importing each other.
package engine

import (
	"context"
	"database/sql"

	"github.com/ehrsync/ehrsync/schemas"
)

// Describer is an optional ability of a Planner: it describes a table's
// columns as the source has them now, so that the engine reads the table
// as it is (schemas.AdaptToSource) instead of failing mid-run or reading a
// changed column with its old type. Columns returns nil, nil when it cannot
// tell for this dialect.
type Describer interface {
	Columns(ctx context.Context, db *sql.DB, dialect schemas.Dialect, t *schemas.Table) ([]schemas.SourceColumn, error)
}
