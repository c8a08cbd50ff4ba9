// Package snapshot is the keyset snapshot extractor: it reads a whole table
// in primary-key order, in short chunks, each chunk its own query bounded by
// (key) > (last key copied) (PITFALLS.md P8).
//
// Each chunk is one autocommit SELECT at the connection's READ COMMITTED
// isolation: no transaction spans chunks, so a snapshot of a large table
// holds no locks and no version store for hours on the EHR primary. The
// price is that the snapshot is not a point-in-time image: rows change while
// it runs. That is why an incremental strategy records its start position
// before the first read (Snapshot.Resume) and replays from there; the store
// applies full row images by key, so the replay converges.
//
// Keys are compared by the server, in its own order, with the key bound as a
// parameter of the key column's exact type: SQL Server orders
// uniqueidentifier by byte groups (last six bytes first), never as text
// (PITFALLS.md P12, P15).
//
// # Positions and chunks
//
// Open takes nil (start a snapshot) or a watermarks.Snapshot (continue after
// LastKey). Every chunk's rows are OpInsert with the full row image, with
// Reason watermarks.ReasonSnapshot. After a chunk the position is
// Snapshot{LastKey: the chunk's last key, Resume}; after the last chunk it is
// Resume when the snapshot hands off to an incremental strategy, or
// Snapshot{} (a pass complete) for a table snapshotted every run, so that
// the next run starts a new pass. A run that finds nothing after the last
// key still moves the position to that end (a chunk with a nil Batch), and
// so does the first pass over an empty table. A crashed snapshot resumes
// after its last committed key.
//
// # First runs of incremental extractors
//
// The incremental extractors (cdc, changetracking, hwm) each hold a
// snapshot Extractor of their table for the first run: Begin(start) starts
// the pass that hands off to start, the incremental position they record
// before it reads anything, and Continue resumes a saved pass after
// checking that its Resume is theirs.
//
// A ranged snapshot (Options.From, To: an operator's ranged backfill) reads
// only the keys in [From, To], both inclusive: its first chunk starts at
// (key) >= From, later ones after the last key copied, and every chunk stops
// at (key) <= To. Its positions are those of a snapshot without Resume; a
// range with no rows commits nothing.
//
// A snapshot cannot see deletes: a row deleted at the source simply stops
// appearing. KeysOnly batches (the key columns only) are the input of a
// key reconciliation that finds such rows.
package snapshot

