package changetracking

import (
	"context"
	"database/sql"
	"fmt"
	"io"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/changetracking/internal/ctrows"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
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
	// Bounds bound each chunk (one query), the first run's snapshot
	// chunks too, and each source call. Practices restricts current rows
	// (inserts, updates, the first snapshot); deletes are never filtered
	// (see the package doc).
	extractors.Bounds
}

// Extractor reads one table by Change Tracking. It implements
// extractors.Extractor; it is safe for one run at a time.
type Extractor struct {
	src   Source
	snap  *snapshot.Extractor // the first run's snapshot
	table *schemas.Table
	rows  *ctrows.Table
	opts  Options
}

// NewSQLServer returns the Change Tracking extractor of table t on the SQL
// Server db (a go-mssqldb pool without "guid conversion"): the SQLServer
// source for the changes and a keyset snapshot (package snapshot) for the
// first run. t is the table as batches carry it (apply a column allow-list
// first with (*schemas.Table).Project).
func NewSQLServer(db *sql.DB, t *schemas.Table, opts Options) (*Extractor, error) {
	bounds, snap, err := snapshot.ForChanges("changetracking", db, schemas.SQLServer, t, opts.Bounds)
	if err != nil {
		return nil, err
	}
	opts.Bounds = bounds
	name := t.QualifiedName()
	if t.Practice != "" && len(opts.Practices) > 0 {
		if _, ok := t.Column(t.Practice); !ok {
			return nil, fmt.Errorf("changetracking %s: practice column %s is not among the table's columns", name, t.Practice)
		}
	}
	rows, err := ctrows.New(t)
	if err != nil {
		return nil, fmt.Errorf("changetracking %s: %w", name, err)
	}
	return &Extractor{src: NewSource(db), snap: snap, table: t, rows: rows, opts: opts}, nil
}

// start records the first run's incremental start, before its snapshot
// reads anything (PITFALLS.md P8: the replay from it converges): the
// current version, once the table's minimum valid version is readable.
func (e *Extractor) start(ctx context.Context) (watermarks.Position, error) {
	cur, err := e.currentVersion(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := e.minValid(ctx); err != nil {
		return nil, err
	}
	return watermarks.CT{Version: cur}, nil
}

// Table returns the table as the extractor's batches carry it. Do not
// modify it.
func (e *Extractor) Table() *schemas.Table { return e.table }

// SeesDeletes reports true: Change Tracking records deletes, and the
// extractor emits them as key-only delete images (PITFALLS.md P16).
func (e *Extractor) SeesDeletes() bool { return true }

// Open starts a run from pos: nil (first run: record
// CHANGE_TRACKING_CURRENT_VERSION(), then snapshot), a watermarks.Snapshot
// resuming on a CT position (continue the snapshot), or a watermarks.CT
// (read the window after it). Anything else is an error matching
// ErrPosition. An expired CT position is an *extractors.ExpiredError
// (PITFALLS.md P2); a table that is not tracked or not readable is a
// *SetupError (P17).
func (e *Extractor) Open(ctx context.Context, pos watermarks.Position) (extractors.Run, error) {
	name := e.table.QualifiedName()
	keys, _ := e.rows.KeyColumns()
	run, handled, err := e.snap.FirstRun(ctx, "changetracking", pos, e.start, "a change tracking version", func(r watermarks.Position) bool {
		ct, ok := r.(watermarks.CT)
		return ok && !ct.InWindow()
	})
	if handled {
		return run, err
	}
	switch p := pos.(type) {
	case watermarks.CT:
		if len(p.LastKey) != 0 && len(p.LastKey) != len(keys) {
			return nil, fmt.Errorf("changetracking %s: saved key has %d values for %d key columns: %w", name, len(p.LastKey), len(keys), ErrPosition)
		}
		if p.Version < 0 || (p.InWindow() && p.To <= p.Version) {
			return nil, fmt.Errorf("changetracking %s: invalid position %s: %w", name, p, ErrPosition)
		}
		if err := e.check(ctx, p.Version); err != nil {
			return nil, err
		}
		to := p.To
		if !p.InWindow() {
			// The window's upper bound, taken once per run.
			cur, err := e.currentVersion(ctx)
			if err != nil {
				return nil, err
			}
			if cur < p.Version {
				return nil, &extractors.ExpiredError{Table: name, Reason: fmt.Sprintf(
					"saved change tracking version %d is above the database's current version %d (was the database restored?)", p.Version, cur)}
			}
			to = cur
		}
		return &Run{e: e, pos: p, to: to}, nil
	}
	return nil, fmt.Errorf("changetracking %s: cannot start from a %s position: %w", name, pos.Kind(), ErrPosition)
}

// currentVersion reads CHANGE_TRACKING_CURRENT_VERSION().
func (e *Extractor) currentVersion(ctx context.Context) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, e.opts.QueryTimeout)
	defer cancel()
	v, ok, err := e.src.CurrentVersion(qctx)
	if err != nil {
		return 0, fmt.Errorf("changetracking %s: read current version: %w", e.table.QualifiedName(), err)
	}
	if !ok {
		return 0, e.setupError(ctx)
	}
	return v, nil
}

