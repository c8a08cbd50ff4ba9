package engine

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Applier commits one chunk's rows and its position in one transaction. The
// sink's Target implements it.
type Applier interface {
	Apply(ctx context.Context, rec arrow.RecordBatch, m watermarks.Move) (sink.Result, error)
}

// PositionLoader reads a table's saved position. watermarks.Store implements it.
type PositionLoader interface {
	Load(ctx context.Context, org, table string) (watermarks.Position, error)
}

// TableJob is everything one table's run needs.
type TableJob struct {
	Org, Table string // the organization and the source table's qualified name
	Strategy   string // for reports: snapshot, hwm, ...
	Extractor  Extractor
	Target     Applier
	Positions  PositionLoader
	Actor      string // who runs it: "sync", "daemon", an operator's name
	RunID      string
	// Metrics, when set, time each source read.
	Metrics *Metrics
}

// TableResult is what one table's run did.
type TableResult struct {
	Org, Table, Strategy string
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
	Err        error
}

// Pipeline is how many chunks the source may read ahead of the store: while
// one chunk commits, the next is read (and up to Pipeline-1 more wait), so
// the source query and the store's transaction overlap. Batches in flight
// bound the memory: (Pipeline+1) chunks at most.
const Pipeline = 1

// RunTable syncs one table: from its saved position, chunk by chunk, each
// chunk's rows and position committed together. It stops at the run's end,
// at the first error, or when ctx is done; every chunk committed before that
// stays committed, and a rerun resumes after the last one.
//
// The source is read by a goroutine of its own, up to Pipeline chunks ahead
// of the commits; chunks are committed one at a time in the order they were
// read, each with its own position. An error on either side stops both, and
// every chunk read but not committed is released. RunTable returns only
// after the reading goroutine has ended.
func RunTable(ctx context.Context, log *slog.Logger, job TableJob) (res TableResult) {
	start := time.Now()
	res = TableResult{Org: job.Org, Table: job.Table, Strategy: job.Strategy, Started: start}
	defer func() { res.Duration = time.Since(start) }()
	pos, err := job.Positions.Load(ctx, job.Org, job.Table)
	if err != nil {
		res.Err = fmt.Errorf("load position: %w", storeErr(err))
		return res
	}
	res.From, res.To = pos, pos
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
	chunks := make(chan Chunk, Pipeline)
	var readErr error // the reader's; nil when the run ended
	done := make(chan struct{})
	go func() {
		defer close(done)
		readErr = readAhead(rctx, job, run, chunks)
	}()
	// However the loop below ends, the reader stops and everything it read
	// but nobody committed is released before RunTable returns (and before
	// the deferred run.Close).
	defer func() {
		stop()
		<-done // the reader has closed chunks: drain what it left there
		for c := range chunks {
			release(c)
		}
	}()

	for chunk := range chunks {
		reason := chunk.Reason
		if reason == "" {
			reason = watermarks.ReasonSync
		}
		applied, err := job.Target.Apply(ctx, chunk.Batch, watermarks.Move{
			From: pos, To: chunk.To, Reason: reason, Actor: job.Actor, RunID: job.RunID,
		})
		release(chunk)
		if err != nil {
			res.Err = fmt.Errorf("commit chunk %d: %w", res.Chunks+1, storeErr(err))
			return res
		}
		res.Chunks++
		add(&res.Totals, applied)
		pos, res.To = chunk.To, chunk.To
		log.Debug("chunk committed", "chunk", res.Chunks, "rows", applied.Rows, "kind", kindOf(chunk.To))
	}
	// The channel is closed: the reader has finished, and its error (if any)
	// comes after every chunk it read, all of them committed above.
	<-done
	if readErr != nil {
		res.Err = fmt.Errorf("read chunk %d: %w", res.Chunks+1, readErr)
	}
	return res
}

// readAhead reads run's chunks into out until the run ends (nil), a read
// fails, or ctx is done (the error). It closes out before returning; a chunk
// it cannot hand over is released.
func readAhead(ctx context.Context, job TableJob, run Run, out chan<- Chunk) error {
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

func release(c Chunk) {
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
}

func kindOf(p watermarks.Position) string {
	if p == nil {
		return "none"
	}
	return string(p.Kind())
}
