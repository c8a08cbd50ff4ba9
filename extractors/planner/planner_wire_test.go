package planner_test

import (
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"slices"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The planner over the wire: planner.New() probes a SQL Server model
// (package mssqlmodel) served over TDS on loopback, through ehrsync's own
// source connection and go-mssqldb, exactly as it probes a live server.
// The login is mssqltest.User; each case gives it only the roles and
// grants it names (a login the model does not know would be db_owner).

// wire is one served model and the pool reaching it.
type wire struct {
	srv *mssqltest.Server
	m   *mssqlmodel.Model
	db  *sql.DB
}

func serve(t *testing.T) *wire {
	t.Helper()
	srv := mssqltest.Serve(t, mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true, SnapshotIsolation: true}))
	return &wire{srv: srv, m: srv.Model, db: srv.Open(t)}
}

// login restricts the login to roles (db_datareader, a gating role ...).
func (w *wire) login(roles ...string) { w.m.AddLogin(mssqltest.User, roles...) }

func (w *wire) grant(t *testing.T, permission, securable string) {
	t.Helper()
	require.NoError(t, w.m.Grant(mssqltest.User, permission, securable))
}

func (w *wire) deny(t *testing.T, permission, securable string) {
	t.Helper()
	require.NoError(t, w.m.Deny(mssqltest.User, permission, securable))
}

func (w *wire) create(t *testing.T, tb *schemas.Table, computed ...mssqlmodel.Computed) {
	t.Helper()
	require.NoError(t, w.m.CreateTable(tb, computed...))
}

func (w *wire) captureAll(t *testing.T, tb *schemas.Table, ci mssqlmodel.CaptureInstance) {
	t.Helper()
	w.m.EnableCDCDatabase()
	ci.Table = tb.QualifiedName()
	_, err := w.m.EnableCDC(ci)
	require.NoError(t, err)
}

func (w *wire) track(t *testing.T, tb *schemas.Table) {
	t.Helper()
	w.m.EnableCTDatabase()
	require.NoError(t, w.m.EnableCT(tb.QualifiedName()))
}

// insert commits rows n (one transaction).
func (w *wire) insert(t *testing.T, tb *schemas.Table, n ...int) {
	t.Helper()
	tx := w.m.Begin()
	for _, i := range n {
		require.NoError(t, tx.Insert(tb.QualifiedName(), mssqltest.Row(tb, i, "")))
	}
	require.NoError(t, tx.Commit())
}

func nextGen(t *testing.T, name string) *schemas.Table {
	t.Helper()
	tb, ok := schemas.NextGen().Table(name)
	require.True(t, ok, name)
	return tb
}

// noRowVersion is dbo.payer_mstr without its rowversion column: a table
// with only a modified-at timestamp.
func noRowVersion(t *testing.T) *schemas.Table {
	t.Helper()
	tb := nextGen(t, "dbo.payer_mstr")
	var keep []schemas.Column
	for _, c := range tb.Columns {
		if c.Name != tb.RowVersion {
			keep = append(keep, c)
		}
	}
	tb.Name, tb.Columns, tb.RowVersion = "payer_no_rv", keep, ""
	require.NoError(t, tb.Validate())
	require.Equal(t, "modify_timestamp", tb.ModifiedAt)
	return tb
}

func (w *wire) plan(t *testing.T, tb *schemas.Table, tc config.Table) (extractors.Plan, error) {
	t.Helper()
	tc.Name = tb.QualifiedName()
	return planner.New().Plan(context.Background(), extractors.PlanRequest{
		Bounds:  extractors.Bounds{ChunkRows: 2, QueryTimeout: time.Minute},
		DB:      w.db,
		Dialect: schemas.SQLServer,
		Table:   tb,
		Config:  tc,
	})
}

// keysOf returns the first key column's values of a batch, as text.
func keysOf(b arrow.RecordBatch, col string) []string {
	idx := b.Schema().FieldIndices(col)
	if len(idx) == 0 {
		return nil
	}
	a := b.Column(idx[0])
	out := make([]string, 0, a.Len())
	for i := 0; i < a.Len(); i++ {
		out = append(out, a.ValueStr(i))
	}
	return out
}

