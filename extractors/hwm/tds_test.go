package hwm_test

import (
	"testing"

	"github.com/ehrsync/ehrsync/extractors/extractortest"
)

// TestConformanceTDS runs the conformance suite through go-mssqldb against
// SQL Server's semantics served over TDS, for the rowversion (bounded by
// MIN_ACTIVE_ROWVERSION()) and the datetime modify_timestamp cursor.
func TestConformanceTDS(t *testing.T) {
	for _, s := range subjects {
		t.Run(s.name, func(t *testing.T) {
			extractortest.RunTDS(t, s.sub)
		})
	}
}
