package extractortest

import (
	"database/sql"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
)

// RunTDS runs the conformance suite for sub against SQL Server's
// semantics held in a model (package mssqlmodel), served over TDS on
// loopback and read through ehrsync's source connection and go-mssqldb:
// sub.New builds the extractor on that connection pool, exactly as it does
// on a live SQL Server. Every table is created with CDC (capture instance
// <table>_capture, harvested at every commit) and Change Tracking on, and
// positions can expire (CDC cleanup, Change Tracking's minimum valid
// version), so every case of the suite runs.
func RunTDS(t *testing.T, sub Subject) {
	run(t, sub, func(t *testing.T) source {
		srv := mssqltest.Start(t, mssqlmodel.Options{AutoHarvest: true, SnapshotIsolation: true})
		srv.Model.EnableCDCDatabase()
		srv.Model.EnableCTDatabase()
		return newModelSource(t, &tdsModel{srv: srv, db: srv.Open(t), sub: sub})
	})
}

// tdsModel adapts a served mssqlmodel.Model to Model.
type tdsModel struct {
	srv *mssqltest.Server
	db  *sql.DB
	sub Subject
}

func tdsInstance(table *schemas.Table) string { return table.Name + "_capture" }

func (m *tdsModel) Create(t *testing.T, table *schemas.Table) {
	require.NoError(t, m.srv.Model.CreateTable(table))
	_, err := m.srv.Model.EnableCDC(mssqlmodel.CaptureInstance{Table: table.QualifiedName(), Name: tdsInstance(table)})
	require.NoError(t, err)
	require.NoError(t, m.srv.Model.EnableCT(table.QualifiedName()))
}

func (m *tdsModel) Begin(t *testing.T) ModelTx {
	return &tdsTx{t: t, tx: m.srv.Model.Begin()}
}

func (m *tdsModel) Bump(*testing.T) { m.srv.Model.Touch() }

func (m *tdsModel) Rows(t *testing.T, table *schemas.Table) []map[string]any {
	rows, err := m.srv.Model.Rows(table.QualifiedName())
	require.NoError(t, err)
	out := make([]map[string]any, len(rows))
	for i, r := range rows {
		out[i] = mssqlmodel.DriverRow(table, r)
	}
	return out
}

func (m *tdsModel) Expire(t *testing.T, table *schemas.Table) {
	m.srv.Model.Touch()
	require.NoError(t, m.srv.Model.CleanupCDC(tdsInstance(table), m.srv.Model.MaxLSN()))
	v, ok := m.srv.Model.CTVersion()
	require.True(t, ok, "change tracking is on")
	require.NoError(t, m.srv.Model.CleanupCT(table.QualifiedName(), v))
}

func (m *tdsModel) New(_ *testing.T, table *schemas.Table, cfg Config) (extractors.Extractor, error) {
	return m.sub.New(m.db, schemas.SQLServer, table, cfg)
}

// tdsTx writes the suite's rows (go-mssqldb's driver values) into a model
// transaction: decimals as text, and no rowversion value (the model
// assigns it, as SQL Server does).
type tdsTx struct {
	t  *testing.T
	tx *mssqlmodel.Tx
}

func modelValues(table *schemas.Table, row map[string]any) map[string]any {
	out := make(map[string]any, len(row))
	for name, v := range row {
		c, ok := table.Column(name)
		if ok && c.Type.Name == "rowversion" {
			continue
		}
		if b, isBytes := v.([]byte); isBytes && ok {
			switch c.Type.Name {
			case "decimal", "numeric", "money", "smallmoney":
				v = string(b)
			}
		}
		out[name] = v
	}
	return out
}

func (x *tdsTx) Insert(table *schemas.Table, row map[string]any) {
	require.NoError(x.t, x.tx.Insert(table.QualifiedName(), modelValues(table, row)))
}

func (x *tdsTx) Update(table *schemas.Table, row map[string]any) {
	require.NoError(x.t, x.tx.Update(table.QualifiedName(), modelValues(table, row)))
}

func (x *tdsTx) Delete(table *schemas.Table, row map[string]any) {
	require.NoError(x.t, x.tx.Delete(table.QualifiedName(), modelValues(table, row)))
}

func (x *tdsTx) Commit() { require.NoError(x.t, x.tx.Commit()) }
