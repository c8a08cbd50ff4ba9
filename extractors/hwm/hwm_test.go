package hwm_test

import (
	"database/sql"
	"testing"
	"time"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/extractortest"
	"github.com/ehrsync/ehrsync/extractors/hwm"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

var _ extractors.Extractor = (*hwm.Extractor)(nil)

func TestMain(m *testing.M) { pgtest.Main(m) }

// subjects: the row-version cursor (SQL Server rowversion, PostgreSQL
// transaction-id row version) and the modify_timestamp cursor.
var subjects = []struct {
	name string
	sub  extractortest.Subject
}{
	{"row version", extractortest.Subject{
		New: func(db *sql.DB, d schemas.Dialect, t *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
			return hwm.New(db, d, t, hwm.Options{Bounds: extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator}})
		},
		Heartbeat:   true,
		ErrPosition: hwm.ErrPosition,
	}},
	{"modify timestamp", extractortest.Subject{
		New: func(db *sql.DB, d schemas.Dialect, t *schemas.Table, cfg extractortest.Config) (extractors.Extractor, error) {
			return hwm.New(db, d, t, hwm.Options{
				Bounds:   extractors.Bounds{Practices: cfg.Practices, ChunkRows: cfg.ChunkRows, Allocator: cfg.Allocator},
				Cursor:   t.ModifiedAt,
				LookBack: time.Minute,
			})
		},
		ErrPosition: hwm.ErrPosition,
	}},
}

func TestConformancePostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("long (the whole conformance suite against PostgreSQL): runs without -short")
	}
	for _, s := range subjects {
		t.Run(s.name, func(t *testing.T) {
			extractortest.Run(t, extractortest.Postgres(), s.sub)
		})
	}
}
