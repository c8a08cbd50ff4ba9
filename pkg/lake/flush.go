package lake

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/table"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Result is what one Flush did.
type Result struct {
	// Busy says another flush of the table held it; this one did nothing.
	Busy      bool
	Commits   int   // Iceberg commits made
	Batches   int   // outbox rows (store commits) moved
	Rows      int64 // change rows appended
	Bytes     int64 // outbox bytes moved (Arrow IPC)
	Files     int   // data files added
	FileBytes int64 // their bytes (Parquet)
	// Cleared counts outbox rows a flush before had committed to the lake
	// and not deleted (it stopped between the two), deleted by this one.
	Cleared int64
	// State is the table's after the flush.
	State State
	// Position is the encoded position of the last chunk the flush moved
	// that moved the table (nil for none): for the audit's summary.
	Position []byte
	// CommitTimes is each Iceberg commit's time (files written and the
	// catalog swapped).
	CommitTimes []time.Duration
}

// CommitTime is the time spent in all the flush's Iceberg commits.
func (r Result) CommitTime() time.Duration {
	var d time.Duration
	for _, c := range r.CommitTimes {
		d += c
	}
	return d
}

// Add adds what flush o did to r, which then holds the table's state and
// position as o left them (when o saw the table), and o's Busy.
func (r *Result) Add(o Result) {
	r.Commits += o.Commits
	r.Batches += o.Batches
	r.Rows += o.Rows
	r.Bytes += o.Bytes
	r.Files += o.Files
	r.FileBytes += o.FileBytes
	r.Cleared += o.Cleared
	r.CommitTimes = append(r.CommitTimes, o.CommitTimes...)
	if o.State.Exists || o.Commits > 0 {
		r.State = o.State
	}
	if o.Position != nil {
		r.Position = o.Position
	}
	r.Busy = o.Busy
}

// ErrClaimOrder is a table whose outbox and Iceberg table disagree on the
// claims: rows claimed under a number that is not the next one.
var ErrClaimOrder = errors.New("the lake outbox's claims do not follow the Iceberg table's")

// Flush moves t's outbox into its Iceberg table, in commits of up to
// Config.FlushBytes, until the outbox holds no committed row. It returns
// with Result.Busy when another flush of t (this process's or another's)
// holds it.
func (l *Lake) Flush(ctx context.Context, t Table) (res Result, err error) {
	defer func() { err = l.safe(err) }()
	lock, ok, err := l.lock(ctx, t)
	if err != nil || !ok {
		return Result{Busy: !ok && err == nil}, err
	}
	defer lock.unlock()
	tbl, err := l.load(ctx, t)
	if err != nil {
		return res, err
	}
	if err := l.owned(t, tbl); err != nil {
		return res, err
	}
	res.State = stateOf(tbl)
	// A flush before this one may have stopped between its Iceberg commit
	// and clearing its claim.
	if res.Cleared, err = l.record(ctx, t, tbl); err != nil {
		return res, err
	}
	for {
		claim, err := l.nextClaim(ctx, lock.conn, t, claimOf(tbl))
		if err != nil || claim == 0 {
			return res, err
		}
		tbl, err = l.commitClaim(ctx, t, tbl, claim, &res)
		if err != nil {
			return res, err
		}
		res.State = stateOf(tbl)
		if err := l.step("committed"); err != nil {
			return res, err
		}
		if _, err := l.record(ctx, t, tbl); err != nil {
			return res, err
		}
	}
}

// tableLock is a flush's hold on one table: a session advisory lock on a
// connection of its own.
type tableLock struct {
	conn *pgxpool.Conn
	t    Table
}

func (l *Lake) lock(ctx context.Context, t Table) (*tableLock, bool, error) {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("lock lake table %s: %w", t, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1, hashtext($2))", storedb.LakeLockClass, t.outbox().Sanitize()).Scan(&ok); err != nil || !ok {
		conn.Release()
		if err != nil {
			return nil, false, fmt.Errorf("lock lake table %s: %w", t, err)
		}
		return nil, false, nil
	}
	return &tableLock{conn: conn, t: t}, true, nil
}

