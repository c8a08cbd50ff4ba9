package cdcmodel

import (
	"context"
	"fmt"
	"io"
	"slices"

	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Snapshotter returns a keyset snapshot of table t's committed rows in the
// model, the stand-in for snapshot.Extractor that cdc.NewFrom takes. Like
// the real one, each chunk reads the rows committed at that moment after
// the last key (rows change between chunks), emits them as OpInsert with
// Reason ReasonSnapshot, and ends at the snapshot's Resume. The model
// orders keys by their text form; its LastKey is that text.
func (m *Model) Snapshotter(t *schemas.Table, practices []string, chunkRows int, mem memory.Allocator) (extractors.Extractor, error) {
	sc, err := arrowscan.New(schemas.SQLServer, t)
	if err != nil {
		return nil, err
	}
	if mem == nil {
		mem = memory.DefaultAllocator
	}
	return &snapshotter{m: m, t: t, sc: sc, practices: practices, rows: chunkRows, mem: mem}, nil
}

type snapshotter struct {
	m         *Model
	t         *schemas.Table
	sc        *arrowscan.Scanner
	practices []string
	rows      int
	mem       memory.Allocator
}

func (s *snapshotter) Open(_ context.Context, pos watermarks.Position) (extractors.Run, error) {
	p, ok := pos.(watermarks.Snapshot)
	if !ok {
		return nil, fmt.Errorf("cdcmodel snapshot: position %v is not a snapshot", pos)
	}
	last := ""
	if len(p.LastKey) == 1 {
		last = p.LastKey[0].Text()
	}
	return &snapshotRun{s: s, last: last, started: len(p.LastKey) > 0, resume: p.Resume}, nil
}

type snapshotRun struct {
	s       *snapshotter
	last    string
	started bool
	resume  watermarks.Position
	seq     int64
	done    bool
}

func (r *snapshotRun) Next(context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	s := r.s
	m := s.m
	m.mu.Lock()
	tb := m.table(s.t.Schema, s.t.Name)
	var keys []string
	for k, row := range tb.rows {
		if r.started && k <= r.last {
			continue
		}
		if s.t.Practice != "" && len(s.practices) > 0 && !slices.Contains(s.practices, fmt.Sprint(row[s.t.Practice])) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if len(keys) > s.rows {
		keys = keys[:s.rows]
	}
	raws := make([][]any, len(keys))
	for i, k := range keys {
		raw := make([]any, len(s.t.Columns))
		for j, c := range s.t.Columns {
			raw[j] = tb.rows[k][c.Name]
		}
		raws[i] = raw
	}
	m.mu.Unlock()
	if len(keys) == 0 {
		r.done = true
		return extractors.Chunk{To: r.resume, Reason: watermarks.ReasonSnapshot}, nil
	}
	b := s.sc.NewBatch(s.mem)
	defer b.Release()
	for _, raw := range raws {
		r.seq++
		if err := b.Append(raw, schemas.OpInsert, r.seq); err != nil {
			return extractors.Chunk{}, err
		}
	}
	r.last, r.started = keys[len(keys)-1], true
	to := watermarks.Position(watermarks.Snapshot{LastKey: watermarks.Key{watermarks.String("varchar(max)", r.last)}, Resume: r.resume})
	if len(keys) < s.rows {
		r.done = true
		to = r.resume
	}
	return extractors.Chunk{Batch: b.NewRecordBatch(), To: to, Reason: watermarks.ReasonSnapshot}, nil
}

func (r *snapshotRun) Close() error {
	r.done = true
	return nil
}
