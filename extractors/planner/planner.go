// Package planner picks each table's capture strategy and builds its
// extractor (DESIGN.md §4, "Planner").
//
// For strategy auto it prefers, in order: Change Data Capture, Change
// Tracking (both SQL Server only, and not in this version yet), a high-water
// mark on the table's row-version column, a high-water mark on its
// modified-at timestamp with look-back, and a full keyset snapshot each run.
// An explicit strategy that cannot work is an error naming the reason.
package planner

import (
	"context"
	"errors"
	"fmt"

	"github.com/ehrsync/ehrsync/extractors/hwm"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
)

// ErrUnsupported is a strategy this version cannot run.
var ErrUnsupported = errors.New("strategy not supported")

// Planner implements engine.Planner.
type Planner struct{}

// New returns a planner.
func New() *Planner { return &Planner{} }

// Plan picks req.Table's strategy and builds its extractor and, for
// strategies blind to deletes, the key reader for reconciliations.
func (p *Planner) Plan(_ context.Context, req engine.PlanRequest) (engine.Plan, error) {
	t, tc := req.Table, req.Config
	strategy := tc.Strategy
	var why string
	switch strategy {
	case config.StrategyCDC, config.StrategyChangeTracking:
		return engine.Plan{}, fmt.Errorf("%s: %w in this version of ehrsync (use hwm or snapshot)", strategy, ErrUnsupported)
	case config.StrategyAuto:
		switch {
		case tc.Cursor != "":
			strategy, why = config.StrategyHWM, fmt.Sprintf("high-water mark on the configured cursor %s", tc.Cursor)
		case t.RowVersion != "":
			strategy, why = config.StrategyHWM, fmt.Sprintf("high-water mark on the row-version column %s (CDC and Change Tracking are not supported by this version)", t.RowVersion)
		case t.ModifiedAt != "":
			strategy, why = config.StrategyHWM, fmt.Sprintf("high-water mark on %s with look-back: the table has no row-version column", t.ModifiedAt)
			tc.Cursor = t.ModifiedAt
		default:
			strategy, why = config.StrategySnapshot, "full keyset snapshot each run: the table has no row-version or modified-at column"
		}
	case config.StrategyHWM:
		why = "configured"
	case config.StrategySnapshot:
		why = "configured: full keyset snapshot each run"
	default:
		return engine.Plan{}, fmt.Errorf("unknown strategy %q", strategy)
	}
	keys, err := snapshot.New(req.DB, req.Dialect, t, snapshot.Options{
		Practices: req.Practices, ChunkRows: max(req.ChunkRows, 50000), ChunkBytes: req.ChunkBytes,
		QueryTimeout: req.QueryTimeout, Allocator: req.Allocator, KeysOnly: true,
	})
	if err != nil {
		return engine.Plan{}, err
	}
	plan := engine.Plan{Strategy: strategy, Why: why, Blind: "deletes (unless reconcile_every is set)", Keys: keys}
	if strategy == config.StrategySnapshot {
		plan.Extractor, err = snapshot.New(req.DB, req.Dialect, t, snapshot.Options{
			Practices: req.Practices, ChunkRows: req.ChunkRows, ChunkBytes: req.ChunkBytes,
			QueryTimeout: req.QueryTimeout, Allocator: req.Allocator,
		})
	} else {
		plan.Extractor, err = hwm.New(req.DB, req.Dialect, t, hwm.Options{
			Practices: req.Practices, Cursor: tc.Cursor, LookBack: tc.LookBack,
			ChunkRows: req.ChunkRows, ChunkBytes: req.ChunkBytes, QueryTimeout: req.QueryTimeout, Allocator: req.Allocator,
		})
	}
	if err != nil {
		return engine.Plan{}, err
	}
	return plan, nil
}