func (k *tableLock) unlock() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := k.conn.Exec(ctx, "SELECT pg_advisory_unlock($1, hashtext($2))", storedb.LakeLockClass, k.t.outbox().Sanitize()); err != nil {
		// The session's lock must not outlive the flush on a pooled
		// connection: close it.
		k.conn.Conn().Close(ctx)
	}
	k.conn.Release()
}

// nextClaim is the claim to commit after committed: the rows a flush
// claimed and did not commit, or a new claim of the rows waiting, up to
// FlushBytes (at least one row). 0 when nothing waits.
func (l *Lake) nextClaim(ctx context.Context, conn *pgxpool.Conn, t Table, committed int64) (int64, error) {
	ob := t.outbox().Sanitize()
	var pending *int64
	if err := conn.QueryRow(ctx, "SELECT min(claim) FROM "+ob+" WHERE claim IS NOT NULL").Scan(&pending); err != nil {
		return 0, fmt.Errorf("read lake outbox %s: %w", t, err)
	}
	next := committed + 1
	if pending != nil {
		if *pending != next {
			return 0, fmt.Errorf("lake table %s: outbox claim %d waits, but the Iceberg table holds claims to %d: %w; fix: if the Iceberg table was dropped or replaced, set its property %s to %d, or clear the outbox's claim column to append those rows again",
				t, *pending, committed, ErrClaimOrder, PropClaim, *pending-1)
		}
		return next, nil
	}
	// The rows waiting, in commit order of their ids, while their bytes
	// before them stay under the bound.
	tag, err := conn.Exec(ctx, `UPDATE `+ob+` SET claim = $1 WHERE id IN (
    SELECT id FROM (SELECT id, bytes, sum(bytes) OVER (ORDER BY id) AS upto FROM `+ob+` WHERE claim IS NULL) w
    WHERE upto - bytes < $2)`, next, l.cfg.FlushBytes)
	if err != nil {
		return 0, fmt.Errorf("claim lake outbox %s: %w", t, err)
	}
	if tag.RowsAffected() == 0 {
		return 0, nil
	}
	return next, nil
}

// claimInfo is what a claim holds, read before its rows.
type claimInfo struct {
	batches, rows, bytes int64
	firstBatch, lastBat  int64
	position             []byte
	schemas              []*arrow.Schema
}

func (l *Lake) readClaim(ctx context.Context, t Table, claim int64) (claimInfo, error) {
	var ci claimInfo
	ob := t.outbox().Sanitize()
	err := l.pool.QueryRow(ctx, `SELECT count(*), sum(rows), sum(bytes), min(batch), max(batch),
    (array_agg(position ORDER BY id DESC) FILTER (WHERE position IS NOT NULL))[1] FROM `+ob+` WHERE claim = $1`, claim).
		Scan(&ci.batches, &ci.rows, &ci.bytes, &ci.firstBatch, &ci.lastBat, &ci.position)
	if err != nil {
		return ci, fmt.Errorf("read lake outbox %s claim %d: %w", t, claim, err)
	}
	rows, err := l.pool.Query(ctx, "SELECT schema FROM "+ob+" WHERE claim = $1 GROUP BY schema ORDER BY min(id)", claim)
	if err != nil {
		return ci, fmt.Errorf("read lake outbox %s claim %d: %w", t, claim, err)
	}
	raw, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return ci, fmt.Errorf("read lake outbox %s claim %d: %w", t, claim, err)
	}
	for _, b := range raw {
		sc, err := decodeSchema(b)
		if err != nil {
			return ci, fmt.Errorf("lake outbox %s claim %d: %w", t, claim, err)
		}
		ci.schemas = append(ci.schemas, sc)
	}
	return ci, nil
}

