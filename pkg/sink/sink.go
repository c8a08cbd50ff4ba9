package sink

import (
	"context"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Sync metadata columns carried by every target table.
const (
	MetaOp       = "_ehrsync_op"        // text: insert, update or delete (the last change applied)
	MetaBatch    = "_ehrsync_batch"     // bigint: the ehrsync.position_history id of the commit that last wrote the row
	MetaSyncedAt = "_ehrsync_synced_at" // timestamptz: when it was applied
	MetaDeleted  = "_ehrsync_deleted"   // boolean: deleted at the source (soft-delete tables)
	// MetaChangeID numbers change-log entries in the order they were applied.
	MetaChangeID = "_ehrsync_change_id"
	// MetaChangeKey identifies a change-log entry: the change's source
	// position, or a digest of its image; an entry is logged once.
	MetaChangeKey = "_ehrsync_change_key"
)

// ChangeLogSuffix ends the name of a table's change log: claims__changes.
const ChangeLogSuffix = "__changes"

// DeletePolicy says what a delete at the source does to the target row.
type DeletePolicy string

const (
	DeleteHard DeletePolicy = "hard" // remove the row
	DeleteSoft DeletePolicy = "soft" // keep it, with _ehrsync_deleted = true
)

// TableOptions shape one target table.
type TableOptions struct {
	// Schema is the store schema the table lives in; empty means SchemaFor(org).
	Schema       string
	DeletePolicy DeletePolicy // empty means DeleteHard
	ChangeLog    bool         // keep an append-only <table>__changes log
	// Lake keeps each committed chunk in the table's lake outbox, for the
	// change lake (LakeOutboxSuffix).
	Lake bool
}

// Sink writes change batches into the store. It is safe for concurrent use;
// each Target is used by one runner at a time.
type Sink struct {
	pool      *pgxpool.Pool
	positions *watermarks.Store
}

// New returns a sink on the store pool. The store's ehrsync schema must be
// migrated (storedb.Migrate).
func New(pool *pgxpool.Pool, positions *watermarks.Store) *Sink {
	return &Sink{pool: pool, positions: positions}
}

// SchemaFor is the store schema of an organization: its name with dashes as
// underscores, so analysts need no quoting (st-mary → st_mary).
func SchemaFor(org string) string { return strings.ReplaceAll(org, "-", "_") }

// TableName is the store name of a source table: the table name for dbo, and
// schema__table otherwise.
func TableName(t *schemas.Table) string {
	if strings.EqualFold(t.Schema, "dbo") || t.Schema == "" {
		return t.Name
	}
	return t.Schema + "__" + t.Name
}

// Target is one table of one organization in the store, ready for batches.
type Target struct {
	sink    *Sink
	org     string
	table   *schemas.Table
	opts    TableOptions
	ident   pgx.Identifier
	changes pgx.Identifier
	outbox  pgx.Identifier // the lake outbox (TableOptions.Lake)
	// lakeSchema is the outbox rows' schema column: schema as an IPC stream.
	lakeSchema []byte
	stage      string // temporary staging table name (per connection, per column set)
	schema     *arrow.Schema
	cols       []column // data columns, in batch order
	key        []string

	// positionTable, when set, is the name the target's position is kept
	// under instead of the table's qualified name (WithPositionTable).
	positionTable string
	// directAfter is the position of the last chunk begun, when that chunk
	// is to be copied straight into the target (direct.go).
	directAfter []byte
	// deferred is set while the target's first snapshot loads it without
	// its indexes, as the chunks begin (deferred.go).
	deferred bool

	applies [12]string // applySQL's statements, built once

	begun *begun // the chunks begun; nil until the first

	// testHookBeforeCommit runs after everything but COMMIT; tests use it to
	// kill the connection at the worst moment.
	testHookBeforeCommit func(ctx context.Context, conn *pgx.Conn) error
}

// column is one data column of the target table.
type column struct {
	name   string
	pgType string // canonical store type
}

// Result counts what one Apply did to the target table.
type Result struct {
	Rows      int64 // change rows in the batch
	Inserted  int64 // keys that were new
	Updated   int64 // existing rows whose content changed
	Deleted   int64 // rows deleted (or soft-deleted)
	Unchanged int64 // keys whose last change was already in effect (replays, deletes of missing rows)
	Logged    int64 // change-log entries appended
	LakeBytes int64 // bytes kept in the lake outbox (TableOptions.Lake)
	// Direct is true when the rows were copied straight into the target
	// (a snapshot chunk into a table empty at the snapshot's start), not
	// staged and upserted.
	Direct bool
}

// WithPositionTable returns a copy of the target whose Apply keeps its
// position under name instead of the table's qualified name (still in the
// same transaction as the rows): an operator's ranged backfill keeps its own
// resumable position beside the table's incremental one, which it never
// moves. NOTIFY payloads still name the table.
func (tg *Target) WithPositionTable(name string) *Target {
	c := *tg
	c.positionTable = name
	c.begun = nil // its chunks are its own
	return &c
}

// positionName is the name the target's position and history are kept
// under: the table's qualified name, or WithPositionTable's.
func (tg *Target) positionName() string {
	if tg.positionTable != "" {
		return tg.positionTable
	}
	return tg.table.QualifiedName()
}

// Ident is the target table's quoted name.
func (tg *Target) Ident() pgx.Identifier { return tg.ident }

// ChangeLogIdent is the change log's quoted name (meaningful with ChangeLog).
func (tg *Target) ChangeLogIdent() pgx.Identifier { return tg.changes }

// Schema is the Arrow schema of the change batches Apply takes.
func (tg *Target) Schema() *arrow.Schema { return tg.schema }

// colIndex is the index of the data column name in tg.cols, and so in
// the batch; -1 when the table has none.
func (tg *Target) colIndex(name string) int {
	for i, c := range tg.cols {
		if c.name == name {
			return i
		}
	}
	return -1
}

// colType is the store type of the data column name; text when the table
// has none.
func (tg *Target) colType(name string) string {
	if i := tg.colIndex(name); i >= 0 {
		return tg.cols[i].pgType
	}
	return "text"
}

// keyList renders the key columns, each prefixed with alias and a dot when
// alias is set.
func (tg *Target) keyList(alias string) string {
	parts := make([]string, len(tg.key))
	for i, k := range tg.key {
		parts[i] = qualify(alias, k)
	}
	return strings.Join(parts, ", ")
}

// keyMatch is the condition that the rows aliased a and b have one key.
func (tg *Target) keyMatch(a, b string) string {
	parts := make([]string, len(tg.key))
	for i, k := range tg.key {
		parts[i] = qualify(a, k) + " = " + qualify(b, k)
	}
	return strings.Join(parts, " AND ")
}

// quotedKey is the key columns' quoted names.
func (tg *Target) quotedKey() []string {
	out := make([]string, len(tg.key))
	for i, k := range tg.key {
		out[i] = pgx.Identifier{k}.Sanitize()
	}
	return out
}

// keyNames is quotedKey as a list.
func (tg *Target) keyNames() string { return strings.Join(tg.quotedKey(), ", ") }

// colNames is the data columns' quoted names, in batch order.
func (tg *Target) colNames() []string {
	names := make([]string, len(tg.cols))
	for i, c := range tg.cols {
		names[i] = pgx.Identifier{c.name}.Sanitize()
	}
	return names
}

// colDefs is the data columns' definitions (quoted name and store type),
// in batch order.
func (tg *Target) colDefs() []string {
	defs := tg.colNames()
	for i, c := range tg.cols {
		defs[i] += " " + c.pgType
	}
	return defs
}

// qualify quotes col, prefixed with alias and a dot when alias is set.
func qualify(alias, col string) string {
	if alias == "" {
		return pgx.Identifier{col}.Sanitize()
	}
	return alias + "." + pgx.Identifier{col}.Sanitize()
}

// prefixAll joins cols with commas, each prefixed with prefix.
func prefixAll(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + c
	}
	return strings.Join(out, ", ")
}
