package changetracking_test

import (
	"database/sql"
	"testing"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestConformanceTDS runs the conformance suite through go-mssqldb against
// SQL Server's Change Tracking semantics (CHANGETABLE, versions, minimum
// valid versions, SNAPSHOT transactions) served over TDS.
func TestConformanceTDS(t *testing.T) {
	extractortest.RunTDS(t, extractortest.Subject{
		New: func(db *sql.DB, _ schemas.Dialect, tb *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
			return changetracking.NewSQLServer(db, tb, changetracking.Options{
				Bounds: extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator},
			})
		},
		SeesDeletes: true,
		Heartbeat:   true,
		Native:      watermarks.CT{},
		Expires:     true,
	})
}