// commitClaim appends claim's rows to t's Iceberg table (created first if
// need be, its schema fitted to the claim's) in one commit that sets
// PropClaim, and adds what it did to res. It returns the table as
// committed; record then deletes the claim from the outbox.
func (l *Lake) commitClaim(ctx context.Context, t Table, tbl *table.Table, claim int64, res *Result) (*table.Table, error) {
	ci, err := l.readClaim(ctx, t, claim)
	if err != nil {
		return nil, err
	}
	schema, err := lakeSchema(ci.schemas)
	if err != nil {
		return nil, fmt.Errorf("lake table %s: %w", t, err)
	}
	start := time.Now()
	if tbl, schema, err = l.ensureTable(ctx, t, tbl, schema); err != nil {
		return nil, err
	}
	rdr, err := l.openClaim(ctx, t, claim, schema)
	if err != nil {
		return nil, err
	}
	defer rdr.Release()
	tx := tbl.NewTransaction()
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		return nil, fmt.Errorf("lake table %s: %w", t, err)
	}
	n := strconv.FormatInt(claim, 10)
	props := iceberg.Properties{PropClaim: n, PropStore: l.store}
	summary := iceberg.Properties{PropClaim: n, PropBatches: fmt.Sprintf("%d-%d", ci.firstBatch, ci.lastBat)}
	// The position as its summary only: the metadata's readers need not
	// see key values. ehrsync.lake_tables keeps it whole.
	if ci.position != nil {
		p, err := watermarks.Decode(ci.position)
		if err != nil {
			return nil, fmt.Errorf("lake outbox %s claim %d: %w", t, claim, err)
		}
		if sum := watermarks.Summarize(p); sum != nil {
			props[PropPosition], summary[PropPosition] = sum.Text, sum.Text
		}
	}
	if err := tx.SetProperties(props); err != nil {
		return nil, fmt.Errorf("lake table %s: %w", t, err)
	}
	if err := tx.Append(ctx, rdr, summary); err != nil {
		return nil, fmt.Errorf("append to lake table %s: %w", t, err)
	}
	if err := rdr.Err(); err != nil {
		return nil, fmt.Errorf("append to lake table %s: %w", t, err)
	}
	if err := l.step("appended"); err != nil {
		return nil, err
	}
	committed, cerr := tx.Commit(ctx)
	if cerr != nil {
		// The commit may have landed (an error after the catalog's swap)
		// or not; the table says which.
		now, err := l.load(ctx, t)
		if err != nil {
			return nil, fmt.Errorf("commit to lake table %s: %w (then: %v)", t, cerr, err)
		}
		if claimOf(now) != claim || now.Properties()[PropStore] != l.store {
			return nil, fmt.Errorf("commit to lake table %s: %w", t, cerr)
		}
		committed = now
	}
	if ci.position != nil {
		res.Position = ci.position
	}
	res.CommitTimes = append(res.CommitTimes, time.Since(start))
	res.Commits++
	res.Batches += int(ci.batches)
	res.Rows += ci.rows
	res.Bytes += ci.bytes
	if snap := committed.CurrentSnapshot(); snap != nil && snap.Summary != nil {
		files, _ := strconv.Atoi(snap.Summary.Properties["added-data-files"])
		size, _ := strconv.ParseInt(snap.Summary.Properties["added-files-size"], 10, 64)
		res.Files += files
		res.FileBytes += size
	}
	return committed, nil
}

