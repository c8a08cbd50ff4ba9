package mssqltest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/schemas"
)

// CreateSynth creates the synthetic NextGen source (package synth) in m as
// synth.SQLServerStatements does on a SQL Server: the catalog's tables, the
// synth_state table in the schema of the first, snapshot isolation on
// (unless opts.NoSnapshotIsolation), Change Tracking on for the database and
// opts.CTTables, CDC on for the database and a capture instance
// "<schema>_<table>" of every column of each of opts.CDCTables. The
// defaults are synth.SQLServerOptions's: CDC on claims and
// reason_code_links, Change Tracking on charges, transactions, trans_detail
// and reason_code_links. Change Tracking's retention is not modelled
// (cleanup happens only when a test calls CleanupCT or Expire).
func CreateSynth(m *mssqlmodel.Model, cat *schemas.Catalog, opts synth.SQLServerOptions) error {
	if opts.CDCTables == nil {
		opts.CDCTables = []string{"claims", "reason_code_links"}
	}
	if opts.CTTables == nil {
		opts.CTTables = []string{"charges", "transactions", "trans_detail", "reason_code_links"}
	}
	tables := cat.Tables()
	if len(tables) == 0 {
		return fmt.Errorf("create synthetic source: the catalog has no tables")
	}
	for _, t := range tables {
		if t.Dialect != schemas.SQLServer {
			return fmt.Errorf("table %s is in dialect %s, not sqlserver", t.QualifiedName(), t.Dialect)
		}
		if err := m.CreateTable(t); err != nil {
			return fmt.Errorf("create %s: %w", t.QualifiedName(), err)
		}
	}
	state, err := stateTable(tables[0].Schema)
	if err != nil {
		return err
	}
	if err := m.CreateTable(state); err != nil {
		return fmt.Errorf("create %s: %w", state.QualifiedName(), err)
	}
	if !opts.NoSnapshotIsolation {
		m.SetSnapshotIsolation(true)
	}
	find := func(name string) (*schemas.Table, error) {
		t, ok := cat.Table(name)
		if !ok {
			return nil, fmt.Errorf("table %s is not in the catalog", name)
		}
		return t, nil
	}
	if len(opts.CTTables) > 0 {
		m.EnableCTDatabase()
		for _, name := range opts.CTTables {
			t, err := find(name)
			if err != nil {
				return err
			}
			if err := m.EnableCT(t.QualifiedName()); err != nil {
				return fmt.Errorf("enable change tracking on %s: %w", t.QualifiedName(), err)
			}
		}
	}
	if len(opts.CDCTables) > 0 {
		m.EnableCDCDatabase()
		for _, name := range opts.CDCTables {
			t, err := find(name)
			if err != nil {
				return err
			}
			if _, err := m.EnableCDC(mssqlmodel.CaptureInstance{Table: t.QualifiedName(), Name: t.Schema + "_" + t.Name}); err != nil {
				return fmt.Errorf("enable CDC on %s: %w", t.QualifiedName(), err)
			}
		}
	}
	return nil
}

// stateTable is synth_state as synth.SQLServerStatements creates it.
func stateTable(schema string) (*schemas.Table, error) {
	t := &schemas.Table{Schema: schema, Name: synth.StateTable, Dialect: schemas.SQLServer, Key: []string{"id"}}
	for _, c := range []struct {
		name, typ string
	}{{"id", "smallint"}, {"state", "nvarchar(max)"}, {"updated_at", "datetime2(3)"}} {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", synth.StateTable, c.name, err)
		}
		t.Columns = append(t.Columns, schemas.Column{Name: c.name, Type: typ})
	}
	return t, nil
}

// SynthWriter is a synth.Writer into a model holding the synthetic source
// (CreateSynth): each batch is one model transaction, its operations in
// order and its progress upserted into synth_state, so a failed batch
// leaves nothing behind and the simulation's state is where a SQL Server
// source keeps it. Values are converted to handler.go's representation:
// uniqueidentifier as 16 bytes in wire order, decimals as text, date-times
// as their UTC wall clock, integers as int64; rowversion columns are left
// to the model.
//
// An update or delete must find its row. SQL Server's UPDATE and DELETE
// (what synth.SQLServerWriter sends) would silently affect none, but the
// generator never means to write a row that is not there, so the writer
// fails the batch instead: a generator bug shows here rather than as data
// that differs from the plan.
type SynthWriter struct {
	m     *mssqlmodel.Model
	state string // synth_state's qualified name
	mu    sync.Mutex
}

