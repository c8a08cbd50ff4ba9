package mssqlmodel

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestConformanceHelpers drives the model as extractortest.Model would:
// rows as go-mssqldb's driver values (GUIDs in wire order, decimals as text
// bytes), Bump, Rows and Expire.
func TestConformanceHelpers(t *testing.T) {
	m := New(Options{AutoHarvest: true})
	table := cdcTable()
	require.NoError(t, m.CreateTracked(table))
	at := time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)
	tx := m.Begin()
	require.NoError(t, tx.Insert("dbo.claim_lines", map[string]any{"id": GUIDWire(guid(1)), "line": int64(1),
		"practice_id": "0001", "amount": []byte("12.50"), "note": "n", "modify_timestamp": at}))
	require.NoError(t, tx.Commit())
	rows, err := m.Rows("dbo.claim_lines")
	require.NoError(t, err)
	require.Len(t, rows, 1)
	dr := DriverRow(table, rows[0])
	require.Equal(t, []byte("12.50"), dr["amount"])
	require.Equal(t, GUIDWire(guid(1)), dr["id"])
	require.Equal(t, "0001", dr["practice_id"])

	v0, _ := m.CTVersion()
	lsn0 := m.MaxLSN()
	m.Touch()
	v1, _ := m.CTVersion()
	require.Equal(t, v0+1, v1)
	require.Equal(t, 1, compareBinary(m.MaxLSN(), lsn0))

	require.NoError(t, m.Expire("dbo.claim_lines"))
	mv, ok := m.CTMinValid("dbo.claim_lines")
	require.True(t, ok)
	require.Equal(t, v1, mv)
	require.Equal(t, m.MaxLSN(), query(t, m, minLSNSQL, pNVarchar("dbo_claim_lines")).Rows[0][0])
}