// minValid reads the table's minimum valid version; NULL is a set-up
// problem, which the probe names (PITFALLS.md P17).
func (e *Extractor) minValid(ctx context.Context) (int64, error) {
	qctx, cancel := context.WithTimeout(ctx, e.opts.QueryTimeout)
	defer cancel()
	v, ok, err := e.src.MinValidVersion(qctx, e.table)
	if err != nil {
		return 0, fmt.Errorf("changetracking %s: read minimum valid version: %w", e.table.QualifiedName(), err)
	}
	if !ok {
		return 0, e.setupError(ctx)
	}
	return v, nil
}

// check returns an *extractors.ExpiredError when version is below the table's
// minimum valid version (PITFALLS.md P2).
func (e *Extractor) check(ctx context.Context, version int64) error {
	mv, err := e.minValid(ctx)
	if err != nil {
		return err
	}
	return e.expired(version, mv)
}

func (e *Extractor) expired(version, minValid int64) error {
	if version < minValid {
		return &extractors.ExpiredError{Table: e.table.QualifiedName(), Reason: fmt.Sprintf(
			"saved change tracking version %d is below the table's minimum valid version %d (cleanup or TRUNCATE removed changes)",
			version, minValid)}
	}
	return nil
}

// setupError probes the source and returns the *SetupError naming what is
// missing.
func (e *Extractor) setupError(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, e.opts.QueryTimeout)
	defer cancel()
	st, err := e.src.Probe(qctx, e.table)
	if err != nil {
		return fmt.Errorf("changetracking %s: no change tracking version, and the probe failed: %w", e.table.QualifiedName(), err)
	}
	return &SetupError{Status: st}
}

// Run is one Change Tracking run. It implements extractors.Run; it is not safe
// for concurrent use.
type Run struct {
	e    *Extractor
	done bool
	seq  int64
	pos  watermarks.CT // the position reached
	to   int64         // the window's upper bound
}

// Close ends the run. It holds no source resources between chunks.
func (r *Run) Close() error {
	r.done = true
	return nil
}

// Next reads the next chunk (see the package doc for its position). The
// caller releases the chunk's Batch. It returns io.EOF after the last chunk.
func (r *Run) Next(ctx context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	if r.pos.Version >= r.to {
		r.done = true // nothing committed since the saved version
		return extractors.Chunk{}, io.EOF
	}
	ch, err := r.next(ctx)
	if err != nil {
		return extractors.Chunk{}, err
	}
	return ch, nil
}

