package engine

import (
	"context"
	"database/sql"
	"log/slog"
	"time"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Progress is a table's progress in an organization run, as OrgRun.Progress
// hears of it: when the table starts reading (Rows 0, or the rows of an
// earlier read of the same attempt), after each chunk commits, and once
// when the attempt ends (Done).
type Progress struct {
	Org, Table string // the organization and the table's qualified name
	// Rows are the rows the attempt has committed so far.
	Rows int64
	// Estimate is how many rows the attempt will have committed when it has
	// read the whole table: the rows so far plus the source's estimate of
	// the table's rows (its statistics, see source.EstimateRows), while it
	// reads the table from the start or from a snapshot's saved key (a
	// snapshot resumed mid-pass ends short of it). 0 when unknown, while it
	// reads changes (an incremental position), and for an organization
	// filtered to practices (the statistics count every practice's rows).
	Estimate int64
	Done     bool
}

// RowEstimator estimates a source table's rows from the source's
// statistics (source.EstimateRows): 0 when it cannot tell.
type RowEstimator func(ctx context.Context, db *sql.DB, dialect config.Dialect, schema, name string) (int64, error)

// WithRowEstimator estimates the rows of a table an org run reads with est
// (default source.EstimateRows), for OrgRun.Progress.
func WithRowEstimator(est RowEstimator) Option { return func(e *Engine) { e.estimate = est } }

// tracker reports one table attempt's progress to report. A nil tracker
// reports nothing. It is used by the attempt's goroutine only.
type tracker struct {
	report   func(Progress)
	estimate func(context.Context) (int64, error) // the table's rows at the source
	log      *slog.Logger
	p        Progress
}

// estimateTimeout bounds the source's row estimate a read waits for.
const estimateTimeout = 10 * time.Second

// tracker returns the tracker of an attempt of table tc of org reading db,
// reporting to report; nil when report is nil.
func (e *Engine) tracker(log *slog.Logger, db *sql.DB, org *config.Org, tc config.Table, report func(Progress)) *tracker {
	if report == nil {
		return nil
	}
	t := &tracker{report: report, log: log, p: Progress{Org: org.Name, Table: e.qualified(tc.Name)}}
	if st, ok := e.catalog.Table(tc.Name); ok && len(org.Source.PracticeIDs) == 0 {
		t.estimate = func(ctx context.Context) (int64, error) {
			// Bounded like every source query, and by estimateTimeout: the
			// read waits for it, and an estimate is never worth more than
			// a few seconds of the read it describes.
			timeout := estimateTimeout
			if q := org.Source.QueryTimeout; q > 0 {
				timeout = min(timeout, q)
			}
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			return e.estimate(ctx, db, org.Source.Dialect, st.Schema, st.Name)
		}
	}
	return t
}

// begin reports a read starting from position from: one that reads the
// whole table (from no position, or a snapshot's) gets the source's
// estimate of the table's rows; an estimate that fails is left out, and
// the read goes on.
func (t *tracker) begin(ctx context.Context, from watermarks.Position) {
	if t == nil {
		return
	}
	t.p.Estimate = 0
	if _, snapshot := from.(watermarks.Snapshot); t.estimate != nil && (from == nil || snapshot) {
		switch n, err := t.estimate(ctx); {
		case err != nil:
			t.log.Debug("no row estimate from the source's statistics", "err", err)
		case n > 0:
			t.p.Estimate = t.p.Rows + n
		}
	}
	t.report(t.p)
}

// committed reports rows more committed.
func (t *tracker) committed(rows int64) {
	if t == nil {
		return
	}
	t.p.Rows += rows
	t.report(t.p)
}

// end reports the attempt's end.
func (t *tracker) end() {
	if t == nil {
		return
	}
	t.p.Done = true
	t.report(t.p)
}
