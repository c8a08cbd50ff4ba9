// Package sink applies change batches to the store, the cloud PostgreSQL
// database that analytics services read.
//
// A Target is one source table in one organization's schema. Prepare creates
// its table from the catalog (and its change log, when asked) and adds columns
// that appeared at the source. Apply takes one change batch (the contract in
// package schemas) and, in one transaction: copies it into a temporary staging
// table with binary COPY (or, for a snapshot into an empty table, straight
// into the target), collapses it to the last change per key in source
// order, deletes (or soft-deletes) and upserts with set-based SQL, appends every
// change to the change log, moves the table's position (compare-and-set on the
// position the batch was read from), queues a NOTIFY for downstream listeners,
// and commits. There is no way to save a position without the rows it covers.
// Begin, Write and Commit are Apply's steps (Pending): a runner writes the
// next chunk's rows while one commits.
package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/storedb"
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

	// legacyPosition is the jsonb copy of the position that rows carried
	// before MetaBatch; Prepare drops it (position_history keeps every
	// position).
	legacyPosition = "_ehrsync_position"
)

// NotifyChannel is the channel every organization's NOTIFY goes to after
// each committed batch, as well as the organization's own (OrgChannel):
// kept for listeners written before the per-organization channels, and
// deprecated (new listeners use OrgChannel). Its payload, on both, is
// JSON: {"org", "table", "kind", "rows": {"insert", "update", "delete"},
// "position"}, where position is the position's summary
// (watermarks.Position.String: kind, LSN or version, never key or cursor
// values).
const NotifyChannel = "ehrsync_changes"

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
	stage   string // temporary staging table name (per connection, per column set)
	schema  *arrow.Schema
	cols    []column // data columns, in batch order
	key     []string

	// positionTable, when set, is the name the target's position is kept
	// under instead of the table's qualified name (WithPositionTable).
	positionTable string
	// directAfter is the position of the last chunk begun, when that chunk
	// is to be copied straight into the target (direct.go).
	directAfter []byte

	applies [4]string // applySQL's four statements, built once

	begun *begun // the chunks begun; nil until the first

	// testHookBeforeCommit runs after everything but COMMIT; tests use it to
	// kill the connection at the worst moment.
	testHookBeforeCommit func(ctx context.Context, conn *pgx.Conn) error
}

// begun is what Begin knows of a Target's chunks. Only the goroutine that
// begins them uses it, but for open, which their ends count down.
type begun struct {
	last    *Pending     // the chunk begun last
	keySets [2]keySet    // the key hashes of the chunk begun last, and of the one being begun
	keyHash []uint64     // chunkKeys' scratch
	open    atomic.Int32 // chunks begun and not ended
}

type column struct {
	name   string
	pgType string // canonical store type
}

// Prepare creates the organization's schema and the table (and its change
// log) when missing, and reconciles columns with the catalog: columns new at
// the source are added; a store column narrower than the source type is
// widened when that is safe; anything else is an error naming the column.
// t should already be projected to the configured column allow-list.
func (s *Sink) Prepare(ctx context.Context, org string, t *schemas.Table, opts TableOptions) (*Target, error) {
	if opts.Schema == "" {
		opts.Schema = SchemaFor(org)
	}
	if opts.DeletePolicy == "" {
		opts.DeletePolicy = DeleteHard
	}
	if opts.DeletePolicy != DeleteHard && opts.DeletePolicy != DeleteSoft {
		return nil, fmt.Errorf("prepare %s: unknown delete policy %q (want hard or soft)", t.QualifiedName(), opts.DeletePolicy)
	}
	schema, err := schemas.ChangeSchema(t)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", t.QualifiedName(), err)
	}
	name := TableName(t)
	if err := checkNames(t, name, opts); err != nil {
		return nil, err
	}
	tg := &Target{
		sink: s, org: org, table: t, opts: opts, schema: schema, key: t.Key,
		ident:   pgx.Identifier{opts.Schema, name},
		changes: pgx.Identifier{opts.Schema, name + ChangeLogSuffix},
	}
	for _, c := range t.Columns {
		m, err := schemas.Map(t.Dialect, c.Type)
		if err != nil {
			return nil, fmt.Errorf("prepare %s: column %s: %w", t.QualifiedName(), c.Name, err)
		}
		tg.cols = append(tg.cols, column{name: c.Name, pgType: m.Postgres})
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Processes preparing tables of one schema at once serialize here
		// (CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent
		// creator); the schema's lock is always taken first.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('ehrsync.prepare'), hashtext($1))", pgx.Identifier{opts.Schema}.Sanitize()); err != nil {
			return err
		}
		// A writer role without CREATE on the database writes into the
		// schema the owner made for it (storedb.EnsureSchemas): even
		// CREATE SCHEMA IF NOT EXISTS would be refused it.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgx.Identifier{opts.Schema}.Sanitize()).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{opts.Schema}.Sanitize()); err != nil {
				return err
			}
		}
		if err := tg.canonicalTypes(ctx, tx); err != nil {
			return err
		}
		if err := tg.ensureTable(ctx, tx, tg.ident, tg.createTableSQL()); err != nil {
			return err
		}
		if opts.ChangeLog {
			return tg.ensureTable(ctx, tx, tg.changes, tg.createChangeLogSQL())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prepare %s for %s: %w", t.QualifiedName(), org, err)
	}
	h := sha256.New()
	for _, c := range tg.cols {
		fmt.Fprintf(h, "%s %s,", c.name, c.pgType)
	}
	tg.stage = "ehrsync_stage_" + hex.EncodeToString(h.Sum(nil))[:16]
	return tg, nil
}

