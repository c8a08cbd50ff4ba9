package cdc_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/cdc/cdcmodel"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestConformanceModel runs the conformance suite against the CDC model:
// every case, the idle heartbeat (P3), the transaction spanning a chunk
// boundary (P4) and the expired position (P1) included. The open
// transaction is the model's: invisible until it commits.
func TestConformanceModel(t *testing.T) {
	extractortest.RunModel(t, func(*testing.T) extractortest.Model {
		return &cdcSuiteModel{m: cdcmodel.New()}
	}, extractortest.Subject{
		SeesDeletes: true,
		Heartbeat:   true,
		ErrPosition: cdc.ErrPosition,
		Native:      watermarks.CDC{},
		Expires:     true,
	})
}

// cdcSuiteModel adapts cdcmodel.Model to extractortest.Model: each table
// gets one capture instance, not named <schema>_<table> (P7).
type cdcSuiteModel struct{ m *cdcmodel.Model }

func instanceOf(table *schemas.Table) string { return table.Name + "_capture" }

func (s *cdcSuiteModel) Create(_ *testing.T, table *schemas.Table) {
	def := cdcmodel.TableDef{Schema: table.Schema, Name: table.Name, Key: table.Key}
	for _, c := range table.Columns {
		def.Columns = append(def.Columns, c.Name)
	}
	s.m.CreateTable(def)
	s.m.EnableCDC(table.Schema, table.Name, instanceOf(table))
}

func (s *cdcSuiteModel) Begin(*testing.T) extractortest.ModelTx { return cdcSuiteTx{s.m.Begin()} }

func (s *cdcSuiteModel) Bump(*testing.T) { s.m.Touch() }

func (s *cdcSuiteModel) Rows(_ *testing.T, table *schemas.Table) []map[string]any {
	var out []map[string]any
	for _, r := range s.m.Rows(table.Schema, table.Name) {
		out = append(out, r)
	}
	return out
}

func (s *cdcSuiteModel) Expire(t *testing.T, table *schemas.Table) {
	s.m.Touch()
	max, err := s.m.MaxLSN(context.Background())
	require.NoError(t, err)
	s.m.Cleanup(instanceOf(table), max)
}

func (s *cdcSuiteModel) New(_ *testing.T, table *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
	opts := cdc.Options{Bounds: extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator}}
	snap, err := s.m.Snapshotter(table, opts.Practices, opts.ChunkRows, cfg.Allocator)
	if err != nil {
		return nil, err
	}
	return cdc.NewFrom(s.m, snap, table, opts)
}

type cdcSuiteTx struct{ tx *cdcmodel.Tx }

func (x cdcSuiteTx) Insert(table *schemas.Table, row map[string]any) {
	x.tx.Insert(table.Schema, table.Name, row)
}

func (x cdcSuiteTx) Update(table *schemas.Table, row map[string]any) {
	x.tx.Update(table.Schema, table.Name, row)
}

func (x cdcSuiteTx) Delete(table *schemas.Table, row map[string]any) {
	x.tx.Delete(table.Schema, table.Name, row)
}

func (x cdcSuiteTx) Commit() { x.tx.Commit() }
