package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/schemas"
)

// Lake is the change lake the engine flushes tables with lake on into
// (pkg/lake); *lake.Lake implements it.
type Lake interface {
	Flush(ctx context.Context, t lake.Table) (lake.Result, error)
	FlushBytes() int64
}

// ErrLake marks a table's run whose store commits landed and whose lake
// flush failed: the changes wait in the table's lake outbox.
var ErrLake = errors.New("lake")

// WithLake flushes each table with lake on into l as its run commits, and
// once more at the run's end. Without it, such tables' changes wait in
// their outboxes for a run or `ehrsync lake flush` with the lake.
func WithLake(l Lake) Option { return func(e *Engine) { e.lake = l } }

// LakeTable is the lake table of store table t of org.
func LakeTable(org string, t *schemas.Table) lake.Table {
	return lake.Table{Org: org, Schema: sink.SchemaFor(org), Name: sink.TableName(t)}
}

// At a run's end, a flush that finds the table busy (another process's
// flush, `ehrsync lake maintain`) tries again every lakeRetry for up to
// lakeEndWait, so that a cron sync leaves nothing waiting.
var (
	lakeRetry   = time.Second
	lakeEndWait = 2 * time.Minute
)

// lakeFeed flushes one table's outbox while its run commits: a flush each
// time the bytes committed since the last reach the lake's bound, one at
// a time, on a goroutine of its own; finish waits for it and flushes the
// rest.
type lakeFeed struct {
	l     Lake
	t     lake.Table
	org   string
	table string // the source table's qualified name, the metrics' label
	m     *Metrics
	log   *slog.Logger
	ctx   context.Context
	bound int64

	pending int64         // bytes committed since the last flush began
	kick    chan struct{} // a flush is due
	done    chan struct{} // the goroutine has ended

	// What the flushes did: written by the feed's goroutine, then (after
	// it ended) by finish.
	res lake.Result
	err error
}

// startLake begins feeding t's outbox into the lake, when the engine has a
// lake and the table has lake on; nil otherwise.
func (e *Engine) startLake(ctx context.Context, log *slog.Logger, org *config.Org, tc config.Table) *lakeFeed {
	if e.lake == nil || !config.LakeOn(*org, tc) {
		return nil
	}
	t, ok := e.catalog.Table(tc.Name)
	if !ok {
		return nil
	}
	f := &lakeFeed{l: e.lake, t: LakeTable(org.Name, t), org: org.Name, table: t.QualifiedName(), m: e.metrics,
		log: log, ctx: ctx, bound: e.lake.FlushBytes(),
		kick: make(chan struct{}, 1), done: make(chan struct{})}
	go f.loop()
	return f
}

// committed hears of a chunk's bytes kept for the lake.
func (f *lakeFeed) committed(n int64) {
	if f == nil || n == 0 {
		return
	}
	f.pending += n
	if f.pending >= f.bound {
		f.pending = 0
		select {
		case f.kick <- struct{}{}:
		default: // one is due already
		}
	}
}

func (f *lakeFeed) loop() {
	defer close(f.done)
	for range f.kick {
		if f.ctx.Err() != nil {
			continue
		}
		f.flushWaiting(f.ctx, 0)
	}
}

// flushWaiting flushes; while another flush or maintenance holds the
// table, it tries again every lakeRetry, for up to wait.
func (f *lakeFeed) flushWaiting(ctx context.Context, wait time.Duration) {
	res, err := f.l.Flush(ctx, f.t)
wait:
	for deadline := time.Now().Add(wait); err == nil && res.Busy && time.Now().Before(deadline); {
		select {
		case <-ctx.Done():
			break wait
		case <-time.After(lakeRetry):
		}
		res, err = f.l.Flush(ctx, f.t)
	}
	if err == nil && res.Busy && wait > 0 {
		f.log.Info("the change lake's table was busy with another flush or maintenance: the run's last changes wait in its outbox for the next flush")
	}
	f.m.observeLake(f.org, f.table, res, err != nil)
	f.res.Add(res)
	if err != nil {
		f.log.Warn("lake flush failed; the changes wait in the outbox", "err", err)
		f.err = errors.Join(f.err, err)
	}
}

// finish stops the feed and, unless ctx is done, flushes what the run
// committed since the last flush. It returns what every flush of the run
// did, and their errors.
func (f *lakeFeed) finish(ctx context.Context) (*lake.Result, error) {
	if f == nil {
		return nil, nil
	}
	close(f.kick)
	<-f.done
	if ctx.Err() == nil {
		f.flushWaiting(ctx, lakeEndWait)
	}
	res := f.res
	if f.err != nil {
		return &res, fmt.Errorf("%w: %w", ErrLake, f.err)
	}
	return &res, nil
}
