package planner_test

import (
	"context"
	"database/sql"
	"testing"

	_ "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/schemas"
)

// prober answers as a source with the given CDC and Change Tracking state.
type prober struct {
	capt cdc.Capture
	cdc  error
	ct   changetracking.Status
}

func (p prober) CDC(context.Context, *schemas.Table) (cdc.Capture, error) { return p.capt, p.cdc }
func (p prober) ChangeTracking(context.Context, *schemas.Table) (changetracking.Status, error) {
	return p.ct, nil
}

var (
	ctReady   = changetracking.Status{DatabaseEnabled: true, TableEnabled: true, ViewChangeTracking: true, Select: true}
	ctNoGrant = changetracking.Status{DatabaseEnabled: true, TableEnabled: true, Select: true, User: "ehrsync_reader", Table: "dbo.charges"}
)

func plan(t *testing.T, table string, dialect schemas.Dialect, tc config.Table, p prober) (extractors.Plan, error) {
	t.Helper()
	tb, ok := schemas.NextGen().Table(table)
	require.True(t, ok, table)
	// The engine hands the catalog table (SQL Server types) for either dialect.
	db, err := sql.Open("sqlserver", "sqlserver://planner.invalid") // never connected: the prober answers
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	pl := &planner.Planner{Probe: func(*sql.DB) planner.Prober { return p }}
	tc.Name = table
	return pl.Plan(context.Background(), extractors.PlanRequest{Bounds: extractors.Bounds{ChunkRows: 1000}, DB: db, Dialect: dialect, Table: tb, Config: tc})
}

func TestAutoPrefersCDCThenChangeTrackingThenHighWaterMarkThenSnapshot(t *testing.T) {
	auto := config.Table{Strategy: config.StrategyAuto}
	cases := []struct {
		name    string
		table   string
		dialect schemas.Dialect
		probe   prober
		want    config.Strategy
		blind   bool
	}{
		{"cdc readable", "dbo.claims", schemas.SQLServer, prober{cdc: nil, ct: ctReady}, config.StrategyCDC, false},
		{"ct when cdc is off", "dbo.charges", schemas.SQLServer, prober{cdc: cdc.ErrNotTracked, ct: ctReady}, config.StrategyChangeTracking, false},
		{"ct when cdc is gated", "dbo.charges", schemas.SQLServer, prober{cdc: &cdc.PermissionError{Object: "the change table of capture instance dbo_charges", Grant: "GRANT SELECT ON SCHEMA::cdc TO <login>"}, ct: ctReady}, config.StrategyChangeTracking, false},
		// CDC records computed columns as NULL: not usable when one is the key or the practice column.
		{"ct when the key is computed", "dbo.charges", schemas.SQLServer, prober{capt: cdc.Capture{Computed: []string{"charge_id"}}, ct: ctReady}, config.StrategyChangeTracking, false},
		{"ct when the practice column is computed", "dbo.charges", schemas.SQLServer, prober{capt: cdc.Capture{Computed: []string{"practice_id"}}, ct: ctReady}, config.StrategyChangeTracking, false},
		{"rowversion when neither", "dbo.patient_encounter", schemas.SQLServer, prober{cdc: cdc.ErrNotTracked, ct: ctNoGrant}, config.StrategyHWM, true},
		{"snapshot without a cursor", "dbo.reason_code_links", schemas.SQLServer, prober{cdc: cdc.ErrNotTracked}, config.StrategySnapshot, true},
		{"postgres never probes", "dbo.claims", schemas.Postgres, prober{cdc: nil, ct: ctReady}, config.StrategyHWM, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := plan(t, c.table, c.dialect, auto, c.probe)
			require.NoError(t, err)
			require.Equal(t, c.want, p.Strategy, p.Why.String())
			require.NotNil(t, p.Extractor)
			require.NotNil(t, p.Keys, "no key reader: an expired position could not be reconciled")
			require.NotEmpty(t, p.Why.String())
			require.Equal(t, c.blind, !p.SeesDeletes(), "blind to deletes")
		})
	}
}

func TestExplicitStrategiesThatCannotWorkNameTheFix(t *testing.T) {
	_, err := plan(t, "dbo.claims", schemas.SQLServer, config.Table{Strategy: config.StrategyCDC},
		prober{cdc: &cdc.PermissionError{Object: "the change table of capture instance dbo_claims", Grant: "GRANT SELECT ON SCHEMA::cdc TO <login>"}, ct: ctReady})
	require.ErrorIs(t, err, planner.ErrNotAvailable)
	require.ErrorContains(t, err, "GRANT SELECT ON SCHEMA::cdc")

	_, err = plan(t, "dbo.charges", schemas.SQLServer, config.Table{Strategy: config.StrategyCDC},
		prober{capt: cdc.Capture{Computed: []string{"practice_id"}}})
	require.ErrorIs(t, err, planner.ErrNotAvailable)
	require.ErrorContains(t, err, "computed column practice_id is the table's practice column")

	_, err = plan(t, "dbo.charges", schemas.SQLServer, config.Table{Strategy: config.StrategyChangeTracking}, prober{ct: ctNoGrant})
	require.ErrorIs(t, err, planner.ErrNotAvailable)
	require.ErrorContains(t, err, "GRANT VIEW CHANGE TRACKING")

	// An explicit strategy that works is taken without probing the other.
	p, err := plan(t, "dbo.charges", schemas.SQLServer, config.Table{Strategy: config.StrategyChangeTracking},
		prober{cdc: nil, ct: ctReady})
	require.NoError(t, err)
	require.Equal(t, config.StrategyChangeTracking, p.Strategy)
}

func TestHighWaterMarkOnATimestampWhenThereIsNoRowVersion(t *testing.T) {
	p, err := plan(t, "dbo.patient_encounter", schemas.SQLServer,
		config.Table{Strategy: config.StrategyHWM, Cursor: "modify_timestamp"}, prober{cdc: cdc.ErrNotTracked})
	require.NoError(t, err)
	require.Equal(t, config.StrategyHWM, p.Strategy)
}
