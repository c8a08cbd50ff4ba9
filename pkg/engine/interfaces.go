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

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Extractor reads one table's changes from the source. An extractor is built
// for one (org, table) and used by one runner at a time.
type Extractor interface {
	// Open starts a run from pos, the table's saved position (nil: never
	// synced). It fixes the run's window once (for example the upper bound
	// MIN_ACTIVE_ROWVERSION()) and checks that pos has not expired
	// (returning an error matching ErrExpired when it has).
	Open(ctx context.Context, pos watermarks.Position) (Run, error)
}

// Run yields one run's chunks in source order. It is not safe for concurrent
// use.
type Run interface {
	// Next reads the next bounded chunk. The chunk's Batch follows the
	// change-batch contract (schemas.ChangeSchema) and may be nil when the
	// chunk only moves the position (an idle table, PITFALLS P3). The caller
	// releases Batch. Next returns io.EOF after the last chunk.
	Next(ctx context.Context) (Chunk, error)
	// Close ends the run and releases its source resources.
	Close() error
}

// Chunk is one step of a run: the rows, and the position once they are
// committed.
type Chunk struct {
	Batch  arrow.RecordBatch
	To     watermarks.Position
	Reason watermarks.Reason // ReasonSnapshot while snapshotting, ReasonSync otherwise
}

// Describer is an optional ability of a Planner: it describes a table's
// columns as the source has them now, so that the engine reads the table
// as it is (schemas.AdaptToSource) instead of failing mid-run or reading a
// changed column with its old type. Columns returns nil, nil when it cannot
// tell for this dialect.
type Describer interface {
	Columns(ctx context.Context, db *sql.DB, dialect schemas.Dialect, t *schemas.Table) ([]schemas.SourceColumn, error)
}
