package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/watermarks"
)

// PositionLoader reads a table's saved position. watermarks.Store implements it.
type PositionLoader interface {
	Load(ctx context.Context, org, table string) (watermarks.Position, error)
}

// TableJob is everything one table's run needs.
type TableJob struct {
	Org, Table string // the organization and the source table's qualified name
	Strategy   string // for reports: snapshot, hwm, ...
	Extractor  extractors.Extractor
	Target     Applier
	Positions  PositionLoader
	Actor      string // who runs it: "sync", "daemon", an operator's name
	RunID      string
	// Metrics, when set, time each source read.
	Metrics *Metrics
	// progress, when set, hears of the run's start and of each chunk
	// committed.
	progress *tracker
	// lake, when set, hears of each chunk's bytes kept for the lake.
	lake *lakeFeed
}

// TableResult is what one table's run did.
type TableResult struct {
	Org, Table, Strategy string
	RunID                string // the run's id in the position history and the audit
	Chunks               int
	Totals               sink.Result
	From, To             watermarks.Position
	Started              time.Time // when the run began (before its window was fixed)
	Duration             time.Duration
	// Expired says the saved position had expired at the source and the
	// table was re-snapshotted from scratch in this run.
	Expired bool
	// Reconciled is the key reconciliation that followed the run, if one was due.
	Reconciled *sink.ReconcileResult
	// Lake is what the run's lake flushes did (nil: the table has lake
	// off, or the engine no lake).
	Lake *lake.Result
	Err  error
}

// Pipeline is how many chunks the source may read ahead of the store: while
// chunks are written and committed, the next is read (and up to Pipeline-1
// more wait), so the source query and the store's transactions overlap.
const Pipeline = 1

// Writers is how many chunks may be in the store at once, each in a
// transaction of its own on a connection of its own: chunk n+1's rows are
// copied while chunk n's are copied or applied, on a second server backend,
// and upserted too when the two chunks share no key (sink.Pending).
// Chunks still commit one at a time, in read order. Batches in flight bound
// the memory: Pipeline+Writers+2 chunks at most (one being read, Pipeline
// waiting, Writers being written, and one the loop holds while the oldest
// writer ends).
const Writers = 2

