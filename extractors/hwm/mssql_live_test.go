package hwm_test

import (
	"os"
	"testing"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
)

// TestConformanceSQLServer runs the conformance suite against a live SQL
// Server (a test database: the suite creates and drops its own tables), for
// the rowversion and the modify_timestamp cursor.
func TestConformanceSQLServer(t *testing.T) {
	dsn := os.Getenv(extractortest.EnvMSSQLDSN)
	if dsn == "" {
		t.Skip(extractortest.EnvMSSQLDSN + " is not set: no SQL Server to run against")
	}
	src := extractortest.SQLServer(t, dsn)
	for _, s := range subjects {
		t.Run(s.name, func(t *testing.T) {
			extractortest.Run(t, src, s.sub)
		})
	}
}