// runPlan runs the plan's extractor from *pos to the end over the wire, as
// the engine does, and returns the rows' values of column col in batch
// order.
func runPlan(t *testing.T, p extractors.Plan, req *schemas.Table, pos *watermarks.Position, col string) []string {
	t.Helper()
	tb := req
	if p.Table != nil {
		tb = p.Table
	}
	var got []string
	_, err := extractortest.SyncRun(t, p.Extractor, tb, pos, 0, "empty batch", func(b arrow.RecordBatch, _ watermarks.Reason) error {
		if b != nil {
			got = append(got, keysOf(b, col)...)
		}
		return nil
	})
	require.NoError(t, err)
	return got
}

// TestWireAutoPicksWhatTheServerOffers: strategy auto on a real pool picks
// CDC when the table has a readable capture instance, Change Tracking when
// CDC is absent and VIEW CHANGE TRACKING is granted, the high-water mark on
// rowversion when neither, the timestamp cursor without a rowversion, and
// the snapshot otherwise; a login that may not read cdc.change_tables
// (error 229, D8) or is outside the capture instance's gating role (P17)
// falls back, and the plan's Why says why. Each plan's extractor then runs
// over the wire: the first run reads every row, the next one a new row.
func TestWireAutoPicksWhatTheServerOffers(t *testing.T) {
	claims, charges := nextGen(t, "dbo.claims"), nextGen(t, "dbo.charges")
	encounters, links := nextGen(t, "dbo.patient_encounter"), nextGen(t, "dbo.reason_code_links")
	payers := noRowVersion(t)
	readerWithCT := func(tb *schemas.Table) func(t *testing.T, w *wire) {
		return func(t *testing.T, w *wire) {
			w.login("db_datareader")
			w.track(t, tb)
			w.grant(t, "VIEW CHANGE TRACKING", tb.QualifiedName())
		}
	}
	cases := []struct {
		name  string
		table *schemas.Table
		setup func(t *testing.T, w *wire)
		want  config.Strategy
		why   []string // the Why holds each
		blind bool
	}{
		{name: "cdc when the capture instance is readable", table: claims, want: config.StrategyCDC,
			setup: func(t *testing.T, w *wire) {
				readerWithCT(claims)(t, w) // Change Tracking too: CDC comes first
				w.captureAll(t, claims, mssqlmodel.CaptureInstance{})
			},
			why: []string{"tracked by Change Data Capture"}},
		{name: "change tracking when cdc is absent", table: charges, want: config.StrategyChangeTracking,
			setup: readerWithCT(charges),
			why:   []string{"Change Tracking is enabled and VIEW CHANGE TRACKING is granted", "no readable CDC capture instance"}},
		{name: "change tracking when the database has cdc but not the table", table: charges, want: config.StrategyChangeTracking,
			setup: func(t *testing.T, w *wire) {
				readerWithCT(charges)(t, w)
				w.m.EnableCDCDatabase()
			},
			why: []string{"no readable CDC capture instance"}},
		{name: "high-water mark when VIEW CHANGE TRACKING is missing", table: charges, want: config.StrategyHWM, blind: true,
			setup: func(t *testing.T, w *wire) {
				w.login("db_datareader")
				w.track(t, charges)
			},
			why: []string{"row-version column row_timestamp", "Change Tracking not readable"}},
		{name: "high-water mark on the rowversion when neither", table: encounters, want: config.StrategyHWM, blind: true,
			setup: func(t *testing.T, w *wire) { w.login("db_datareader") },
			why:   []string{"row-version column row_timestamp", "no readable CDC capture instance", "Change Tracking not readable"}},
		{name: "timestamp cursor without a rowversion", table: payers, want: config.StrategyHWM, blind: true,
			setup: func(t *testing.T, w *wire) { w.login("db_datareader") },
			why:   []string{"modify_timestamp with look-back", "no row-version column"}},
		{name: "snapshot without a cursor", table: links, want: config.StrategySnapshot, blind: true,
			setup: func(t *testing.T, w *wire) { w.login("db_datareader") },
			why:   []string{"full keyset snapshot"}},
		// D8: CDC is on, per-table grants, and cdc.change_tables answers
		// 229: auto falls back instead of failing, and says why.
		{name: "cdc.change_tables denied falls back to change tracking", table: claims, want: config.StrategyChangeTracking,
			setup: func(t *testing.T, w *wire) {
				readerWithCT(claims)(t, w)
				w.captureAll(t, claims, mssqlmodel.CaptureInstance{})
				w.deny(t, "SELECT", "OBJECT::[cdc].[change_tables]")
			},
			why: []string{"Change Tracking is enabled", "CDC not readable", "cdc.change_tables", "GRANT SELECT ON SCHEMA::cdc"}},
		{name: "cdc.change_tables denied falls back to the high-water mark", table: claims, want: config.StrategyHWM, blind: true,
			setup: func(t *testing.T, w *wire) {
				w.login()
				w.grant(t, "SELECT", claims.QualifiedName()) // per-table grants only
				w.captureAll(t, claims, mssqlmodel.CaptureInstance{})
			},
			why: []string{"row-version column row_timestamp", "CDC not readable", "cdc.change_tables", "GRANT SELECT ON SCHEMA::cdc"}},
		// P17: the capture instance has a gating role the login is not in:
		// cdc.change_tables lists it, its change table answers 229.
		{name: "outside the gating role falls back", table: claims, want: config.StrategyHWM, blind: true,
			setup: func(t *testing.T, w *wire) {
				w.login("db_datareader")
				w.captureAll(t, claims, mssqlmodel.CaptureInstance{Role: "cdc_claims_reader"})
			},
			why: []string{"CDC not readable", "change table of capture instance dbo_claims", "cdc_claims_reader"}},
		{name: "inside the gating role reads cdc", table: claims, want: config.StrategyCDC,
			setup: func(t *testing.T, w *wire) {
				w.login("db_datareader", "cdc_claims_reader")
				w.captureAll(t, claims, mssqlmodel.CaptureInstance{Role: "cdc_claims_reader"})
			},
			why: []string{"tracked by Change Data Capture"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := serve(t)
			w.create(t, c.table)
			c.setup(t, w)
			w.insert(t, c.table, 1, 2, 3)

			p, err := w.plan(t, c.table, config.Table{Strategy: config.StrategyAuto})
			require.NoError(t, err)
			t.Logf("%s: %s", p.Strategy, p.Why.String())
			require.Equal(t, c.want, p.Strategy, p.Why.String())
			for _, s := range c.why {
				require.Contains(t, p.Why.String(), s)
			}
			require.Equal(t, c.blind, !p.SeesDeletes(), "blind to deletes")
			require.NotNil(t, p.Keys)

			// The plan works over the wire: the first run reads the rows,
			// the next one a row committed after it.
			key := c.table.Key[0]
			var pos watermarks.Position
			first := runPlan(t, p, c.table, &pos, key)
			require.Len(t, first, 3)
			w.insert(t, c.table, 4)
			next := runPlan(t, p, c.table, &pos, key)
			require.Contains(t, next, keysOfRow(t, c.table, 4, key))
		})
	}
}