// canonicalTypes rewrites each wanted type in PostgreSQL's own spelling
// (format_type), by creating a throwaway table, so that comparisons with the
// existing table are exact.
func (tg *Target) canonicalTypes(ctx context.Context, tx pgx.Tx) error {
	defs := make([]string, len(tg.cols))
	for i, c := range tg.cols {
		defs[i] = pgx.Identifier{c.name}.Sanitize() + " " + c.pgType
	}
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE ehrsync_probe ("+strings.Join(defs, ", ")+") ON COMMIT DROP"); err != nil {
		return fmt.Errorf("check store types: %w", err)
	}
	types, err := columnTypes(ctx, tx, "pg_temp.ehrsync_probe")
	if err != nil {
		return err
	}
	for i := range tg.cols {
		tg.cols[i].pgType = types[tg.cols[i].name]
	}
	_, err = tx.Exec(ctx, "DROP TABLE pg_temp.ehrsync_probe")
	return err
}

// columnTypes returns a table's columns and their types, nil when the table
// does not exist.
func columnTypes(ctx context.Context, tx pgx.Tx, table string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	types := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		types[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	if len(types) == 0 {
		return nil, nil
	}
	return types, nil
}

func (tg *Target) ensureTable(ctx context.Context, tx pgx.Tx, ident pgx.Identifier, create string) error {
	have, err := columnTypes(ctx, tx, ident.Sanitize())
	if err != nil {
		return err
	}
	if have == nil {
		if _, err := tx.Exec(ctx, create); err != nil {
			return fmt.Errorf("create %s: %w", ident.Sanitize(), err)
		}
		return nil
	}
	if err := migrateMeta(ctx, tx, ident, have); err != nil {
		return err
	}
	var problems []error
	for _, c := range tg.cols {
		col := pgx.Identifier{c.name}.Sanitize()
		got, ok := have[c.name]
		switch {
		case !ok:
			// New at the source (or newly allowed): add it. Rows synced
			// before have NULL there until they change or are backfilled.
			_, err = tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" ADD COLUMN "+col+" "+c.pgType)
		case got == c.pgType || holds(got, c.pgType):
			continue
		case holds(c.pgType, got):
			_, err = tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" ALTER COLUMN "+col+" TYPE "+c.pgType)
		default:
			err = &DriftError{Table: ident.Sanitize(), Column: c.name, StoreType: got, SourceType: c.pgType}
		}
		if err != nil {
			problems = append(problems, err)
		}
	}
	return errors.Join(problems...)
}

// migrateMeta brings the sync metadata of a table created by an earlier
// version up to date: rows used to carry a jsonb copy of their chunk's
// position (_ehrsync_position); they now carry the id of the commit's
// position-history entry (_ehrsync_batch), which holds that position. The
// drop is a catalog change (no rewrite); the positions stay in
// ehrsync.position_history.
func migrateMeta(ctx context.Context, tx pgx.Tx, ident pgx.Identifier, have map[string]string) error {
	if _, ok := have[MetaBatch]; !ok {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" ADD COLUMN IF NOT EXISTS "+MetaBatch+" bigint"); err != nil {
			return fmt.Errorf("add %s to %s: %w", MetaBatch, ident.Sanitize(), err)
		}
	}
	if _, ok := have[legacyPosition]; ok {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" DROP COLUMN IF EXISTS "+legacyPosition); err != nil {
			return fmt.Errorf("drop %s from %s (it is replaced by %s; drop or change what depends on it, a view for instance): %w",
				legacyPosition, ident.Sanitize(), MetaBatch, err)
		}
	}
	return nil
}

