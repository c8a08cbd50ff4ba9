package cdc_test

import (
	"database/sql"
	"testing"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestConformanceTDS runs the conformance suite through go-mssqldb against
// SQL Server's CDC semantics (change tables, LSNs, __$command_id, cleanup)
// served over TDS.
func TestConformanceTDS(t *testing.T) {
	extractortest.RunTDS(t, extractortest.Subject{
		New: func(db *sql.DB, _ schemas.Dialect, table *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
			return cdc.New(db, table, cdc.Options{Bounds: extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator}})
		},
		SeesDeletes: true,
		Heartbeat:   true,
		ErrPosition: cdc.ErrPosition,
		Native:      watermarks.CDC{},
		Expires:     true,
	})
}