// keysOfRow is how a batch shows row n's column col.
func keysOfRow(t *testing.T, tb *schemas.Table, n int, col string) string {
	t.Helper()
	v := mssqltest.Row(tb, n, "")[col]
	if u, ok := v.(uuid.UUID); ok {
		return u.String()
	}
	return fmt.Sprint(v)
}

// TestWireExplicitStrategiesThatCannotWorkNameTheFix: an explicit strategy
// the server cannot serve is planner.ErrNotAvailable naming the statement
// that fixes it, probed over the wire.
func TestWireExplicitStrategiesThatCannotWorkNameTheFix(t *testing.T) {
	charges := nextGen(t, "dbo.charges")
	cases := []struct {
		name     string
		strategy config.Strategy
		setup    func(t *testing.T, w *wire)
		want     []string
	}{
		{name: "cdc on a database without cdc", strategy: config.StrategyCDC,
			setup: func(t *testing.T, w *wire) { w.login("db_datareader") },
			want:  []string{"EXEC sys.sp_cdc_enable_db", "EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'charges'"}},
		{name: "cdc on a table without a capture instance", strategy: config.StrategyCDC,
			setup: func(t *testing.T, w *wire) { w.login("db_datareader"); w.m.EnableCDCDatabase() },
			want:  []string{"EXEC sys.sp_cdc_enable_table @source_schema = N'dbo', @source_name = N'charges'"}},
		{name: "cdc with cdc.change_tables denied", strategy: config.StrategyCDC,
			setup: func(t *testing.T, w *wire) {
				w.login("db_datareader")
				w.captureAll(t, charges, mssqlmodel.CaptureInstance{})
				w.deny(t, "SELECT", "SCHEMA::cdc")
			},
			want: []string{"cdc.change_tables", "GRANT SELECT ON SCHEMA::cdc"}},
		{name: "cdc outside the gating role", strategy: config.StrategyCDC,
			setup: func(t *testing.T, w *wire) {
				w.login("db_datareader")
				w.captureAll(t, charges, mssqlmodel.CaptureInstance{Role: "cdc_gate"})
			},
			want: []string{"change table of capture instance dbo_charges", "ALTER ROLE [cdc_gate] ADD MEMBER"}},
		{name: "change tracking off for the database", strategy: config.StrategyChangeTracking,
			setup: func(t *testing.T, w *wire) { w.login("db_datareader") },
			want: []string{"ALTER DATABASE [NGProd] SET CHANGE_TRACKING = ON", "ALTER TABLE [dbo].[charges] ENABLE CHANGE_TRACKING;",
				"GRANT VIEW CHANGE TRACKING ON [dbo].[charges] TO [ehrsync_reader];"}},
		{name: "change tracking off for the table", strategy: config.StrategyChangeTracking,
			setup: func(t *testing.T, w *wire) {
				w.login("db_datareader")
				w.grant(t, "VIEW CHANGE TRACKING", charges.QualifiedName())
				w.m.EnableCTDatabase()
			},
			want: []string{"ALTER TABLE [dbo].[charges] ENABLE CHANGE_TRACKING;"}},
		{name: "change tracking without VIEW CHANGE TRACKING", strategy: config.StrategyChangeTracking,
			setup: func(t *testing.T, w *wire) { w.login("db_datareader"); w.track(t, charges) },
			want:  []string{"GRANT VIEW CHANGE TRACKING ON [dbo].[charges] TO [ehrsync_reader];"}},
		{name: "change tracking without SELECT", strategy: config.StrategyChangeTracking,
			setup: func(t *testing.T, w *wire) {
				w.login()
				w.track(t, charges)
				w.grant(t, "VIEW CHANGE TRACKING", charges.QualifiedName())
			},
			want: []string{"GRANT SELECT ON [dbo].[charges] TO [ehrsync_reader];"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := serve(t)
			w.create(t, charges)
			c.setup(t, w)
			_, err := w.plan(t, charges, config.Table{Strategy: c.strategy})
			t.Log(err)
			require.ErrorIs(t, err, planner.ErrNotAvailable)
			for _, s := range c.want {
				require.ErrorContains(t, err, s)
			}
		})
	}
}