func (tg *Target) createTableSQL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s (", tg.ident.Sanitize())
	keys := map[string]bool{}
	for _, k := range tg.key {
		keys[k] = true
	}
	for _, c := range tg.cols {
		fmt.Fprintf(&b, "%s %s", pgx.Identifier{c.name}.Sanitize(), c.pgType)
		if keys[c.name] {
			b.WriteString(" NOT NULL")
		}
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "%s text NOT NULL, %s bigint, %s timestamptz NOT NULL DEFAULT now(), %s boolean NOT NULL DEFAULT false, PRIMARY KEY (%s))",
		MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted, tg.keyList(""))
	return b.String()
}

func (tg *Target) createChangeLogSQL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s (%s bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ", tg.changes.Sanitize(), MetaChangeID)
	for _, c := range tg.cols {
		fmt.Fprintf(&b, "%s %s, ", pgx.Identifier{c.name}.Sanitize(), c.pgType)
	}
	fmt.Fprintf(&b, "%s text NOT NULL, %s bigint NOT NULL, %s bytea, %s bytea NOT NULL UNIQUE, %s bigint, %s timestamptz NOT NULL DEFAULT now())",
		MetaOp, schemas.SeqColumn, schemas.SourcePosColumn, MetaChangeKey, MetaBatch, MetaSyncedAt)
	return b.String()
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

func qualify(alias, col string) string {
	if alias == "" {
		return pgx.Identifier{col}.Sanitize()
	}
	return alias + "." + pgx.Identifier{col}.Sanitize()
}

// Result counts what one Apply did to the target table.
type Result struct {
	Rows      int64 // change rows in the batch
	Inserted  int64 // keys that were new
	Updated   int64 // existing rows whose content changed
	Deleted   int64 // rows deleted (or soft-deleted)
	Unchanged int64 // keys whose last change was already in effect (replays, deletes of missing rows)
	Logged    int64 // change-log entries appended
	// Direct is true when the rows were copied straight into the target
	// (a snapshot chunk into a table empty at the snapshot's start), not
	// staged and upserted.
	Direct bool
}

// Apply applies one change batch and moves the table's position from m.From
// to m.To, all in one transaction: Begin, Write and Commit in a row. rec may
// be nil or empty: an idle table still moves its position (PITFALLS P3). The
// caller keeps ownership of rec. m.Org and m.Table are set from the target.
// On any error nothing is applied and the position does not move; a position
// that moved since m.From was read gives watermarks.ErrPositionMoved.
func (tg *Target) Apply(ctx context.Context, rec arrow.RecordBatch, m watermarks.Move) (Result, error) {
	p, err := tg.Begin(ctx, rec, m)
	if err != nil {
		return Result{}, err
	}
	if err := p.Write(ctx); err != nil {
		return Result{}, err
	}
	return p.Commit(ctx)
}

// Pending is one chunk's transaction, in three steps so that a runner can
// write the next chunk's rows while this one commits, each on a store
// connection of its own:
//
//   - Begin takes the chunk's store connection and, for a chunk with rows,
//     opens the transaction, reserves the commit's history id and takes the
//     chunk's lock (an advisory lock held until it ends). The chunks of a
//     Target begin one at a time, in read order: whether a chunk may go
//     straight into the target, or be upserted early, depends on the one
//     begun before it, and a chunk never waits for a connection while a
//     later one holds one and waits for it to commit.
//   - Write copies the rows, into the target (direct.go) or into the
//     connection's staging table. A staged chunk is upserted there and then
//     ("early") when the one other chunk open is the one begun before it,
//     which has rows, and the keys of both are known and disjoint: the two
//     upserts touch disjoint rows and run at once. An early chunk's Write
//     then waits, on the server, for the lock of the chunk before it, and
//     returns once that one has ended: write each chunk on a goroutine of
//     its own, as the engine does. The chunk holds row locks while it waits,
//     and a wait the server sees is one its deadlock detector can break,
//     should a transaction outside ehrsync hold a row the chunk before
//     needs and wait for one of this chunk's. Otherwise Write takes no lock
//     another chunk's transaction waits for: a direct chunk's keys are its
//     own, and staging tables are per connection.
//   - Commit claims the position (waiting for a chunk that holds it to end,
//     and failing with watermarks.ErrPositionMoved unless it is still m.From),
//     applies staged rows not yet applied, moves the position, records it
//     and commits. Chunks commit in read order: a chunk's From is the To of
//     the one before it, so a chunk committed before that one, or after it
//     failed, is refused by the claim and commits nothing, its early upsert
//     with it.
//
// A step that fails rolls back and releases the connection; so does Abort,
// for a chunk that will not be committed. A Pending is used by one goroutine
// at a time.
type Pending struct {
	tg     *Target
	conn   *pgxpool.Conn // acquired by Begin (in read order); nil once done
	rec    arrow.RecordBatch
	m      watermarks.Move
	c      commit
	direct directPlan
	apply  string // the staged apply, should the rows be staged
	res    Result
	ended  bool // committed, failed or aborted

	lock    int32       // the chunk's advisory lock (storedb.ChunkLockClass, lock); 0: an idle chunk, which takes none
	keys    keySet      // its key hashes; nil when not known
	early   bool        // its staged rows are upserted in Write
	waitFor int32       // the lock an early chunk waits for: the chunk before's
	closed  atomic.Bool // ended, as the goroutine that begins chunks sees it
}

// Begin starts applying rec with m: the first of Pending's steps. The caller
// keeps ownership of rec and must keep it until Write returns.
func (tg *Target) Begin(ctx context.Context, rec arrow.RecordBatch, m watermarks.Move) (*Pending, error) {
	m.Org, m.Table = tg.org, tg.table.QualifiedName()
	if tg.positionTable != "" {
		m.Table = tg.positionTable
	}
	p := &Pending{tg: tg, m: m}
	if rec != nil && rec.NumRows() > 0 {
		if err := schemas.ValidateChangeBatch(tg.table, rec); err != nil {
			return nil, tg.errorf(err)
		}
		if err := checkText(rec); err != nil {
			return nil, tg.errorf(err)
		}
		p.rec, p.res.Rows = rec, rec.NumRows()
	}
	p.m.Rows = p.res.Rows
	pos, err := watermarks.Encode(m.To)
	if err != nil {
		return nil, tg.errorf(err)
	}
	p.c.pos = pos
	// Every chunk, an idle one too, takes its connection here, in read
	// order: a chunk never waits for a connection while a later one holds
	// one and waits for it to commit.
	if p.conn, err = tg.sink.pool.Acquire(ctx); err != nil {
		return nil, tg.errorf(err)
	}
	if tg.begun == nil {
		tg.begun = &begun{}
	}
	bg := tg.begun
	prev, open := bg.last, bg.open.Add(1)-1 // open: the others
	bg.last = p
	if p.rec == nil {
		return p, nil // Commit begins and does it all, in one batch
	}
	p.lock = nextChunkLock()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	tg.sink.positions.QueueReserve(b, &p.c.id, &p.c.at)
	b.Queue("SELECT pg_advisory_xact_lock($1, $2)", storedb.ChunkLockClass, p.lock)
	b.Queue(tg.createStageSQL()) // before planDirect's savepoint, which a fallback rolls back to
	p.direct = tg.planDirect(b, rec, p.m)
	if err := p.conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, p.fail(ctx, err)
	}
	p.m.Batch = p.c.id
	tg.directAfter = nil
	if p.direct.take() {
		tg.directAfter = pos
		p.apply = tg.applyStatement(false, false) // should the direct COPY fall back: inserts only
		return p, nil
	}
	set := bg.keySets[0]
	if set == nil {
		set = keySet{}
	}
	bg.keySets[0], bg.keySets[1] = bg.keySets[1], set // the one begun last is the other
	known, unique := tg.chunkKeys(rec, set, &bg.keyHash)
	deletes := !onlyOps(rec, len(tg.cols), func(op schemas.Op) bool { return op != schemas.OpDelete })
	p.apply = tg.applyStatement(unique, deletes)
	if !known {
		return p, nil
	}
	p.keys = set
	if open == 1 && !prev.closed.Load() && prev.keys != nil && set.disjoint(prev.keys) {
		// prev, begun last and not ended, is the one chunk open; it has
		// rows (keys), so a lock.
		p.early, p.waitFor = true, prev.lock
	}
	return p, nil
}