// NewSynthWriter returns a writer into m whose synth_state table is in
// schema ("dbo").
func NewSynthWriter(m *mssqlmodel.Model, schema string) *SynthWriter {
	return &SynthWriter{m: m, state: schema + "." + synth.StateTable}
}

// State reads the progress from synth_state.
func (w *SynthWriter) State(context.Context) (synth.State, bool, error) {
	rows, err := w.m.Rows(w.state)
	if err != nil {
		return synth.State{}, false, fmt.Errorf("read %s: %w", w.state, err)
	}
	if len(rows) == 0 {
		return synth.State{}, false, nil
	}
	text, ok := rows[0]["state"].(string)
	if !ok {
		return synth.State{}, false, fmt.Errorf("read %s: state is %T, not text", w.state, rows[0]["state"])
	}
	var st synth.State
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		return synth.State{}, false, fmt.Errorf("decode %s: %w", w.state, err)
	}
	return st, true, nil
}

// Apply writes b in one model transaction.
func (w *SynthWriter) Apply(ctx context.Context, b *synth.Batch) (err error) {
	if err := ctx.Err(); err != nil {
		return err
	}
	state, err := json.Marshal(b.Progress)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	tx := w.m.Begin()
	defer func() {
		if err != nil {
			tx.Rollback()
		}
	}()
	for i := range b.Ops {
		if err := applyOp(tx, &b.Ops[i]); err != nil {
			return err
		}
	}
	// Progress, as SQLServerBatch's UPDATE ... IF @@ROWCOUNT = 0 INSERT.
	_, had, err := w.State(ctx)
	if err != nil {
		return err
	}
	row := map[string]any{"id": int64(1), "state": string(state), "updated_at": w.m.Now().UTC()}
	if had {
		err = tx.Update(w.state, row)
	} else {
		err = tx.Insert(w.state, row)
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", w.state, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func applyOp(tx *mssqlmodel.Tx, op *synth.Op) error {
	t := op.Table
	name := t.QualifiedName()
	switch op.Kind {
	case schemas.OpInsert:
		for _, r := range op.Rows {
			if len(r) != len(op.Columns) {
				return fmt.Errorf("insert into %s: %d values for %d columns", name, len(r), len(op.Columns))
			}
			row := make(map[string]any, len(r))
			for j, c := range op.Columns {
				row[c] = ModelValue(r[j])
			}
			if err := tx.Insert(name, row); err != nil {
				return fmt.Errorf("insert into %s: %w", name, err)
			}
		}
	case schemas.OpUpdate, schemas.OpDelete:
		cols := append(append([]string(nil), op.Columns...), t.Key...)
		for _, r := range op.Rows {
			if len(r) != len(cols) {
				return fmt.Errorf("%s %s: %d values for %d columns", op.Kind, name, len(r), len(cols))
			}
			row := make(map[string]any, len(r))
			for j, c := range cols {
				row[c] = ModelValue(r[j])
			}
			var err error
			if op.Kind == schemas.OpUpdate {
				err = tx.Update(name, row)
			} else {
				err = tx.Delete(name, row)
			}
			if err != nil {
				return fmt.Errorf("%s %s: %w", op.Kind, name, err)
			}
		}
	default:
		return fmt.Errorf("op %s on %s: unknown kind", op.Kind, name)
	}
	return nil
}

// ModelValue converts a synth batch value to handler.go's representation.
func ModelValue(v any) any {
	switch v := v.(type) {
	case synth.UUID:
		return mssqlmodel.GUIDWire(uuid.UUID(v))
	case synth.Amount:
		return v.String()
	case time.Time:
		// The wall clock as SQL Server stores it: zone-less.
		return time.Date(v.Year(), v.Month(), v.Day(), v.Hour(), v.Minute(), v.Second(), v.Nanosecond(), time.UTC)
	case int:
		return int64(v)
	case int8:
		return int64(v)
	case int16:
		return int64(v)
	case int32:
		return int64(v)
	case uint8:
		return int64(v)
	case uint16:
		return int64(v)
	case uint32:
		return int64(v)
	}
	return v
}

var _ synth.Writer = (*SynthWriter)(nil)
