// Package planner picks each table's capture strategy and builds its
// extractor (DESIGN.md §4, "Planner").
//
// For strategy auto on SQL Server it prefers, in order: Change Data Capture
// when the table has a capture instance the login can read; Change Tracking
// when it is enabled for the database and the table and VIEW CHANGE TRACKING
// and SELECT are granted; a high-water mark on the table's rowversion
// column; one on its modified-at timestamp with look-back; and a full keyset
// snapshot each run. PostgreSQL sources have no CDC or Change Tracking and
// start at the high-water mark. An explicit strategy that cannot work is an
// error naming the reason and the statement that fixes it.
package planner

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/hwm"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/schemas"
)

// ErrNotAvailable is an explicit strategy the source cannot serve for a
// table; the error says why and how to fix it.
var ErrNotAvailable = errors.New("strategy not available for this table")

// Prober asks a SQL Server source what a table offers. The real one reads
// the source's catalog; tests substitute their own.
type Prober interface {
	// CDC returns what CDC offers when the table has a capture instance the
	// login can read, or an error saying why not (cdc.ErrNotTracked,
	// *cdc.PermissionError).
	CDC(ctx context.Context, t *schemas.Table) (cdc.Capture, error)
	// ChangeTracking reports whether Change Tracking can read the table.
	ChangeTracking(ctx context.Context, t *schemas.Table) (changetracking.Status, error)
}

// Planner implements engine.Planner.
type Planner struct {
	// Probe returns the prober for a source; nil means the real one.
	Probe func(db *sql.DB) Prober
}

// New returns a planner that probes sources for real.
func New() *Planner { return &Planner{} }

// Plan picks req.Table's strategy and builds its extractor and, for
// strategies blind to deletes, the key reader for reconciliations.
func (p *Planner) Plan(ctx context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	t, tc := req.Table, req.Config
	plan := extractors.Plan{Strategy: tc.Strategy}
	keys, err := snapshot.New(req.DB, req.Dialect, t, snapshot.Options{
		Practices: req.Practices, ChunkRows: max(req.ChunkRows, 50000), ChunkBytes: req.ChunkBytes,
		QueryTimeout: req.QueryTimeout, Allocator: req.Allocator, KeysOnly: true,
	})
	if err != nil {
		return extractors.Plan{}, err
	}
	if req.Dialect == schemas.SQLServer && (tc.Strategy == config.StrategyAuto || tc.Strategy == config.StrategyCDC || tc.Strategy == config.StrategyChangeTracking) {
		if plan, err = p.capture(ctx, req); err != nil || plan.Extractor != nil {
			plan.Keys = keys
			return plan, err
		}
	}
	switch plan.Strategy {
	case config.StrategyAuto:
		switch {
		case tc.Cursor != "":
			plan.Strategy, plan.Why = config.StrategyHWM, fmt.Sprintf("high-water mark on the configured cursor %s", tc.Cursor)
		case t.RowVersion != "":
			plan.Strategy, plan.Why = config.StrategyHWM, "high-water mark on the row-version column "+t.RowVersion+plan.Why
		case t.ModifiedAt != "":
			plan.Strategy, plan.Why = config.StrategyHWM, "high-water mark on "+t.ModifiedAt+" with look-back: the table has no row-version column"+plan.Why
			tc.Cursor = t.ModifiedAt
		default:
			plan.Strategy, plan.Why = config.StrategySnapshot, "full keyset snapshot each run: the table has no row-version or modified-at column"+plan.Why
		}
	case config.StrategyHWM:
		plan.Why = "configured"
	case config.StrategySnapshot:
		plan.Why = "configured: full keyset snapshot each run"
	default:
		return extractors.Plan{}, fmt.Errorf("unknown strategy %q", plan.Strategy)
	}
	plan.Keys = keys
	plan.Blind = "deletes (unless reconcile_every is set)"
	if plan.Strategy == config.StrategySnapshot {
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
		return extractors.Plan{}, err
	}
	return plan, nil
}

