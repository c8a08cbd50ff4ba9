package snapshot_test

import (
	"testing"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
)

// TestConformanceTDS runs the conformance suite through go-mssqldb against
// SQL Server's semantics (GUID order, CP1252 collation, datetime ticks)
// served over TDS.
func TestConformanceTDS(t *testing.T) {
	extractortest.RunTDS(t, subject)
}
