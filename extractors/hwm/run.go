package hwm

import (
	"context"
	"fmt"
	"io"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/internal/dialect"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Run is one high-water-mark run. It implements extractors.Run; it is not safe
// for concurrent use.
//
// Incremental rows are OpUpdate: a high-water mark cannot tell an insert
// from an update, and the row is the current full image either way.
type Run struct {
	e    *Extractor
	done bool
	seq  int64

	// from is the position reached: the opened one, then each chunk's To.
	from watermarks.Cursor

	// Row versions: the window's exclusive upper bound and the position
	// that says the window is done (bound-1, no key).
	bound *watermarks.Value
	end   watermarks.Cursor

	// Timestamps: the overlap re-read from low (nil: from the beginning) up
	// to and including saved, the position the run opened at, which every
	// overlap chunk keeps. overlapLast pages inside the overlap.
	overlap     bool
	saved       watermarks.Cursor
	low         *watermarks.Value
	overlapLast *watermarks.Cursor
}

// Next reads the next chunk (see the package doc for its position). The
// caller releases the chunk's Batch. It returns io.EOF after the last chunk.
func (r *Run) Next(ctx context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	var (
		ch  extractors.Chunk
		err error
	)
	if r.e.kind == Timestamp {
		ch, err = r.nextTimestamp(ctx)
	} else {
		ch, err = r.nextVersion(ctx)
	}
	if err != nil && err != io.EOF {
		return extractors.Chunk{}, fmt.Errorf("hwm %s: %w", r.e.table.QualifiedName(), err)
	}
	return ch, err
}

// Close ends the run. It holds no source resources between chunks.
func (r *Run) Close() error {
	r.done = true
	return nil
}

// order is the paging order: the cursor, then the key (PITFALLS.md P9).
// SQL Server promises unique rowversion values, but SELECT INTO and
// restored or replicated tables can repeat them, so row versions page by
// (version, key) too: a repeated value can never lose rows at a chunk
// boundary.
func (r *Run) order() []string {
	cols := []string{r.e.cursor.Name}
	for _, c := range r.e.keyCols {
		cols = append(cols, c.Name)
	}
	return cols
}

// compare returns (cursor[, key]) op (c.Value[, c.Key]).
func (r *Run) compare(op dialect.Op, c watermarks.Cursor) (dialect.Cond, error) {
	cols := []schemas.Column{r.e.cursor}
	vals := []watermarks.Value{c.Value}
	if len(c.Key) > 0 {
		cols = append(cols, r.e.keyCols...)
		vals = append(vals, c.Key...)
	}
	return r.e.r.Cond(cols, op, vals)
}

// position returns the position after a chunk whose last row is last.
func (r *Run) position(last []any) (watermarks.Cursor, error) {
	e := r.e
	v, err := e.r.Value(e.cursor, last[e.curIdx])
	if err != nil {
		return watermarks.Cursor{}, err
	}
	if v.IsNull() {
		return watermarks.Cursor{}, fmt.Errorf("cursor column %s is null", e.cursor.Name)
	}
	pos := watermarks.Cursor{Column: e.cursor.Name, Value: v}
	if pos.Key, err = e.r.Key(e.keyCols, e.keyIdx, last); err != nil {
		return watermarks.Cursor{}, err
	}
	return pos, nil
}

func (r *Run) read(ctx context.Context, where []dialect.Cond, notNull bool) (reader.Chunk, error) {
	sel := r.e.r.Select(where, r.order())
	if notNull {
		sel.NotNull = r.e.cursor.Name
	}
	return r.e.r.Read(ctx, sel, schemas.OpUpdate, &r.seq)
}

// nextVersion reads the next chunk of the row-version window
// (from, bound).
func (r *Run) nextVersion(ctx context.Context) (extractors.Chunk, error) {
	bound := *r.bound
	var where []dialect.Cond
	if !r.from.Value.IsNull() {
		open, err := advances(r.from, r.end)
		if err != nil {
			return extractors.Chunk{}, err
		}
		if !open {
			r.done = true // empty window: the saved position is at the bound
			return extractors.Chunk{}, io.EOF
		}
		lower, err := r.compare(dialect.Gt, r.from)
		if err != nil {
			return extractors.Chunk{}, err
		}
		where = append(where, lower)
	}
	upper, err := r.compare(dialect.Lt, watermarks.Cursor{Value: bound})
	if err != nil {
		return extractors.Chunk{}, err
	}
	where = append(where, upper)
	ch, err := r.read(ctx, where, false)
	if err != nil {
		return extractors.Chunk{}, err
	}
	if ch.Rows == 0 {
		r.done = true
		adv, err := advances(r.from, r.end)
		if err != nil || !adv {
			return extractors.Chunk{}, orEOF(err)
		}
		r.from = r.end
		return extractors.Chunk{To: r.end, Reason: watermarks.ReasonSync}, nil
	}
	to := r.end
	if ch.Exhausted {
		r.done = true
	} else if to, err = r.position(ch.Last); err != nil {
		ch.Batch.Release()
		return extractors.Chunk{}, err
	}
	r.from = to
	return extractors.Chunk{Batch: ch.Batch, To: to, Reason: watermarks.ReasonSync}, nil
}

// nextTimestamp reads the overlap (re-read, position kept), then the rows
// after the saved position.
func (r *Run) nextTimestamp(ctx context.Context) (extractors.Chunk, error) {
	if r.overlap {
		var where []dialect.Cond
		switch {
		case r.overlapLast != nil:
			c, err := r.compare(dialect.Gt, *r.overlapLast)
			if err != nil {
				return extractors.Chunk{}, err
			}
			where = append(where, c)
		case r.low != nil:
			c, err := r.compare(dialect.Gt, watermarks.Cursor{Value: *r.low})
			if err != nil {
				return extractors.Chunk{}, err
			}
			where = append(where, c)
		}
		upper, err := r.compare(dialect.Le, r.saved)
		if err != nil {
			return extractors.Chunk{}, err
		}
		where = append(where, upper)
		ch, err := r.read(ctx, where, true)
		if err != nil {
			return extractors.Chunk{}, err
		}
		if ch.Rows == 0 || ch.Exhausted {
			r.overlap = false
		}
		if ch.Rows > 0 {
			last, err := r.position(ch.Last)
			if err != nil {
				ch.Batch.Release()
				return extractors.Chunk{}, err
			}
			r.overlapLast = &last
			return extractors.Chunk{Batch: ch.Batch, To: r.saved, Reason: watermarks.ReasonSync}, nil
		}
	}
	var where []dialect.Cond
	if !r.from.Value.IsNull() {
		c, err := r.compare(dialect.Gt, r.from)
		if err != nil {
			return extractors.Chunk{}, err
		}
		where = append(where, c)
	}
	ch, err := r.read(ctx, where, true)
	if err != nil {
		return extractors.Chunk{}, err
	}
	if ch.Rows == 0 {
		r.done = true
		return extractors.Chunk{}, io.EOF
	}
	to, err := r.position(ch.Last)
	if err != nil {
		ch.Batch.Release()
		return extractors.Chunk{}, err
	}
	if ch.Exhausted {
		r.done = true
	}
	r.from = to
	return extractors.Chunk{Batch: ch.Batch, To: to, Reason: watermarks.ReasonSync}, nil
}

// advances reports whether moving from a to b is a real advance.
func advances(a, b watermarks.Cursor) (bool, error) {
	if a.Value.IsNull() {
		return true, nil
	}
	c, err := watermarks.Compare(b.Value, a.Value)
	if err != nil {
		return false, err
	}
	return c > 0 || (c == 0 && len(a.Key) > 0 && len(b.Key) == 0), nil
}

func orEOF(err error) error {
	if err != nil {
		return err
	}
	return io.EOF
}