import (
	"context"
	"database/sql"
	"fmt"
	"io"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/internal/dialect"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Defaults for Options.
const (
	DefaultChunkRows    = reader.DefaultChunkRows
	DefaultChunkBytes   = reader.DefaultChunkBytes
	DefaultQueryTimeout = reader.DefaultQueryTimeout
)

// Options configure an Extractor. The zero Options read every practice in
// chunks of DefaultChunkRows rows and DefaultChunkBytes bytes.
type Options struct {
	extractors.Bounds
	// KeysOnly emits only the key columns (schemas.ChangeSchema of the key
	// projection), for a key reconciliation. Such batches are not full row
	// images: do not apply them as upserts.
	KeysOnly bool
	// From and To bound the snapshot to the keys in [From, To], both
	// inclusive, compared by the source in its key order (an operator's
	// ranged backfill). nil: unbounded on that side. Each has one value per
	// key column (ParseKey makes them from an operator's text).
	From, To watermarks.Key
}

// Extractor snapshots one table. It implements extractors.Extractor. It is safe
// for one run at a time.
type Extractor struct {
	r        *reader.Reader
	table    *schemas.Table
	keyCols  []schemas.Column
	keyIdx   []int
	from, to watermarks.Key
}

// New returns a snapshot extractor of table t on the source db, whose
// dialect is source. t is the table as batches carry it: apply a column
// allow-list first with (*schemas.Table).Project (which keeps the key). db
// must be a go-mssqldb pool for SQL Server (without "guid conversion": GUIDs
// must arrive in wire order) or a pgx stdlib pool for PostgreSQL.
func New(db *sql.DB, source schemas.Dialect, t *schemas.Table, opts Options) (*Extractor, error) {
	if t == nil {
		return nil, fmt.Errorf("snapshot: no table")
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	out := t
	if opts.KeysOnly {
		out = keysOnly(t)
	}
	r, err := reader.New(reader.Config{
		Bounds:  opts.Bounds,
		DB:      db,
		Dialect: source,
		Table:   out,
		Filter:  t,
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", t.QualifiedName(), err)
	}
	cols, idx, err := r.KeyColumns(out)
	if err != nil {
		return nil, fmt.Errorf("snapshot %s: %w", t.QualifiedName(), err)
	}
	r.KeepLast(idx...) // a chunk's position is its last key
	for _, b := range []struct {
		name string
		key  watermarks.Key
	}{{"from", opts.From}, {"to", opts.To}} {
		if b.key != nil && len(b.key) != len(cols) {
			return nil, fmt.Errorf("snapshot %s: range bound %s has %d values for %d key columns", t.QualifiedName(), b.name, len(b.key), len(cols))
		}
	}
	return &Extractor{r: r, table: out, keyCols: cols, keyIdx: idx, from: opts.From, to: opts.To}, nil
}

// keysOnly returns t reduced to its key columns. The reduced table keeps no
// row-version, modified-at or practice column: it is read, not filtered on.
func keysOnly(t *schemas.Table) *schemas.Table {
	k := *t
	k.Columns = nil
	for _, c := range t.Columns {
		if t.IsKey(c.Name) {
			k.Columns = append(k.Columns, c)
		}
	}
	k.Key = append([]string(nil), t.Key...)
	k.RowVersion, k.ModifiedAt, k.Practice = "", "", ""
	return &k
}

// Table returns the table as the extractor's batches carry it (the key
// projection with KeysOnly). Do not modify it.
func (e *Extractor) Table() *schemas.Table { return e.table }

// SeesDeletes reports false: a snapshot does not see deletes (see the
// package doc).
func (e *Extractor) SeesDeletes() bool { return false }

// Open starts a run from pos: nil (a new snapshot with no incremental
// position) or a watermarks.Snapshot. Any other position is an error
// matching ErrPosition.
func (e *Extractor) Open(_ context.Context, pos watermarks.Position) (extractors.Run, error) {
	switch p := pos.(type) {
	case nil:
		return e.start(watermarks.Snapshot{}, nil), nil
	case watermarks.Snapshot:
		return e.resume(p)
	}
	return nil, fmt.Errorf("snapshot %s: cannot start from a %s position: %w", e.table.QualifiedName(), pos.Kind(), ErrPosition)
}

// resume continues the snapshot saved at p.
func (e *Extractor) resume(p watermarks.Snapshot) (extractors.Run, error) {
	if len(p.LastKey) != 0 && len(p.LastKey) != len(e.keyCols) {
		return nil, fmt.Errorf("snapshot %s: saved key has %d values for %d key columns: %w",
			e.table.QualifiedName(), len(p.LastKey), len(e.keyCols), ErrPosition)
	}
	return e.start(p, p), nil
}

// Begin starts the first run of an incremental extractor (cdc,
// changetracking, hwm) on a table with no position: a snapshot of every
// row whose chunks carry Reason snapshot and the position
// watermarks.Snapshot{LastKey, Resume: start}, and whose last chunk hands
// off to start, the incremental position the extractor recorded before
// the snapshot read anything (PITFALLS.md P8).
func (e *Extractor) Begin(start watermarks.Position) extractors.Run {
	return e.start(watermarks.Snapshot{Resume: start}, nil)
}

// Continue resumes such a first run mid-pass from its saved position p.
// resumes reports whether p.Resume is the incremental extractor's
// position, which on names in the error (matching ErrPosition) when it is
// not.
func (e *Extractor) Continue(p watermarks.Snapshot, on string, resumes func(watermarks.Position) bool) (extractors.Run, error) {
	if p.Resume == nil || !resumes(p.Resume) {
		return nil, fmt.Errorf("snapshot %s: saved snapshot does not resume on %s: %w", e.table.QualifiedName(), on, ErrPosition)
	}
	return e.resume(p)
}

// FirstRun opens the first-run part of an incremental extractor's run
// (kind names it in errors): from no position it records the incremental
// start (start) and begins the pass (Begin); from a saved pass it continues
// it (Continue, with on and resumes). handled is false for any other
// position, which the incremental extractor reads from itself.
func (e *Extractor) FirstRun(ctx context.Context, kind string, pos watermarks.Position,
	start func(context.Context) (watermarks.Position, error), on string, resumes func(watermarks.Position) bool) (run extractors.Run, handled bool, err error) {
	switch p := pos.(type) {
	case nil:
		s, err := start(ctx)
		if err != nil {
			return nil, true, fmt.Errorf("%s %s: record start: %w", kind, e.table.QualifiedName(), err)
		}
		return e.Begin(s), true, nil
	case watermarks.Snapshot:
		run, err := e.Continue(p, on, resumes)
		if err != nil {
			return nil, true, fmt.Errorf("%s: %w", kind, err)
		}
		return run, true, nil
	}
	return nil, false, nil
}

// start returns a run that continues the snapshot s (after s.LastKey,
// handing off to s.Resume). from is the position saved now (nil or s): the
// run moves the position only when that is a real advance from it.
func (e *Extractor) start(s watermarks.Snapshot, from watermarks.Position) *Run {
	return &Run{e: e, last: s.LastKey, resume: s.Resume, from: from}
}

// Run is one snapshot run. It implements extractors.Run; it is not safe for
// concurrent use.
type Run struct {
	e      *Extractor
	last   watermarks.Key
	resume watermarks.Position
	from   watermarks.Position
	seq    int64
	done   bool
}

// Next reads the next chunk (see the package doc for its position). The
// caller releases the chunk's Batch. It returns io.EOF after the last chunk.
func (r *Run) Next(ctx context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	e := r.e
	var bounds []bound
	switch {
	case len(r.last) > 0:
		bounds = append(bounds, bound{dialect.Gt, r.last})
	case e.from != nil:
		bounds = append(bounds, bound{dialect.Ge, e.from})
	}
	if e.to != nil {
		bounds = append(bounds, bound{dialect.Le, e.to})
	}
	var where []dialect.Cond
	for _, b := range bounds {
		c, err := e.r.Cond(e.keyCols, b.op, b.key)
		if err != nil {
			return extractors.Chunk{}, fmt.Errorf("snapshot %s: %w", e.table.QualifiedName(), err)
		}
		where = append(where, c)
	}
	ch, err := e.r.Read(ctx, e.r.Select(where, e.table.Key), schemas.OpInsert, &r.seq)
	if err != nil {
		return extractors.Chunk{}, fmt.Errorf("snapshot %s: %w", e.table.QualifiedName(), err)
	}
	if ch.Rows == 0 {
		r.done = true
		if !r.endAdvances() {
			return extractors.Chunk{}, io.EOF
		}
		return extractors.Chunk{To: r.end(), Reason: watermarks.ReasonSnapshot}, nil
	}
	key, err := e.r.Key(e.keyCols, e.keyIdx, ch.Last)
	if err != nil {
		ch.Batch.Release()
		return extractors.Chunk{}, fmt.Errorf("snapshot %s: %w", e.table.QualifiedName(), err)
	}
	r.last = key
	to := watermarks.Position(watermarks.Snapshot{LastKey: key, Resume: r.resume})
	if ch.Exhausted {
		r.done = true
		to = r.end()
	}
	r.from = to
	return extractors.Chunk{Batch: ch.Batch, To: to, Reason: watermarks.ReasonSnapshot}, nil
}

// bound is one keyset condition: (key columns) op key.
type bound struct {
	op  dialect.Op
	key watermarks.Key
}

// end is the position once the snapshot is done.
func (r *Run) end() watermarks.Position {
	if r.resume != nil {
		return r.resume
	}
	return watermarks.Snapshot{}
}

// endAdvances reports whether moving from r.from to the end is a real
// advance: anything but staying between passes. A whole-table pass from no
// position that found no row ends at Snapshot{} all the same, so that the
// table's position says a pass completed; a ranged one commits nothing.
func (r *Run) endAdvances() bool {
	if r.resume != nil {
		return true
	}
	switch f := r.from.(type) {
	case nil:
		return r.e.from == nil && r.e.to == nil
	case watermarks.Snapshot:
		return len(f.LastKey) > 0 || f.Resume != nil
	}
	return true
}

// Close ends the run. It holds no source resources between chunks.
func (r *Run) Close() error {
	r.done = true
	return nil
}

// ForChanges checks what an extractor of a table's changes (kind names it
// in errors: "cdc", "changetracking") is given, a source database and a
// valid table of dialect, fills in the bounds' defaults, and returns them
// with the snapshot of the table's first run, read within those bounds.
func ForChanges(kind string, db *sql.DB, dialect schemas.Dialect, t *schemas.Table, b extractors.Bounds) (extractors.Bounds, *Extractor, error) {
	switch {
	case db == nil:
		return b, nil, fmt.Errorf("%s: no source database", kind)
	case t == nil:
		return b, nil, fmt.Errorf("%s: no table", kind)
	}
	if err := t.Validate(); err != nil {
		return b, nil, fmt.Errorf("%s: %w", kind, err)
	}
	if t.Dialect != dialect {
		return b, nil, fmt.Errorf("%s %s: the table must be in the %s dialect, not %s", kind, t.QualifiedName(), dialect, t.Dialect)
	}
	b, err := reader.WithDefaults(b)
	if err != nil {
		return b, nil, fmt.Errorf("%s %s: %w", kind, t.QualifiedName(), err)
	}
	snap, err := New(db, dialect, t, Options{Bounds: b})
	if err != nil {
		return b, nil, fmt.Errorf("%s: %w", kind, err)
	}
	return b, snap, nil
}
