package snapshot_test

import (
	"os"
	"testing"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
)

// TestConformanceSQLServer runs the conformance suite against a live SQL
// Server (a test database: the suite creates and drops its own tables).
func TestConformanceSQLServer(t *testing.T) {
	dsn := os.Getenv(extractortest.EnvMSSQLDSN)
	if dsn == "" {
		t.Skip(extractortest.EnvMSSQLDSN + " is not set: no SQL Server to run against")
	}
	extractortest.Run(t, extractortest.SQLServer(t, dsn), subject)
}