// TestWireD7NoCommandID: a capture instance without __$command_id (a
// server without KB 3030352's update, or one patched without its
// replication components) is detected with COL_LENGTH: the CDC plan's Why
// names the missing column, and a run reads its changes in (__$start_lsn,
// __$seqval, __$operation) order without error 207. Without the detection
// the chunk query names __$command_id, which fails with 207 (shown here
// by asking for it).
func TestWireD7NoCommandID(t *testing.T) {
	tb := nextGen(t, "dbo.reason_code_links")
	w := serve(t)
	w.create(t, tb)
	w.login("db_datareader")
	w.captureAll(t, tb, mssqlmodel.CaptureInstance{Name: "links_old", NoCommandID: true})
	w.insert(t, tb, 1)

	p, err := w.plan(t, tb, config.Table{Strategy: config.StrategyAuto})
	require.NoError(t, err)
	require.Equal(t, config.StrategyCDC, p.Strategy, p.Why.String())
	require.Contains(t, p.Why.String(), "capture instance links_old has no __$command_id")
	require.Contains(t, p.Why.String(), "(__$start_lsn, __$seqval, __$operation) order")

	var pos watermarks.Position
	require.Len(t, runPlan(t, p, tb, &pos, "seq_nbr"), 1, "the first run's snapshot")

	// One transaction of three inserts whose seqvals run against their
	// command order: without __$command_id the seqval order is the read
	// order, so the rows arrive 4, 3, 2.
	tx := w.m.Begin()
	for _, n := range []int{2, 3, 4} {
		require.NoError(t, tx.Insert(tb.QualifiedName(), mssqltest.Row(tb, n, "")))
	}
	tx.ReverseSeqvals()
	require.NoError(t, tx.Commit())
	require.Equal(t, []string{"4", "3", "2"}, runPlan(t, p, tb, &pos, "seq_nbr"))
	for _, st := range w.m.Statements() {
		require.NoError(t, st.Err, st.SQL)
	}

	t.Run("naming __$command_id fails with 207", func(t *testing.T) {
		src := &cdc.SQLServer{DB: w.db}
		cols := make([]string, len(tb.Columns))
		for i, c := range tb.Columns {
			cols[i] = c.Name
		}
		max, err := src.MaxLSN(context.Background())
		require.NoError(t, err)
		_, err = src.Changes(context.Background(), cdc.Query{Instance: "links_old", To: max, Limit: 10, Columns: cols})
		require.ErrorContains(t, err, "Invalid column name '__$command_id'")
		var num interface{ SQLErrorNumber() int32 }
		require.ErrorAs(t, err, &num)
		require.EqualValues(t, 207, num.SQLErrorNumber())
	})
}