// PlanRange plans an operator's ranged backfill of req.Table: a keyset
// snapshot bounded to r, whatever the table's strategy (the range is on the
// primary key), and its keys-only twin for the range's reconciliation. It
// implements engine.RangePlanner.
func (p *Planner) PlanRange(ctx context.Context, req extractors.PlanRequest, r extractors.KeyRange) (extractors.Plan, error) {
	opts := snapshot.Options{
		Practices: req.Practices, ChunkRows: req.ChunkRows, ChunkBytes: req.ChunkBytes,
		QueryTimeout: req.QueryTimeout, Allocator: req.Allocator, From: r.From, To: r.To,
	}
	ext, err := snapshot.New(req.DB, req.Dialect, req.Table, opts)
	if err != nil {
		return extractors.Plan{}, err
	}
	opts.KeysOnly, opts.ChunkRows = true, max(req.ChunkRows, 50000)
	keys, err := snapshot.New(req.DB, req.Dialect, req.Table, opts)
	if err != nil {
		return extractors.Plan{}, err
	}
	return extractors.Plan{Strategy: config.StrategySnapshot, Why: "an operator's ranged backfill: a keyset snapshot of the key range",
		Blind: "deletes (outside a range reconciliation)", Extractor: ext, Keys: keys}, nil
}

// capture tries CDC, then Change Tracking, as the strategy allows. It
// returns a plan with an extractor when one works; for auto, a plan without
// one whose Why says (after a colon) what was missing; for an explicit
// strategy that cannot work, ErrNotAvailable with the fix.
func (p *Planner) capture(ctx context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	probe := p.Probe
	if probe == nil {
		probe = func(db *sql.DB) Prober { return sqlServerProber{db: db} }
	}
	pr := probe(req.DB)
	t, tc := req.Table, req.Config
	var missing []string
	if tc.Strategy != config.StrategyChangeTracking {
		capt, err := pr.CDC(ctx, t)
		if err == nil {
			err = cdcNeedsComputed(t, capt.Computed)
		}
		if err == nil {
			return p.cdcPlan(req, capt)
		}
		if tc.Strategy == config.StrategyCDC {
			if errors.Is(err, cdc.ErrNotTracked) {
				return extractors.Plan{}, fmt.Errorf("cdc on %s: %w: %w: enable CDC on the table: %s", t.QualifiedName(), ErrNotAvailable, err, enableCDC(t))
			}
			return extractors.Plan{}, fmt.Errorf("cdc on %s: %w: %w", t.QualifiedName(), ErrNotAvailable, err)
		}
		var perm *cdc.PermissionError
		var comp *computedError
		switch {
		case errors.As(err, &perm):
			missing = append(missing, "CDC not readable ("+perm.Error()+")")
		case errors.As(err, &comp):
			missing = append(missing, "CDC not usable ("+comp.Error()+")")
		case errors.Is(err, cdc.ErrNotTracked):
			missing = append(missing, "no readable CDC capture instance")
		default:
			return extractors.Plan{}, fmt.Errorf("probe CDC on %s: %w", t.QualifiedName(), err)
		}
	}
	st, err := pr.ChangeTracking(ctx, t)
	if err != nil {
		return extractors.Plan{}, fmt.Errorf("probe Change Tracking on %s: %w", t.QualifiedName(), err)
	}
	if st.Ready() {
		ex, err := changetracking.NewSQLServer(req.DB, t, changetracking.Options{Practices: req.Practices, ChunkRows: req.ChunkRows,
			ChunkBytes: req.ChunkBytes, QueryTimeout: req.QueryTimeout, Allocator: req.Allocator})
		if err != nil {
			return extractors.Plan{}, err
		}
		why := "Change Tracking is enabled and VIEW CHANGE TRACKING is granted"
		if len(missing) > 0 {
			why += " (" + strings.Join(missing, "; ") + ")"
		}
		return extractors.Plan{Strategy: config.StrategyChangeTracking, Why: why, Extractor: ex}, nil
	}
	if tc.Strategy == config.StrategyChangeTracking {
		return extractors.Plan{}, fmt.Errorf("change_tracking on %s: %w: %w", t.QualifiedName(), ErrNotAvailable, &changetracking.SetupError{Status: st})
	}
	return extractors.Plan{Strategy: config.StrategyAuto, Why: ": " + strings.Join(append(missing, "Change Tracking not readable"), ", ")}, nil
}