// RunTable syncs one table: from its saved position, chunk by chunk, each
// chunk's rows and position committed together. It stops at the run's end,
// at the first error, or when ctx is done; every chunk committed before that
// stays committed, and a rerun resumes after the last one.
//
// The source is read by a goroutine of its own, up to Pipeline chunks ahead
// of the store. Each chunk is begun in read order, then written and
// committed by a goroutine of its own, up to Writers at once; a chunk
// commits only after the one before it has (and is aborted if that one
// failed), each with its own position. A store error stops them all; a
// read error lets the chunks read before it commit first. Every chunk read
// but not committed is released, and RunTable returns only after every
// goroutine it started has ended.
func RunTable(ctx context.Context, log *slog.Logger, job TableJob) (res TableResult) {
	start := time.Now()
	res = TableResult{Org: job.Org, Table: job.Table, Strategy: job.Strategy, RunID: job.RunID, Started: start}
	defer func() { res.Duration = time.Since(start) }()
	pos, err := job.Positions.Load(ctx, job.Org, job.Table)
	if err != nil {
		res.Err = fmt.Errorf("load position: %w", storeErr(err))
		return res
	}
	res.From, res.To = pos, pos
	job.progress.begin(ctx, pos)
	run, err := job.Extractor.Open(ctx, pos)
	if err != nil {
		res.Err = fmt.Errorf("open %s run: %w", job.Strategy, err)
		return res
	}
	defer func() {
		if err := run.Close(); err != nil && res.Err == nil {
			res.Err = fmt.Errorf("close %s run: %w", job.Strategy, err)
		}
	}()

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	chunks := make(chan extractors.Chunk, Pipeline)
	var readErr error // the reader's; nil when the run ended
	done := make(chan struct{})
	go func() {
		defer close(done)
		readErr = readAhead(rctx, job, run, chunks)
	}()

	// inflight holds the chunks begun and not yet counted, in read order.
	var inflight []*writing
	// settle waits for the oldest chunk in flight and counts it.
	settle := func() error {
		w := inflight[0]
		inflight = inflight[1:]
		<-w.done
		if w.err != nil {
			return fmt.Errorf("commit chunk %d: %w", res.Chunks+1, storeErr(w.err))
		}
		res.Chunks++
		add(&res.Totals, w.res)
		res.To = w.to
		job.progress.committed(w.res.Rows)
		job.lake.committed(w.res.LakeBytes)
		log.Debug("chunk committed", "chunk", res.Chunks, "rows", w.res.Rows, "kind", kindOf(w.to))
		return nil
	}
	var beginErr error // a chunk that could not begin; the ones before it may still commit
	for chunk := range chunks {
		if len(inflight) == Writers {
			if res.Err = settle(); res.Err != nil {
				release(chunk)
				break
			}
		}
		reason := chunk.Reason
		if reason == "" {
			reason = watermarks.ReasonSync
		}
		p, err := job.Target.Begin(rctx, chunk.Batch, watermarks.Move{
			From: pos, To: chunk.To, Reason: reason, Actor: job.Actor, RunID: job.RunID,
		})
		if err != nil {
			release(chunk)
			beginErr = err
			break
		}
		var prev *writing // the chunk before, if still in flight
		if len(inflight) > 0 {
			prev = inflight[len(inflight)-1]
		}
		w := &writing{to: chunk.To, done: make(chan struct{})}
		go w.run(rctx, p, chunk, prev)
		inflight = append(inflight, w)
		pos = chunk.To
	}
	for len(inflight) > 0 && res.Err == nil {
		res.Err = settle()
	}
	if res.Err == nil && beginErr != nil {
		res.Err = fmt.Errorf("commit chunk %d: %w", res.Chunks+1, storeErr(beginErr))
	}
	// However the loop ended, the reader and the writers stop, and
	// everything read but not committed is released before RunTable
	// returns (and before the deferred run.Close). Writers left after an
	// error abort: each waits for the one before it.
	stop()
	for _, w := range inflight {
		<-w.done
	}
	<-done // the reader has closed chunks: drain what it left there
	for c := range chunks {
		release(c)
	}
	if res.Err == nil && readErr != nil {
		// The reader's error comes after every chunk it read, all of them
		// committed above.
		res.Err = fmt.Errorf("read chunk %d: %w", res.Chunks+1, readErr)
	}
	return res
}

// writing is one chunk between Begin and the end of its Commit.
type writing struct {
	to   watermarks.Position
	done chan struct{} // closed when it has committed or failed
	res  sink.Result
	err  error
}

// errBeforeFailed aborts a chunk whose predecessor did not commit.
var errBeforeFailed = errors.New("the chunk before it was not committed")

// run writes the chunk's rows, waits for the chunk before it (prev; nil
// when none is in flight) to commit, and commits; it aborts when prev
// failed.
func (w *writing) run(ctx context.Context, p Pending, c extractors.Chunk, prev *writing) {
	defer close(w.done)
	err := p.Write(ctx)
	release(c)
	if err == nil && prev != nil {
		<-prev.done
		if prev.err != nil {
			p.Abort()
			err = errBeforeFailed
		}
	}
	if err != nil {
		w.err = err
		return
	}
	w.res, w.err = p.Commit(ctx)
}

// readAhead reads run's chunks into out until the run ends (nil), a read
// fails, or ctx is done (the error). It closes out before returning; a chunk
// it cannot hand over is released.
func readAhead(ctx context.Context, job TableJob, run extractors.Run, out chan<- extractors.Chunk) error {
	defer close(out)
	for {
		read := time.Now()
		chunk, err := run.Next(ctx)
		if job.Metrics != nil {
			job.Metrics.QueryDuration.WithLabelValues(job.Org, job.Table, job.Strategy).Observe(time.Since(read).Seconds())
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case out <- chunk:
		case <-ctx.Done():
			release(chunk)
			return ctx.Err()
		}
	}
}

func release(c extractors.Chunk) {
	if c.Batch != nil {
		c.Batch.Release()
	}
}

func add(t *sink.Result, r sink.Result) {
	t.Rows += r.Rows
	t.Inserted += r.Inserted
	t.Updated += r.Updated
	t.Deleted += r.Deleted
	t.Unchanged += r.Unchanged
	t.Logged += r.Logged
	t.LakeBytes += r.LakeBytes
}

func kindOf(p watermarks.Position) string {
	if p == nil {
		return "none"
	}
	return string(p.Kind())
}
