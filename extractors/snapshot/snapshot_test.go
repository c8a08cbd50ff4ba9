package snapshot_test

import (
	"database/sql"
	"testing"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

var _ extractors.Extractor = (*snapshot.Extractor)(nil)

func TestMain(m *testing.M) { pgtest.Main(m) }

var subject = extractortest.Subject{
	New: func(db *sql.DB, d schemas.Dialect, t *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
		return snapshot.New(db, d, t, snapshot.Options{
			Bounds: extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator},
		})
	},
	Snapshot:    true,
	ErrPosition: snapshot.ErrPosition,
}

func TestConformancePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("long (the whole conformance suite against PostgreSQL): runs without -short")
	}
	extractortest.Run(t, extractortest.Postgres(), subject)
}