// computedError is a computed column CDC cannot do without: CDC records
// computed columns as NULL, and the extractor needs this one's value (a key
// column, the practice filter's column).
type computedError struct{ column, role string }

func (e *computedError) Error() string {
	return fmt.Sprintf("computed column %s is the table's %s, and CDC records computed columns as NULL: use change_tracking or hwm", e.column, e.role)
}

// cdcNeedsComputed returns a *computedError when one of computed is a
// column the CDC extractor reads values of.
func cdcNeedsComputed(t *schemas.Table, computed []string) error {
	for _, c := range computed {
		switch {
		case t.IsKey(c):
			return &computedError{column: c, role: "key column"}
		case strings.EqualFold(c, t.Practice):
			return &computedError{column: c, role: "practice column"}
		}
	}
	return nil
}

// cdcPlan builds the CDC plan for what the probe found: computed columns
// are left out of the table (CDC records them as NULL, so reading them
// would overwrite the snapshot's values), and a change table without
// __$command_id is named, since its changes are then read in seqval order.
func (p *Planner) cdcPlan(req extractors.PlanRequest, capt cdc.Capture) (extractors.Plan, error) {
	t := req.Table
	why := "the table is tracked by Change Data Capture and the login can read its capture instance"
	plan := extractors.Plan{Strategy: config.StrategyCDC}
	if len(capt.Computed) > 0 {
		computed := func(name string) bool {
			return slices.ContainsFunc(capt.Computed, func(n string) bool { return strings.EqualFold(n, name) })
		}
		// CDC pages by neither cursor: a computed one is left out like the
		// others (Project keeps the cursors it names).
		base := *t
		if computed(base.RowVersion) {
			base.RowVersion = ""
		}
		if computed(base.ModifiedAt) {
			base.ModifiedAt = ""
		}
		t = &base
		var keep []string
		for _, c := range t.Columns {
			if !computed(c.Name) {
				keep = append(keep, c.Name)
			}
		}
		nt, err := t.Project(keep)
		if err != nil {
			return extractors.Plan{}, fmt.Errorf("cdc on %s: leave out computed columns: %w", t.QualifiedName(), err)
		}
		if len(nt.Columns) < len(t.Columns) {
			t, plan.Table = nt, nt
			why += "; computed columns " + strings.Join(capt.Computed, ", ") + " are not read (CDC records them as NULL)"
		}
	}
	if capt.Instance.NoCommandID {
		why += "; capture instance " + capt.Instance.Name + " has no __$command_id, so changes inside a transaction are read in " +
			"(__$start_lsn, __$seqval, __$operation) order (install the SQL Server cumulative update of KB 3030352, then re-create the capture instance)"
	}
	ex, err := cdc.New(req.DB, t, cdc.Options{Practices: req.Practices, ChunkRows: req.ChunkRows,
		ChunkBytes: req.ChunkBytes, QueryTimeout: req.QueryTimeout, Allocator: req.Allocator})
	if err != nil {
		return extractors.Plan{}, err
	}
	plan.Why, plan.Extractor = why, ex
	return plan, nil
}

// enableCDC is the statement that creates t's capture instance, and the one
// that enables CDC on a database without it.
func enableCDC(t *schemas.Table) string {
	lit := func(s string) string { return "N'" + strings.ReplaceAll(s, "'", "''") + "'" }
	return "EXEC sys.sp_cdc_enable_table @source_schema = " + lit(t.Schema) + ", @source_name = " + lit(t.Name) +
		", @role_name = NULL; (on a database without CDC, EXEC sys.sp_cdc_enable_db; first)"
}

// sqlServerProber probes a real SQL Server.
type sqlServerProber struct{ db *sql.DB }

func (p sqlServerProber) CDC(ctx context.Context, t *schemas.Table) (cdc.Capture, error) {
	return (&cdc.SQLServer{DB: p.db}).Probe(ctx, t)
}

func (p sqlServerProber) ChangeTracking(ctx context.Context, t *schemas.Table) (changetracking.Status, error) {
	return changetracking.NewSource(p.db).Probe(ctx, t)
}
