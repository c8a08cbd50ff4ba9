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
	keys, err := keyReader(req, snapshot.Options{})
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
			plan.Strategy, plan.Why.Chose = config.StrategyHWM, extractors.Reason{Code: extractors.ReasonConfiguredCursor, Detail: tc.Cursor}
		case t.RowVersion != "":
			plan.Strategy, plan.Why.Chose = config.StrategyHWM, extractors.Reason{Code: extractors.ReasonRowVersion, Detail: t.RowVersion}
		case t.ModifiedAt != "":
			plan.Strategy, plan.Why.Chose = config.StrategyHWM, extractors.Reason{Code: extractors.ReasonModifiedAt, Detail: t.ModifiedAt}
			tc.Cursor = t.ModifiedAt
		default:
			plan.Strategy, plan.Why.Chose = config.StrategySnapshot, extractors.Reason{Code: extractors.ReasonNoCursor}
		}
	case config.StrategyHWM:
		plan.Why.Chose = extractors.Reason{Code: extractors.ReasonConfigured}
	case config.StrategySnapshot:
		plan.Why.Chose = extractors.Reason{Code: extractors.ReasonConfiguredSnapshot}
	default:
		return extractors.Plan{}, fmt.Errorf("unknown strategy %q", plan.Strategy)
	}
	plan.Keys = keys
	if plan.Strategy == config.StrategySnapshot {
		plan.Extractor, err = snapshot.New(req.DB, req.Dialect, t, snapshot.Options{
			Bounds: req.Bounds,
		})
	} else {
		plan.Extractor, err = hwm.New(req.DB, req.Dialect, t, hwm.Options{
			Bounds:   req.Bounds,
			Cursor:   tc.Cursor,
			LookBack: tc.LookBack,
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
	opts := snapshot.Options{Bounds: req.Bounds, From: r.From, To: r.To}
	ext, err := snapshot.New(req.DB, req.Dialect, req.Table, opts)
	if err != nil {
		return extractors.Plan{}, err
	}
	keys, err := keyReader(req, opts)
	if err != nil {
		return extractors.Plan{}, err
	}
	return extractors.Plan{Strategy: config.StrategySnapshot, Why: extractors.Why{Chose: extractors.Reason{Code: extractors.ReasonRange}},
		Extractor: ext, Keys: keys}, nil
}

// keyReader returns the keys-only snapshot of req.Table with opts (its
// range, if any) for reconciliations, in chunks of at least 50000 keys.
func keyReader(req extractors.PlanRequest, opts snapshot.Options) (*snapshot.Extractor, error) {
	opts.Bounds, opts.KeysOnly = req.Bounds, true
	opts.ChunkRows = max(req.ChunkRows, 50000)
	return snapshot.New(req.DB, req.Dialect, req.Table, opts)
}

// capture tries CDC, then Change Tracking, as the strategy allows. It
// returns a plan with an extractor when one works; for auto, a plan without
// one whose Why.Passed says what was missing; for an explicit
// strategy that cannot work, ErrNotAvailable with the fix.
func (p *Planner) capture(ctx context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	probe := p.Probe
	if probe == nil {
		probe = func(db *sql.DB) Prober { return sqlServerProber{db: db} }
	}
	pr := probe(req.DB)
	t, tc := req.Table, req.Config
	var missing []extractors.Reason
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
			missing = append(missing, extractors.Reason{Code: extractors.ReasonCDCNotReadable, Detail: perm.Error()})
		case errors.As(err, &comp):
			missing = append(missing, extractors.Reason{Code: extractors.ReasonCDCNotUsable, Detail: comp.Error()})
		case errors.Is(err, cdc.ErrNotTracked):
			missing = append(missing, extractors.Reason{Code: extractors.ReasonNoCDC})
		default:
			return extractors.Plan{}, fmt.Errorf("probe CDC on %s: %w", t.QualifiedName(), err)
		}
	}
	st, err := pr.ChangeTracking(ctx, t)
	if err != nil {
		return extractors.Plan{}, fmt.Errorf("probe Change Tracking on %s: %w", t.QualifiedName(), err)
	}
	if st.Ready() {
		ex, err := changetracking.NewSQLServer(req.DB, t, changetracking.Options{Bounds: req.Bounds})
		if err != nil {
			return extractors.Plan{}, err
		}
		why := extractors.Why{Chose: extractors.Reason{Code: extractors.ReasonChangeTracking}, Passed: missing}
		return extractors.Plan{Strategy: config.StrategyChangeTracking, Why: why, Extractor: ex}, nil
	}
	if tc.Strategy == config.StrategyChangeTracking {
		return extractors.Plan{}, fmt.Errorf("change_tracking on %s: %w: %w", t.QualifiedName(), ErrNotAvailable, &changetracking.SetupError{Status: st})
	}
	missing = append(missing, extractors.Reason{Code: extractors.ReasonNoChangeTracking})
	return extractors.Plan{Strategy: config.StrategyAuto, Why: extractors.Why{Passed: missing}}, nil
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
	plan := extractors.Plan{Strategy: config.StrategyCDC, Why: extractors.Why{Chose: extractors.Reason{Code: extractors.ReasonCDC}}}
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
			plan.Why.Notes = append(plan.Why.Notes, extractors.Reason{Code: extractors.ReasonComputedNotRead, Detail: strings.Join(capt.Computed, ", ")})
		}
	}
	if capt.Instance.NoCommandID {
		plan.Why.Notes = append(plan.Why.Notes, extractors.Reason{Code: extractors.ReasonNoCommandID, Detail: capt.Instance.Name})
	}
	ex, err := cdc.New(req.DB, t, cdc.Options{Bounds: req.Bounds})
	if err != nil {
		return extractors.Plan{}, err
	}
	plan.Extractor = ex
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
