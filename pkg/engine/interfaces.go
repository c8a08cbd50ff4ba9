// Package engine runs syncs. New builds an Engine from the sink, the
// positions store, the planner and the catalog, with options (logger,
// actor, defaults, metrics, leases, audit).
//
// RunOrg is one organization run, the one both `ehrsync sync` and the
// daemon use: it opens the organization's source once (one connection
// pool, one SSH tunnel under via: ssh) and runs up to parallel_tables
// tables at once on it, under one run id. For each table, under its lease,
// it plans the table (the planner picks a strategy and builds its
// extractor), prepares its target in the store, loads the saved position,
// and hands each chunk the extractor reads to the sink, which commits the
// rows and the new position in one transaction (RunTable). A table that
// fails with a transient error is retried inside the run, by the caller's
// Retry; the caller hears of each table as it ends (OrgRun.Finished), of
// its progress as it goes (OrgRun.Progress), and can stop the run between
// tables (OrgRun.Stop). BackfillRange re-reads a
// key range of one table under a position of its own; pkg/backfill
// orchestrates backfills around it.
//
// The engine defines the small interfaces it needs (Planner, Applier,
// Leaser, Auditor, Views); extractors and the sink implement them without
// importing each other.
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
