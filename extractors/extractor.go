// Package extractors is the contract between the engine and the extractors
// under it: an Extractor opens a Run from a table's saved position, and the
// Run yields the table's changes as Chunks, each an Arrow record batch and
// the position that holds once the batch is committed. The planner builds a
// table's extractors (a Plan) from a PlanRequest.
//
// This package is a leaf: the extractors (cdc, changetracking, hwm,
// snapshot), the planner and the engine import it, and it imports neither
// the engine nor the store.
package extractors

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ehrsync/ehrsync/pkg/config"
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

// ErrExpired means a table's saved position is no longer readable at the
// source: CDC cleanup raised the capture instance's minimum LSN past it
// (PITFALLS P1), or Change Tracking's minimum valid version passed it (P2).
// Changes were lost at the source, so the table must be re-snapshotted (or
// fail, by table policy); it is never skipped silently.
var ErrExpired = errors.New("position expired at the source")

// ExpiredError says which position expired and why. It matches ErrExpired.
type ExpiredError struct {
	Table  string // qualified source table name
	Reason string // e.g. "saved LSN 0x… is below capture instance dbo_claims's minimum 0x…"
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("%s: position expired at the source: %s", e.Table, e.Reason)
}

// Is makes errors.Is(err, ErrExpired) true.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// Bounds are what every extractor's reads share: the practice filter, the
// size of each chunk, each query's timeout, and the allocator of the
// chunks' Arrow buffers. The zero Bounds read every practice with the
// extractor's defaults.
type Bounds struct {
	// Practices restricts the rows read to those whose practice column
	// (the table's Practice) holds one of these ids. Empty: no filter.
	// Tables without a practice column are not filtered; deletes, whose
	// rows are gone, are never filtered.
	Practices []string
	// ChunkRows bounds the rows of one chunk (one query); 0: the default.
	ChunkRows int
	// ChunkBytes bounds a chunk's approximate Arrow bytes; 0: the default.
	// A chunk always holds at least one row.
	ChunkBytes int
	// QueryTimeout bounds each query; 0: the default.
	QueryTimeout time.Duration
	// Allocator allocates the chunks' Arrow buffers, which the batches free
	// to it once released; nil: memory.DefaultAllocator.
	Allocator memory.Allocator
}

// DeleteSeer is an Extractor that knows whether it reports deletes. A
// strategy blind to deletes (a high-water mark, a snapshot) needs key
// reconciliations to find rows deleted at the source.
type DeleteSeer interface {
	SeesDeletes() bool
}

// SeesDeletes reports whether ext reports deletes: an extractor that is
// not a DeleteSeer does not.
func SeesDeletes(ext Extractor) bool {
	d, ok := ext.(DeleteSeer)
	return ok && d.SeesDeletes()
}

// PlanRequest is what the planner needs to know about one table.
type PlanRequest struct {
	DB      *sql.DB
	Dialect schemas.Dialect
	Table   *schemas.Table // the catalog table, projected to the column allow-list
	Config  config.Table
	Bounds  // of every chunk and query of the plan's extractors
}

// Plan is the planner's choice for one table.
type Plan struct {
	Strategy  config.Strategy
	Why       Why       // why the planner chose Strategy
	Extractor Extractor // the table's extractor
	// Table is the table as Extractor reads it when the planner narrowed
	// the request's (computed columns CDC cannot carry); nil: the
	// request's table.
	Table *schemas.Table
	// Keys reads the source's keys for a reconciliation (key-only batches):
	// periodically for strategies blind to deletes, and after a re-snapshot
	// of an expired position for every strategy.
	Keys Extractor
}

// SeesDeletes reports whether the plan's extractor reports deletes; when
// it does not, only reconciliations find deleted rows.
func (p Plan) SeesDeletes() bool { return p.Extractor != nil && SeesDeletes(p.Extractor) }

// KeyRange bounds an operator's ranged backfill to the rows whose primary
// key is in [From, To], both inclusive, compared by the source in its key
// order. A nil bound leaves that side open. Its values are row values:
// never log them.
type KeyRange struct {
	From, To watermarks.Key
}