var chunkLocks atomic.Int32

func init() { chunkLocks.Store(rand.Int32()) }

// nextChunkLock returns the second key of a chunk's advisory lock (the
// first is storedb.ChunkLockClass), never 0. Two processes'
// chunks that draw one key wait for each other's end: a delay, seen by
// the server, never a wrong result.
func nextChunkLock() int32 {
	for {
		if k := chunkLocks.Add(1); k != 0 {
			return k
		}
	}
}

// Write copies the rows begun: the second step.
func (p *Pending) Write(ctx context.Context) error {
	if p.ended {
		return p.tg.errorf(errDone)
	}
	if p.rec == nil {
		return nil // idle, or written
	}
	direct, err := p.tg.applyDirect(ctx, p.conn.Conn(), p.rec, p.direct, p.c, &p.res)
	if err == nil && !direct {
		err = p.tg.copyToStage(ctx, p.conn.Conn(), p.rec)
	}
	p.rec = nil // written: the caller may release it
	if err == nil && !direct && p.early {
		b := &pgx.Batch{}
		p.queueApply(b)
		b.Queue("SELECT pg_advisory_xact_lock_shared($1, $2)", storedb.ChunkLockClass, p.waitFor)
		err = p.conn.SendBatch(ctx, b).Close()
	}
	if err != nil {
		return p.fail(ctx, err)
	}
	return nil
}