func (r *Run) next(ctx context.Context) (extractors.Chunk, error) {
	e := r.e
	name := e.table.QualifiedName()
	// PITFALLS.md P2: before every read.
	if err := e.check(ctx, r.pos.Version); err != nil {
		return extractors.Chunk{}, err
	}
	qctx, cancel := context.WithTimeout(ctx, e.opts.QueryTimeout)
	defer cancel()
	cs, err := e.src.Changes(qctx, Query{
		Table: e.table, From: r.pos.Version, To: r.to, After: r.pos.LastKey,
		Practices: e.opts.Practices, Limit: e.opts.ChunkRows,
	})
	if err != nil {
		return extractors.Chunk{}, fmt.Errorf("changetracking %s: read changes: %w", name, err)
	}
	// The check after the read: cleanup that ran during it shows here.
	if !cs.MinValidOK {
		return extractors.Chunk{}, e.setupError(ctx)
	}
	if err := e.expired(r.pos.Version, cs.MinValid); err != nil {
		return extractors.Chunk{}, err
	}
	if len(cs.Rows) > e.opts.ChunkRows {
		return extractors.Chunk{}, fmt.Errorf("changetracking %s: source returned %d rows for a limit of %d", name, len(cs.Rows), e.opts.ChunkRows)
	}
	if len(cs.Rows) == 0 {
		// The window is done (or was empty: an idle table still moves its
		// position to the window's bound, PITFALLS.md P3).
		r.done = true
		r.pos = watermarks.CT{Version: r.to}
		return extractors.Chunk{To: r.pos, Reason: watermarks.ReasonSync}, nil
	}
	b := e.rows.NewBatch(e.opts.Allocator)
	defer b.Release()
	var last []any
	stopped := false
	for i, row := range cs.Rows {
		raw, op, err := r.image(row)
		if err != nil {
			return extractors.Chunk{}, fmt.Errorf("changetracking %s: row %d: %w", name, i, err)
		}
		r.seq++
		if err := b.Append(raw, op, r.seq); err != nil {
			return extractors.Chunk{}, fmt.Errorf("changetracking %s: row %d: %w", name, i, err)
		}
		last = raw
		if b.Bytes() >= e.opts.ChunkBytes && i < len(cs.Rows)-1 {
			stopped = true
			break
		}
	}
	to := watermarks.CT{Version: r.to}
	if stopped || len(cs.Rows) == e.opts.ChunkRows {
		key, err := e.rows.Key(last)
		if err != nil {
			return extractors.Chunk{}, fmt.Errorf("changetracking %s: %w", name, err)
		}
		to = watermarks.CT{Version: r.pos.Version, To: r.to, LastKey: key}
	} else {
		r.done = true
	}
	r.pos = to
	return extractors.Chunk{Batch: b.NewRecordBatch(), To: to, Reason: watermarks.ReasonSync}, nil
}

// image turns one ChangeSet row into the table's raw values and its op:
// the current row's full image while the key exists, the key alone once it
// is gone (a delete: other columns NULL, PITFALLS.md P16).
func (r *Run) image(row []any) ([]any, schemas.Op, error) {
	cols := r.e.table.Columns
	if len(row) != 3+len(cols) {
		return nil, 0, fmt.Errorf("%d values for 3 + %d columns", len(row), len(cols))
	}
	op, ok := row[0].(string)
	if !ok {
		return nil, 0, fmt.Errorf("SYS_CHANGE_OPERATION is a %T", row[0])
	}
	exists, ok := row[2].(bool)
	if !ok {
		return nil, 0, fmt.Errorf("row existence flag is a %T", row[2])
	}
	raw := row[3:]
	if !exists {
		key := make([]any, len(raw))
		for i, c := range cols {
			if r.e.table.IsKey(c.Name) {
				key[i] = raw[i]
			}
		}
		return key, schemas.OpDelete, nil
	}
	switch op {
	case "I":
		return raw, schemas.OpInsert, nil
	case "U", "D":
		// "D" with a current row: deleted, then inserted again after the
		// change table was read; the current image is the truth.
		return raw, schemas.OpUpdate, nil
	}
	return nil, 0, fmt.Errorf("unknown SYS_CHANGE_OPERATION %q", op)
}