// TestWireD10ComputedColumnsLeftOutOfCDC: CDC records a computed column as
// NULL in every change row; the CDC plan leaves it out of its table (so a
// change row never overwrites the snapshot's value with NULL), its Why
// names it, and no batch of a run carries it.
func TestWireD10ComputedColumnsLeftOutOfCDC(t *testing.T) {
	tb := &schemas.Table{Schema: "dbo", Name: "charge_totals", Dialect: schemas.SQLServer, Key: []string{"id"}}
	tb = extractortest.DeclareTable(t, tb, []extractortest.Column{
		{Name: "id", Type: "int"}, {Name: "amount", Type: "numeric(19,2)", Nullable: true},
		{Name: "doubled", Type: "numeric(19,2)", Nullable: true},
	})
	doubled := mssqlmodel.Computed{Column: "doubled", Func: func(r map[string]any) any {
		a, ok := r["amount"].(string)
		if !ok {
			return nil
		}
		x, _ := new(big.Rat).SetString(a)
		return x.Mul(x, big.NewRat(2, 1))
	}}
	w := serve(t)
	w.create(t, tb, doubled)
	w.login("db_datareader")
	w.captureAll(t, tb, mssqlmodel.CaptureInstance{})
	w.insert(t, tb, 1, 2)

	p, err := w.plan(t, tb, config.Table{Strategy: config.StrategyAuto})
	require.NoError(t, err)
	require.Equal(t, config.StrategyCDC, p.Strategy, p.Why.String())
	require.Contains(t, p.Why.String(), "computed columns doubled are not read (CDC records them as NULL)")
	require.NotNil(t, p.Table, "the plan narrows the table")
	_, has := p.Table.Column("doubled")
	require.False(t, has)
	require.Equal(t, p.Table, p.Extractor.(*cdc.Extractor).Table())
	_, has = tb.Column("doubled")
	require.True(t, has, "the request's table is left as it was")

	columns := func(t *testing.T, ext extractors.Extractor, pos *watermarks.Position) (batches int) {
		t.Helper()
		_, err := extractortest.SyncRun(t, ext, p.Table, pos, 0, "empty batch", func(b arrow.RecordBatch, _ watermarks.Reason) error {
			if b != nil {
				batches++
				require.Empty(t, b.Schema().FieldIndices("doubled"), "a batch carries the computed column")
			}
			return nil
		})
		require.NoError(t, err)
		return batches
	}
	var pos watermarks.Position
	require.Positive(t, columns(t, p.Extractor, &pos), "the first run's snapshot")
	tx := w.m.Begin()
	require.NoError(t, tx.Update(tb.QualifiedName(), map[string]any{"id": 1, "amount": "5.00"}))
	require.NoError(t, tx.Commit())
	require.Positive(t, columns(t, p.Extractor, &pos), "the change run")

	t.Run("read with the computed column, an update carries NULL", func(t *testing.T) {
		// What the fix avoids: the change row's NULL, which the store
		// would apply over the snapshot's 10.00.
		full, err := cdc.New(w.db, tb, cdc.Options{})
		require.NoError(t, err)
		rows, err := w.m.Rows(tb.QualifiedName())
		require.NoError(t, err)
		require.NotNil(t, rows[0]["doubled"], "the table computes it")
		tx := w.m.Begin()
		require.NoError(t, tx.Update(tb.QualifiedName(), map[string]any{"id": 2, "amount": "7.00"}))
		require.NoError(t, tx.Commit())
		pos := pos
		var nulls int
		_, err = extractortest.SyncRun(t, full, tb, &pos, 0, "empty batch", func(b arrow.RecordBatch, _ watermarks.Reason) error {
			if b != nil {
				d := b.Column(b.Schema().FieldIndices("doubled")[0]).(*array.Decimal128)
				for i := 0; i < d.Len(); i++ {
					if d.IsNull(i) {
						nulls++
					}
				}
			}
			return nil
		})
		require.NoError(t, err)
		require.Equal(t, 1, nulls)
	})
}

