package ctmodel

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/changetracking/internal/ctrows"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Snapshotter returns the model's keyset snapshot of t (as the batches
// carry it) with the position contract of package snapshot: chunks of
// committed current rows in key order as OpInsert, positions
// Snapshot{LastKey, Resume}, Resume after the last chunk. Each chunk reads
// the table as it is then (READ COMMITTED, no transaction across chunks),
// and records the call "Snapshot".
func (db *DB) Snapshotter(t *schemas.Table, practices []string, chunkRows int, mem memory.Allocator) changetracking.Snapshotter {
	return changetracking.SnapshotFunc(func(s watermarks.Snapshot, from watermarks.Position) extractors.Run {
		return &snapRun{db: db, t: t, practices: practices, limit: chunkRows, mem: mem, last: s.LastKey, resume: s.Resume}
	})
}

type snapRun struct {
	db        *DB
	t         *schemas.Table
	practices []string
	limit     int
	mem       memory.Allocator
	last      watermarks.Key
	resume    watermarks.Position
	seq       int64
	done      bool
}

func (r *snapRun) Close() error { r.done = true; return nil }

func (r *snapRun) Next(ctx context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	if err := ctx.Err(); err != nil {
		return extractors.Chunk{}, err
	}
	rows, err := r.read()
	if err != nil {
		return extractors.Chunk{}, err
	}
	if len(rows) == 0 {
		r.done = true
		return extractors.Chunk{To: r.resume, Reason: watermarks.ReasonSnapshot}, nil
	}
	conv, err := ctrows.New(r.t)
	if err != nil {
		return extractors.Chunk{}, err
	}
	b := conv.NewBatch(r.mem)
	defer b.Release()
	for _, row := range rows {
		r.seq++
		if err := b.Append(row, schemas.OpInsert, r.seq); err != nil {
			return extractors.Chunk{}, err
		}
	}
	key, err := conv.Key(rows[len(rows)-1])
	if err != nil {
		return extractors.Chunk{}, err
	}
	r.last = key
	to := watermarks.Position(watermarks.Snapshot{LastKey: key, Resume: r.resume})
	if len(rows) < r.limit {
		r.done = true
		to = r.resume
	}
	return extractors.Chunk{Batch: b.NewRecordBatch(), To: to, Reason: watermarks.ReasonSnapshot}, nil
}

// read returns the next chunk's rows, projected onto r.t's columns.
func (r *snapRun) read() ([][]any, error) {
	db := r.db
	db.mu.Lock()
	defer db.mu.Unlock()
	db.calls = append(db.calls, "Snapshot")
	tb, ok := db.tables[name(r.t)]
	if !ok {
		return nil, fmt.Errorf("ctmodel: no table %s", r.t.QualifiedName())
	}
	var after []any
	for _, v := range r.last {
		n, err := reader.Native(v)
		if err != nil {
			return nil, err
		}
		after = append(after, n)
	}
	idx := make([]int, len(r.t.Columns))
	for i, c := range r.t.Columns {
		idx[i] = slices.IndexFunc(tb.def.Columns, func(fc schemas.Column) bool { return strings.EqualFold(fc.Name, c.Name) })
		if idx[i] < 0 {
			return nil, fmt.Errorf("ctmodel: invalid column name %s", c.Name)
		}
	}
	pr := -1
	if tb.def.Practice != "" && len(r.practices) > 0 {
		pr = slices.IndexFunc(tb.def.Columns, func(fc schemas.Column) bool { return strings.EqualFold(fc.Name, tb.def.Practice) })
	}
	var out [][]any
	for _, k := range tb.sortedRowKeys() {
		full := tb.rows[k]
		if after != nil {
			_, raw, _ := tb.key(full)
			if compareKeys(tb.natives(raw), after) <= 0 {
				continue
			}
		}
		if pr >= 0 && !slices.Contains(r.practices, fmt.Sprint(full[pr])) {
			continue
		}
		row := make([]any, len(idx))
		for i, j := range idx {
			row[i] = full[j]
		}
		out = append(out, row)
		if len(out) == r.limit {
			break
		}
	}
	return out, nil
}
