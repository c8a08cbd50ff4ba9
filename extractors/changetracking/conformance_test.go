package changetracking_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/changetracking/ctmodel"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestConformanceModel runs the conformance suite against the Change
// Tracking model: every case, the idle heartbeat (P3) and the expired
// position (P2) included.
func TestConformanceModel(t *testing.T) {
	extractortest.RunModel(t, func(t *testing.T) extractortest.Model {
		return &ctSuiteModel{t: t, db: ctmodel.New(), tables: map[string]*schemas.Table{}}
	}, extractortest.Subject{
		SeesDeletes: true,
		Heartbeat:   true,
		ErrPosition: changetracking.ErrPosition,
		Native:      watermarks.CT{},
		Expires:     true,
	})
}

// ctSuiteModel adapts ctmodel.DB to extractortest.Model.
type ctSuiteModel struct {
	t      *testing.T
	db     *ctmodel.DB
	tables map[string]*schemas.Table // as created, by name
}

func (s *ctSuiteModel) full(table *schemas.Table) *schemas.Table {
	full, ok := s.tables[table.QualifiedName()]
	require.True(s.t, ok, "no table %s", table.QualifiedName())
	return full
}

// raw orders row's values as the created table's columns.
func (s *ctSuiteModel) raw(table *schemas.Table, row map[string]any) []any {
	full := s.full(table)
	out := make([]any, len(full.Columns))
	for i, c := range full.Columns {
		out[i] = row[c.Name]
	}
	return out
}

func (s *ctSuiteModel) Create(t *testing.T, table *schemas.Table) {
	require.NoError(t, s.db.Create(table))
	s.tables[table.QualifiedName()] = table
}

func (s *ctSuiteModel) Begin(t *testing.T) extractortest.ModelTx {
	return ctSuiteTx{t: t, s: s, tx: s.db.Begin()}
}

func (s *ctSuiteModel) Bump(*testing.T) { s.db.Bump() }

func (s *ctSuiteModel) Rows(_ *testing.T, table *schemas.Table) []map[string]any {
	full := s.full(table)
	var out []map[string]any
	for _, raw := range s.db.Rows(full) {
		r := map[string]any{}
		for i, c := range full.Columns {
			r[c.Name] = raw[i]
		}
		out = append(out, r)
	}
	return out
}

func (s *ctSuiteModel) Expire(_ *testing.T, table *schemas.Table) {
	s.db.Bump()
	s.db.Cleanup(s.full(table), s.db.Version())
}

func (s *ctSuiteModel) New(_ *testing.T, table *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
	opts := changetracking.Options{Bounds: extractors.Bounds{Practices: slices.Clone(cfg.Practices), ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator}}
	return changetracking.New(s.db, s.db.Snapshotter(table, opts.Practices, opts.ChunkRows, opts.Allocator), table, opts)
}

type ctSuiteTx struct {
	t  *testing.T
	s  *ctSuiteModel
	tx *ctmodel.Tx
}

func (x ctSuiteTx) Insert(table *schemas.Table, row map[string]any) {
	x.tx.Insert(x.s.full(table), x.s.raw(table, row))
}

func (x ctSuiteTx) Update(table *schemas.Table, row map[string]any) {
	x.tx.Update(x.s.full(table), x.s.raw(table, row))
}

func (x ctSuiteTx) Delete(table *schemas.Table, row map[string]any) {
	x.tx.Delete(x.s.full(table), x.s.raw(table, row))
}

func (x ctSuiteTx) Commit() { require.NoError(x.t, x.tx.Commit()) }
