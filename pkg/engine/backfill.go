package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/watermarks"
)

// RangePlanner builds a table's extractors bounded to a key range: Plan's
// Extractor reads the full rows in the range, its Keys the keys in the range
// (extractors/planner implements it).
type RangePlanner interface {
	PlanRange(ctx context.Context, req extractors.PlanRequest, r extractors.KeyRange) (extractors.Plan, error)
}

// BackfillPosition is the name a ranged backfill of table keeps its own
// position under in the positions store: "dbo.claims#backfill".
func BackfillPosition(table string) string { return table + "#backfill" }

// ErrNoRangePlanner means the engine's planner cannot bound a table to a
// key range.
var ErrNoRangePlanner = errors.New("the planner cannot plan ranged backfills")

// Range is an operator's key range for a backfill, as given (--from, --to,
// or the admin API's "from" and "to"): each bound one value per primary-key
// column, comma-separated, parsed by the columns' types; "" leaves that side
// open. Its values are row values: they are never logged nor put in errors.
type Range struct {
	From, To string
}

// IsZero reports whether r bounds nothing (a full backfill).
func (r Range) IsZero() bool { return r.From == "" && r.To == "" }

// ErrBadRange is a key range that does not parse as the table's key.
var ErrBadRange = errors.New("bad key range")

// BackfillRange re-reads the rows of one table whose key is in r and
// upserts them, chunk by chunk, as actor. Each chunk commits its rows with the
// backfill's own position, BackfillPosition(table), in one transaction; the
// table's incremental position is neither read nor moved. A run resumes
// after the last committed chunk of the saved backfill position (nil:
// from the range's start). The caller holds the table's lease (none is
// taken here), removes the backfill position when the range is done, and
// records the run in the audit (with the range's bounds).
//
// When reconcile is true and the run reached the range's end, the store's
// rows in the range whose key the source no longer has are deleted (or
// soft-deleted) by the table's delete policy: see (Target).ReconcileRange.
func (e *Engine) BackfillRange(ctx context.Context, org *config.Org, table string, r extractors.KeyRange, reconcile bool, actor string) TableResult {
	runID := NewRunID()
	res := TableResult{Org: org.Name, Table: e.qualified(table), Strategy: "backfill", RunID: runID}
	log := e.log.With("org", org.Name, "table", res.Table, "run", runID)
	rp, ok := e.planner.(RangePlanner)
	tc, found := org.Table(table)
	switch {
	case !ok:
		res.Err = ErrNoRangePlanner
	case !found:
		res.Err = fmt.Errorf("org %s has no table %q in its configuration", org.Name, table)
	}
	if res.Err != nil {
		return res
	}
	if e.defaults.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, e.defaults.RunTimeout)
		defer cancel()
	}
	start := time.Now()
	db, err := e.open(ctx, org.Source)
	if err != nil {
		res.Err = err
		logOpenFailure(ctx, log, err)
		return res
	}
	defer db.Close()
	res, plan, target, err := e.prepareWith(ctx, db, org, *tc, func(ctx context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
		return rp.PlanRange(ctx, req, r)
	})
	if err == nil {
		// The backfill's chunks, and the rows its reconciliation deletes,
		// are recorded under its own position, never the table's.
		target = target.WithPositionTable(BackfillPosition(res.Table))
		job := TableJob{
			Org: org.Name, Table: BackfillPosition(res.Table), Strategy: "backfill",
			Extractor: backfillExtractor{plan.Extractor}, Target: target,
			Positions: e.positions, Actor: actor, RunID: runID, Metrics: e.metrics,
		}
		res = RunTable(ctx, log, job)
		res.Table, res.Strategy = e.qualified(table), "backfill"
		err = res.Err
	}
	if err == nil && reconcile && plan.Keys != nil {
		res.Reconciled, err = e.reconcileRange(ctx, plan.Keys, target, r, actor)
	}
	res.Err, res.RunID = err, runID
	res.Started = start
	res.Duration = time.Since(start)
	if why, ok := canceled(ctx, res.Err); ok {
		log.Info("ranged backfill canceled", append([]any{"chunks", res.Chunks}, why...)...)
	} else if res.Err != nil {
		log.Error("ranged backfill failed", "chunks", res.Chunks, "err", res.Err)
	} else {
		log.Info("ranged backfill done", "chunks", res.Chunks, "rows", res.Totals.Rows,
			"inserted", res.Totals.Inserted, "updated", res.Totals.Updated, "duration", res.Duration.Round(time.Millisecond))
	}
	return res
}

// backfillExtractor records its chunks as backfill moves in the position
// history.
type backfillExtractor struct{ extractors.Extractor }

func (b backfillExtractor) Open(ctx context.Context, pos watermarks.Position) (extractors.Run, error) {
	run, err := b.Extractor.Open(ctx, pos)
	if err != nil {
		return nil, err
	}
	return backfillRun{run}, nil
}

type backfillRun struct{ extractors.Run }

func (r backfillRun) Next(ctx context.Context) (extractors.Chunk, error) {
	ch, err := r.Run.Next(ctx)
	ch.Reason = watermarks.ReasonBackfill
	return ch, err
}

// ErrRangeOrder means a ranged backfill cannot remove the rows deleted at
// the source within its range: the store would compare the key in another
// order than the source (text under a collation, SQL Server's
// uniqueidentifier byte groups), so "in the range" could differ.
var ErrRangeOrder = errors.New("the store cannot compare this key in the source's order")

// RangeReconcilable reports whether the store compares keys like the ones
// in r in the same order as a source of dialect src: integers, decimals,
// dates and times everywhere, uuids from a PostgreSQL source.
func RangeReconcilable(src config.Dialect, r extractors.KeyRange) bool {
	for _, k := range []watermarks.Key{r.From, r.To} {
		for _, v := range k {
			switch v.Type() {
			case watermarks.TypeInt, watermarks.TypeDecimal, watermarks.TypeDate, watermarks.TypeDateTime,
				watermarks.TypeDateTime2, watermarks.TypeDateTimeOffset:
			case watermarks.TypeUUID:
				if src != config.Postgres {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// reconcileRange deletes the store's rows in r whose key the source no
// longer has.
func (e *Engine) reconcileRange(ctx context.Context, keys extractors.Extractor, target Target, r extractors.KeyRange, actor string) (*sink.ReconcileResult, error) {
	run, next, err := keyBatches(ctx, keys)
	if err != nil {
		return nil, err
	}
	defer run.Close()
	res, err := target.ReconcileRange(ctx, next, actor, r.From, r.To)
	if err != nil {
		return nil, err
	}
	return &res, nil
}
