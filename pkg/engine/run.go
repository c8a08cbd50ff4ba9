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

// RunTable syncs one table: from its saved position, chunk by chunk, each
// chunk's rows and position committed together. It stops at the run's end,
// at the first error, or when ctx is done; every chunk committed before that
// stays committed, and a rerun resumes after the last one.
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
	for {
		read := time.Now()
		chunk, err := run.Next(ctx)
		if job.Metrics != nil {
			job.Metrics.QueryDuration.WithLabelValues(job.Org, job.Table, job.Strategy).Observe(time.Since(read).Seconds())
		}
		if errors.Is(err, io.EOF) {
			return res
		}
		if err != nil {
			res.Err = fmt.Errorf("read chunk %d: %w", res.Chunks+1, err)
			return res
		}
		reason := chunk.Reason
		if reason == "" {
			reason = watermarks.ReasonSync
		}
		applied, err := job.Target.Apply(ctx, chunk.Batch, watermarks.Move{
			From: pos, To: chunk.To, Reason: reason, Actor: job.Actor, RunID: job.RunID,
		})
		if chunk.Batch != nil {
			chunk.Batch.Release()
		}
		if err != nil {
			res.Err = fmt.Errorf("commit chunk %d: %w", res.Chunks+1, storeErr(err))
			return res
		}
		res.Chunks++
		add(&res.Totals, applied)
		pos, res.To = chunk.To, chunk.To
		log.Debug("chunk committed", "chunk", res.Chunks, "rows", applied.Rows, "kind", kindOf(chunk.To))
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