// TestWireColumnsDescribeSQLServer: the planner describes a SQL Server
// table over the wire as the server has it now (engine.Describer): every
// catalog table, created as the catalog says, reads back with no change;
// a table whose column was dropped, whose column was widened and which
// gained a column reads back as such, for schemas.AdaptToSource to judge;
// a missing table is an error naming it.
func TestWireColumnsDescribeSQLServer(t *testing.T) {
	ctx := context.Background()
	w := serve(t)
	p := planner.New()
	for _, tb := range schemas.NextGen().Tables() {
		w.create(t, tb)
		cols, err := p.Columns(ctx, w.db, schemas.SQLServer, tb)
		require.NoError(t, err, tb.QualifiedName())
		require.Len(t, cols, len(tb.Columns), tb.QualifiedName())
		a, err := schemas.AdaptToSource(tb, schemas.SQLServer, cols, nil)
		require.NoError(t, err, tb.QualifiedName())
		require.Empty(t, a.Changed, tb.QualifiedName())
		require.Empty(t, a.Added, tb.QualifiedName())
		require.Empty(t, a.Ignored, tb.QualifiedName())
	}

	// dbo.payer_mstr as the source has it now: a column dropped, an int
	// column widened to bigint, a column added.
	catalog := nextGen(t, "dbo.payer_mstr")
	now := cloneTable(catalog)
	now.Name = "payer_now"
	var keep []schemas.Column
	dropped, widened := "", ""
	for _, c := range now.Columns {
		switch {
		case dropped == "" && !now.IsKey(c.Name) && c.Name != now.RowVersion && c.Name != now.ModifiedAt && c.Name != now.Practice:
			dropped = c.Name
			continue
		case widened == "" && c.Type.Name == "int":
			widened = c.Name
			c.Type.Name = "bigint"
		}
		keep = append(keep, c)
	}
	require.NotEmpty(t, dropped)
	require.NotEmpty(t, widened)
	now.Columns = append(keep, schemas.Column{Name: "added_note", Type: schemas.Type{Name: "nvarchar", Length: 50}, Nullable: true})
	w.create(t, now)
	read := cloneTable(catalog)
	read.Name = now.Name
	cols, err := p.Columns(ctx, w.db, schemas.SQLServer, read)
	require.NoError(t, err)
	_, err = schemas.AdaptToSource(read, schemas.SQLServer, cols, nil)
	require.ErrorIs(t, err, schemas.ErrSourceChanged)
	require.ErrorContains(t, err, "column "+dropped+" is in the catalog but no longer at the source")

	var allow []string
	for _, c := range read.Columns {
		if c.Name != dropped {
			allow = append(allow, c.Name)
		}
	}
	a, err := schemas.AdaptToSource(read, schemas.SQLServer, cols, append(allow, "added_note"))
	require.NoError(t, err)
	require.Len(t, a.Changed, 1)
	require.Equal(t, widened+": int -> bigint", a.Changed[0])
	require.Equal(t, []string{"added_note"}, a.Added)

	missing := cloneTable(catalog)
	missing.Name = "no_such_table"
	_, err = p.Columns(ctx, w.db, schemas.SQLServer, missing)
	require.ErrorIs(t, err, schemas.ErrSourceChanged)
	require.ErrorContains(t, err, "dbo.no_such_table: ")
	require.ErrorContains(t, err, "GRANT SELECT ON [dbo].[no_such_table]")
}

func cloneTable(tb *schemas.Table) *schemas.Table {
	c := *tb
	c.Columns, c.Key = slices.Clone(tb.Columns), slices.Clone(tb.Key)
	return &c
}