// Commit moves the position and commits: the last step. It returns what
// the chunk did to the target.
func (p *Pending) Commit(ctx context.Context) (Result, error) {
	tg := p.tg
	if p.ended || p.rec != nil {
		return Result{}, tg.errorf(errDone)
	}
	b := &pgx.Batch{}
	if p.res.Rows == 0 { // an idle chunk: its connection is not in a transaction yet
		b.Queue("BEGIN")
	}
	tg.sink.positions.QueueClaim(b, p.m.Org, p.m.Table, p.m.From)
	if p.res.Rows > 0 && !p.res.Direct {
		if !p.early { // an early chunk's ran in Write
			p.queueApply(b)
		}
		p.queueChangeLog(b)
		if !p.early { // the notice counts what the apply did
			if err := p.conn.SendBatch(ctx, b).Close(); err != nil {
				return Result{}, p.fail(ctx, err)
			}
			b = &pgx.Batch{}
		}
	}
	if err := tg.sink.positions.QueueAdvance(b, p.m); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	if err := tg.queueNotify(b, p.m, noticeRows{Insert: p.res.Inserted, Update: p.res.Updated, Delete: p.res.Deleted}); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	// COMMIT goes alone, after the batch's replies: the position's checks
	// (the claim, the first move's insert) run on the replies, and a
	// pipeline runs to its end on the server whatever a reply says.
	conn := p.conn.Conn()
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	if tg.testHookBeforeCommit != nil {
		if err := tg.testHookBeforeCommit(ctx, conn); err != nil {
			return Result{}, p.fail(ctx, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	// COMMIT, once sent, is seen through: canceled halfway, the server may
	// have committed a chunk the caller would count as failed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	tag, err := conn.Exec(cctx, "COMMIT")
	if err == nil && tag.String() != "COMMIT" { // an aborted transaction answers ROLLBACK
		err = fmt.Errorf("commit: the server answered %s", tag.String())
	}
	if err != nil {
		return Result{}, p.fail(ctx, err)
	}
	p.conn.Release()
	p.conn = nil
	p.end()
	return p.res, nil
}

// end marks the chunk ended, once.
func (p *Pending) end() {
	if !p.ended {
		p.ended = true
		p.closed.Store(true)
		p.tg.begun.open.Add(-1)
	}
}

// Abort rolls back a chunk that will not be committed and releases its
// connection. It does nothing once a step has failed or Commit succeeded.
func (p *Pending) Abort() {
	if !p.ended {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.fail(ctx, errDone)
	}
	p.rec = nil
}

// commitTimeout bounds a COMMIT that its caller's context no longer can.
const commitTimeout = 30 * time.Second

// errDone is a step taken out of order or after the chunk ended.
var errDone = errors.New("the chunk's transaction has already ended")

// fail rolls the chunk's transaction back, releases its connection and
// returns err with the target named.
func (p *Pending) fail(ctx context.Context, err error) error {
	if p.conn != nil {
		if p.conn.Conn().PgConn().TxStatus() != 'I' {
			// Nothing of the chunk commits. Should the ROLLBACK fail, the
			// connection is still in the transaction, and Release closes
			// it (the server then rolls back).
			_, _ = p.conn.Exec(ctx, "ROLLBACK")
		}
		p.conn.Release()
		p.conn = nil
	}
	p.end()
	return p.tg.errorf(err)
}

func (tg *Target) errorf(err error) error {
	return fmt.Errorf("apply to %s: %w", tg.ident.Sanitize(), err)
}

// commit is what a chunk's rows carry: the commit's position-history id, the
// transaction's timestamp and its position (encoded).
type commit struct {
	id  int64
	at  time.Time
	pos []byte
}

// createStageSQL creates the connection's staging table for the target's
// column set, once.
func (tg *Target) createStageSQL() string {
	defs := make([]string, 0, len(tg.cols)+3)
	for _, c := range tg.cols {
		defs = append(defs, pgx.Identifier{c.name}.Sanitize()+" "+c.pgType)
	}
	defs = append(defs, schemas.OpColumn+" smallint", schemas.SeqColumn+" bigint", schemas.SourcePosColumn+" bytea")
	// Set by the apply on a staged delete whose key the target held. Every
	// staging table has it: one may serve tables with and without a change
	// log (its name hashes only the columns).
	defs = append(defs, stageHeld+" boolean NOT NULL DEFAULT false")
	return "CREATE TEMP TABLE IF NOT EXISTS " + pgx.Identifier{tg.stage}.Sanitize() + " (" + strings.Join(defs, ", ") + ") ON COMMIT DELETE ROWS"
}

// queueApply queues, on b, the staged rows' apply, which fills the
// result's counts.
func (p *Pending) queueApply(b *pgx.Batch) {
	b.Queue(p.apply, p.c.id).QueryRow(func(row pgx.Row) error {
		var keys int64
		if err := row.Scan(&keys, &p.res.Deleted, &p.res.Inserted, &p.res.Updated); err != nil {
			return fmt.Errorf("apply staged changes: %w", err)
		}
		p.res.Unchanged = keys - p.res.Deleted - p.res.Inserted - p.res.Updated
		return nil
	})
}

// queueChangeLog queues, on b, the staged rows' change-log append, when
// the table keeps one. It runs at commit, after the chunk before has
// committed: two chunks may log one change key.
func (p *Pending) queueChangeLog(b *pgx.Batch) {
	if p.tg.opts.ChangeLog {
		b.Queue(p.tg.changeLogSQL(), p.c.pos, p.c.id).Exec(func(tag pgconn.CommandTag) error {
			p.res.Logged = tag.RowsAffected()
			return nil
		})
	}
}

// copyToStage copies rec into the staging table: straight from the Arrow
// columns when every column has a direct encoding (copyEncoder), through
// pgx's encoder otherwise.
func (tg *Target) copyToStage(ctx context.Context, conn *pgx.Conn, rec arrow.RecordBatch) error {
	names := make([]string, 0, len(tg.cols)+3)
	types := make([]string, 0, len(tg.cols)+3)
	for _, c := range tg.cols {
		names = append(names, c.name)
		types = append(types, c.pgType)
	}
	names = append(names, schemas.OpColumn, schemas.SeqColumn, schemas.SourcePosColumn)
	types = append(types, "smallint", "bigint", "bytea") // op, seq, source position
	if enc, ok := newCopyEncoder(rec, types); ok {
		cols := make([]string, len(names))
		for i, n := range names {
			cols[i] = pgx.Identifier{n}.Sanitize()
		}
		sql := "COPY " + pgx.Identifier{"pg_temp", tg.stage}.Sanitize() + " (" + strings.Join(cols, ", ") + ") FROM STDIN BINARY"
		// pgconn reads enc from a goroutine that can outlive CopyFrom when
		// the connection fails or ctx is canceled; the caller releases rec
		// after we return, so the guard stops every read then.
		g := &guardedReader{r: enc}
		_, err := conn.PgConn().CopyFrom(ctx, g, sql)
		g.close()
		if err != nil {
			return fmt.Errorf("copy into staging: %w", err)
		}
		return nil
	}
	src, err := newRecordSource(rec)
	if err != nil {
		return err
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"pg_temp", tg.stage}, names, src); err != nil {
		return fmt.Errorf("copy into staging: %w", err)
	}
	return nil
}

// applyStatement is applySQL(unique, deletes), built once.
func (tg *Target) applyStatement(unique, deletes bool) string {
	i := 0
	if unique {
		i |= 1
	}
	if deletes {
		i |= 2
	}
	if tg.applies[i] == "" {
		tg.applies[i] = tg.applySQL(unique, deletes)
	}
	return tg.applies[i]
}

// applySQL collapses the staged changes to the last one per key (in source
// order) and applies them in one statement: the deletes and the upserts touch
// disjoint keys. Upserts that would not change a row skip it, so a replayed
// batch rewrites nothing. With unique (no key staged twice) there is nothing
// to collapse; without deletes the statement has no delete step and reads
// the staged rows once (a CTE read twice is copied aside first). Returns
// (keys, deleted, inserted, updated).
func (tg *Target) applySQL(unique, deletes bool) string {
	stage := pgx.Identifier{tg.stage}.Sanitize()
	target := tg.ident.Sanitize()
	var keyMatch []string
	for _, k := range tg.key {
		keyMatch = append(keyMatch, qualify("t", k)+" = "+qualify("l", k))
	}
	var cols, excluded, current, sets []string
	for _, c := range tg.cols {
		q := pgx.Identifier{c.name}.Sanitize()
		cols = append(cols, q)
		// json has no equality operator: compare its text.
		cast := ""
		if c.pgType == "json" {
			cast = "::text"
		}
		excluded = append(excluded, "EXCLUDED."+q+cast)
		current = append(current, "t."+q+cast)
		sets = append(sets, q+" = EXCLUDED."+q)
	}
	for _, m := range []string{MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted} {
		sets = append(sets, m+" = EXCLUDED."+m)
	}
	current = append(current, "t."+MetaDeleted)
	excluded = append(excluded, "EXCLUDED."+MetaDeleted)

	var del string
	if tg.opts.DeletePolicy == DeleteSoft {
		del = fmt.Sprintf(`UPDATE %s t SET %s = 'delete', %s = $1::bigint, %s = now(), %s = true
			FROM last l WHERE l.%s = %d AND %s AND NOT t.%s RETURNING 1`,
			target, MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted,
			schemas.OpColumn, schemas.OpDelete, strings.Join(keyMatch, " AND "), MetaDeleted)
	} else {
		del = fmt.Sprintf(`DELETE FROM %s t USING last l WHERE l.%s = %d AND %s RETURNING 1`,
			target, schemas.OpColumn, schemas.OpDelete, strings.Join(keyMatch, " AND "))
	}
	last := fmt.Sprintf("SELECT DISTINCT ON (%[1]s) * FROM %[2]s ORDER BY %[1]s, %[3]s DESC", tg.keyList(""), stage, schemas.SeqColumn)
	// upsert inserts or updates from the changes in from (alias l).
	upsert := func(from string) string {
		return fmt.Sprintf(`INSERT INTO %[1]s AS t (%[2]s, %[3]s, %[4]s, %[5]s, %[6]s)
		SELECT %[7]s, CASE l.%[8]s WHEN %[9]d THEN 'insert' ELSE 'update' END, $1::bigint, now(), false
		FROM %[15]s l WHERE l.%[8]s <> %[10]d
		ON CONFLICT (%[11]s) DO UPDATE SET %[12]s
		WHERE (%[13]s) IS DISTINCT FROM (%[14]s)
		RETURNING (xmax = 0) AS inserted`,
			target, strings.Join(cols, ", "), MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted,
			prefixAll("l.", cols), schemas.OpColumn, schemas.OpInsert, schemas.OpDelete,
			tg.keyList(""), strings.Join(sets, ", "), strings.Join(current, ", "), strings.Join(excluded, ", "), from)
	}
	if !deletes {
		from, with := stage, ""
		if !unique {
			from, with = "last", "last AS ("+last+"), "
		}
		return fmt.Sprintf(`WITH %sups AS (%s)
	SELECT (SELECT count(*) FROM %s), 0, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ups`,
			with, upsert(from), from)
	}
	if unique {
		last = "SELECT * FROM " + stage
	}
	held := ""
	if tg.opts.ChangeLog {
		// Which staged deletes find their key in the target, as it is before
		// this statement (every CTE sees that state): the change log records
		// only those (changeLogSQL).
		var stageMatch []string
		for _, k := range tg.key {
			stageMatch = append(stageMatch, qualify("t", k)+" = "+qualify("s", k))
		}
		live := ""
		if tg.opts.DeletePolicy == DeleteSoft {
			live = " AND NOT t." + MetaDeleted // a tombstone is not held
		}
		held = fmt.Sprintf(`, held AS (UPDATE %s s SET %s = true FROM %s t WHERE s.%s = %d AND %s%s RETURNING 1
	)`, stage, stageHeld, target, schemas.OpColumn, schemas.OpDelete, strings.Join(stageMatch, " AND "), live)
	}
	return fmt.Sprintf(`WITH last AS (%s
	), del AS (%s
	), ups AS (%s
	)%s
	SELECT (SELECT count(*) FROM last), (SELECT count(*) FROM del), (SELECT count(*) FROM ups WHERE inserted), (SELECT count(*) FROM ups WHERE NOT inserted)`,
		last, del, upsert("last"), held)
}

// stageHeld is the staging table's column that says a staged delete's key
// was in the target when the chunk was applied.
const stageHeld = "_ehrsync_held"

// changeLogSQL appends every staged change in source order, each once: a
// change's key in the log is its source position where the strategy has one
// (CDC), and otherwise a digest of its row image (plus, for a delete, the
// chunk's position), so that re-reading the same row image (a look-back
// window, a snapshot every run, the first run's handoff) logs it once. A
// delete is logged only when the store held its key just before it: the
// chunk's previous change of the key is not a delete, or the chunk has none
// before it and the target held the key when the chunk was applied (the
// apply marks it). A delete of a key the store did not hold (another
// practice's row, read as a key-only delete; a key already deleted) leaves
// no trace. $1 is the chunk's position (its text), $2 the commit's batch
// id.
func (tg *Target) changeLogSQL() string {
	cols := make([]string, len(tg.cols))
	for i, c := range tg.cols {
		cols[i] = pgx.Identifier{c.name}.Sanitize()
	}
	const prev = "_ehrsync_prev_op"
	return fmt.Sprintf(`INSERT INTO %s (%s, %s, %s, %s, %s, %s)
		SELECT %s, CASE %s WHEN %d THEN 'insert' WHEN %d THEN 'update' ELSE 'delete' END, %s, %s,
			coalesce(%s, decode(md5(CASE WHEN %s = %d THEN $1::text ELSE '' END || ROW(%s)::text), 'hex')), $2::bigint
		FROM (SELECT *, lag(%s) OVER (PARTITION BY %s ORDER BY %s) AS %s FROM %s) s
		WHERE s.%s <> %d OR (s.%s IS NULL AND s.%s) OR s.%s <> %d
		ORDER BY %s
		ON CONFLICT (%s) DO NOTHING`,
		tg.changes.Sanitize(), strings.Join(cols, ", "), MetaOp, schemas.SeqColumn, schemas.SourcePosColumn, MetaChangeKey, MetaBatch,
		prefixAll("s.", cols), "s."+schemas.OpColumn, schemas.OpInsert, schemas.OpUpdate, "s."+schemas.SeqColumn, "s."+schemas.SourcePosColumn,
		"s."+schemas.SourcePosColumn, "s."+schemas.OpColumn, schemas.OpDelete, prefixAll("s.", cols),
		schemas.OpColumn, tg.keyList(""), schemas.SeqColumn, prev, pgx.Identifier{tg.stage}.Sanitize(),
		schemas.OpColumn, schemas.OpDelete, prev, stageHeld, prev, schemas.OpDelete,
		"s."+schemas.SeqColumn, MetaChangeKey)
}

func prefixAll(prefix string, cols []string) string {
	out := make([]string, len(cols))
	for i, c := range cols {
		out[i] = prefix + c
	}
	return strings.Join(out, ", ")
}

type notice struct {
	Org      string     `json:"org"`
	Table    string     `json:"table"`
	Kind     string     `json:"kind,omitempty"`
	Rows     noticeRows `json:"rows"`
	Position string     `json:"position,omitempty"`
}

type noticeRows struct {
	Insert int64 `json:"insert"`
	Update int64 `json:"update"`
	Delete int64 `json:"delete"`
}

// queueNotify queues the NOTIFY on b; PostgreSQL delivers it only if the
// transaction commits.
func (tg *Target) queueNotify(b *pgx.Batch, m watermarks.Move, rows noticeRows) error {
	// Any role connected to the store may LISTEN: the payload carries the
	// position's summary (kind, LSN, version), never key or cursor values;
	// listeners read the full position from ehrsync.positions.
	n := notice{Org: m.Org, Table: tg.table.QualifiedName(), Rows: rows}
	if m.To != nil {
		n.Kind, n.Position = string(m.To.Kind()), m.To.String()
	}
	payload, err := json.Marshal(n)
	if err != nil {
		return err
	}
	b.Queue("SELECT pg_notify($1, $3), pg_notify($2, $3)", OrgChannel(m.Org), NotifyChannel, string(payload))
	return nil
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

// Ident is the target table's quoted name.
func (tg *Target) Ident() pgx.Identifier { return tg.ident }

// ChangeLogIdent is the change log's quoted name (meaningful with ChangeLog).
func (tg *Target) ChangeLogIdent() pgx.Identifier { return tg.changes }

// Schema is the Arrow schema of the change batches Apply takes.
func (tg *Target) Schema() *arrow.Schema { return tg.schema }