// record deletes the outbox rows of the claims tbl holds and notes its
// state in ehrsync.lake_tables (the rows deleted added to its count), in
// one transaction. It returns the rows deleted.
func (l *Lake) record(ctx context.Context, t Table, tbl *table.Table) (int64, error) {
	st := stateOf(tbl)
	if !st.Exists {
		return 0, nil
	}
	var batches int64
	err := pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var rows int64
		var pos []byte
		err := tx.QueryRow(ctx, "WITH d AS (DELETE FROM "+t.outbox().Sanitize()+` WHERE claim <= $1 RETURNING id, rows, position)
    SELECT count(*), coalesce(sum(rows), 0), (array_agg(position ORDER BY id DESC) FILTER (WHERE position IS NOT NULL))[1] FROM d`,
			st.Claim).Scan(&batches, &rows, &pos)
		if err != nil || batches == 0 {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO ehrsync.lake_tables AS l (org, table_name, claim, snapshot_id, position, rows, committed_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (org, table_name) DO UPDATE SET claim = excluded.claim, snapshot_id = excluded.snapshot_id,
        position = coalesce(excluded.position, l.position), rows = l.rows + excluded.rows, committed_at = excluded.committed_at`,
			t.Org, t.StateName(), st.Claim, st.SnapshotID, pos, rows, st.Committed)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("clear lake outbox %s to claim %d: %w", t, st.Claim, err)
	}
	return batches, nil
}

// ensureTable creates t's Iceberg table (and namespace) when tbl is nil,
// and otherwise fits it and the claim's schema to each other, column by
// column: a column new at the source is added; a type the source widened
// (int to bigint, real to float, a decimal's precision) widens the table's;
// any other difference keeps the table's type, and the claim's values are
// cast to it (a value that does not fit fails the flush, naming the
// column). It returns the table and the schema to append with.
func (l *Lake) ensureTable(ctx context.Context, t Table, tbl *table.Table, schema *arrow.Schema) (*table.Table, *arrow.Schema, error) {
	want, err := table.ArrowSchemaToIcebergWithFreshIDs(schema, false)
	if err != nil {
		return nil, nil, fmt.Errorf("lake table %s: map the change batch's types: %w", t, err)
	}
	if tbl == nil {
		tbl, err = l.createTable(ctx, t, want)
		return tbl, schema, err
	}
	have := tbl.Schema()
	haveArrow, err := table.SchemaToArrowSchema(have, nil, false, false)
	if err != nil {
		return nil, nil, fmt.Errorf("lake table %s: %w", t, err)
	}
	fields := slices.Clone(schema.Fields())
	evolve := false
	for i, f := range fields {
		hf, held := have.FindFieldByName(f.Name)
		wf, _ := want.FindFieldByName(f.Name)
		switch {
		case !held:
			evolve = true
		case hf.Type.Equals(wf.Type):
		case widens(hf.Type, wf.Type):
			evolve = true
		default:
			af, ok := haveArrow.FieldsByName(f.Name)
			if !ok || len(af) != 1 {
				return nil, nil, fmt.Errorf("lake table %s: column %s has no Arrow type", t, f.Name)
			}
			fields[i].Type = af[0].Type
		}
	}
	schema = arrow.NewSchema(fields, nil)
	if !evolve {
		return tbl, schema, nil
	}
	if want, err = table.ArrowSchemaToIcebergWithFreshIDs(schema, false); err != nil {
		return nil, nil, fmt.Errorf("lake table %s: map the change batch's types: %w", t, err)
	}
	tx := tbl.NewTransaction()
	if err := tx.UpdateSchema(true, false).UnionByNameWith(want).Commit(); err != nil {
		return nil, nil, fmt.Errorf("lake table %s: add the source's new columns and widened types: %w", t, err)
	}
	// The new columns' settings; the table's others stay as they are.
	plain := plainColumns(want)
	maps.DeleteFunc(plain, func(k, _ string) bool { _, set := tbl.Properties()[k]; return set })
	if len(plain) > 0 {
		if err := tx.SetProperties(plain); err != nil {
			return nil, nil, fmt.Errorf("lake table %s: %w", t, err)
		}
	}
	if tbl, err = tx.Commit(ctx); err != nil {
		return nil, nil, fmt.Errorf("lake table %s: add the source's new columns and widened types: %w", t, err)
	}
	return tbl, schema, nil
}

// widens says whether Iceberg's schema evolution takes a column of type
// from to type to: int to long, float to double, a decimal's precision up
// at one scale.
func widens(from, to iceberg.Type) bool {
	switch f := from.(type) {
	case iceberg.Int32Type:
		_, ok := to.(iceberg.Int64Type)
		return ok
	case iceberg.Float32Type:
		_, ok := to.(iceberg.Float64Type)
		return ok
	case iceberg.DecimalType:
		t, ok := to.(iceberg.DecimalType)
		return ok && f.Scale() == t.Scale() && f.Precision() <= t.Precision()
	}
	return false
}

// createTable creates t's Iceberg table (and its namespace) with schema
// want, at a location of its own under the warehouse (a table dropped or
// renamed by hand keeps its files apart from the next one's).
func (l *Lake) createTable(ctx context.Context, t Table, want *iceberg.Schema) (*table.Table, error) {
	ns := table.Identifier{t.Schema}
	exists, err := l.cat.CheckNamespaceExists(ctx, ns)
	if err != nil {
		return nil, fmt.Errorf("lake namespace %s: %w", t.Schema, err)
	}
	if !exists {
		if err := l.cat.CreateNamespace(ctx, ns, iceberg.Properties{"comment": "ehrsync organization " + t.Org}); err != nil && !errors.Is(err, catalog.ErrNamespaceAlreadyExists) {
			return nil, fmt.Errorf("create lake namespace %s: %w", t.Schema, err)
		}
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	loc := strings.TrimSuffix(l.cfg.Warehouse, "/") + "/" + t.Schema + ".db/" + t.Ident()[1] + "-" + hex.EncodeToString(suffix)
	props := iceberg.Properties{
		"format-version": "2",
		// Old metadata files are removed as commits add new ones.
		"write.metadata.delete-after-commit.enabled": "true",
		"write.metadata.previous-versions-max":       "50",
		"comment":                                    "ehrsync change lake: every change committed to store table " + t.String(),
		PropStore:                                    l.store,
		// Parquet row groups are buffered whole in memory as they are
		// written: a smaller one than iceberg-go's 128 MiB keeps a flush
		// within the engine's memory; zstd's fastest level too.
		"write.parquet.row-group-size-bytes": strconv.Itoa(RowGroupBytes),
		"write.parquet.compression-level":    "1",
	}
	maps.Copy(props, plainColumns(want))
	opts := []catalog.CreateTableOpt{catalog.WithProperties(props)}
	// A REST catalog chooses its tables' locations (several allow only
	// their own).
	if l.cfg.REST == nil {
		opts = append(opts, catalog.WithLocation(loc))
	}
	tbl, err := l.cat.CreateTable(ctx, t.Ident(), want, opts...)
	if err != nil {
		return nil, fmt.Errorf("create lake table %s: %w", t.Ident(), err)
	}
	return tbl, nil
}

// plainColumns turns Parquet's dictionary encoding off for the columns of
// schema whose values are mostly distinct: identifiers (uuid, fixed,
// binary), amounts (decimal, floating point), times (timestamps) and
// 64-bit numbers (sequence numbers, row versions). A dictionary of such
// values costs a hash per value and is dropped for plain encoding once it
// outgrows its page; strings, 32-bit integers, dates and booleans (codes,
// statuses, practices) keep it.
//
// The properties name a column as its Parquet files do: iceberg-go writes
// them with names made valid for Avro ("Patient ID" as "Patient_x20ID").
func plainColumns(schema *iceberg.Schema) iceberg.Properties {
	props := iceberg.Properties{}
	schema, err := iceberg.SanitizeColumnNames(schema)
	if err != nil {
		return props // the writer's defaults
	}
	for _, f := range schema.Fields() {
		switch f.Type.(type) {
		case iceberg.UUIDType, iceberg.FixedType, iceberg.BinaryType, iceberg.DecimalType, iceberg.Float32Type,
			iceberg.Float64Type, iceberg.TimestampType, iceberg.TimestampTzType, iceberg.Int64Type:
			props[dictionaryKey+f.Name] = "false"
		}
	}
	return props
}

// dictionaryKey is the table property that sets a column's Parquet
// dictionary encoding, followed by the column's name.
const dictionaryKey = "write.parquet.dict-encoding-enabled.column."

func (l *Lake) step(name string) error {
	if l.testHook != nil {
		return l.testHook(name)
	}
	return nil
}
