package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSimulateSQLServerOptions (D15): simulate stages the synthetic source
// on any SQL Server: without CDC (an edition or a login without it),
// without Change Tracking, without changing snapshot isolation.
func TestSimulateSQLServerOptions(t *testing.T) {
	all, _, err := runCmd(t, "simulate", "--dialect", "sqlserver", "--print-ddl")
	require.NoError(t, err)
	require.Contains(t, all, "sp_cdc_enable_table")
	require.Contains(t, all, "ENABLE CHANGE_TRACKING")
	require.Contains(t, all, "ALLOW_SNAPSHOT_ISOLATION ON")
	require.Contains(t, all, "CHANGE_RETENTION = 3 DAYS")

	bare, _, err := runCmd(t, "simulate", "--dialect", "sqlserver", "--print-ddl",
		"--cdc-tables", "none", "--ct-tables", "none", "--no-snapshot-isolation")
	require.NoError(t, err)
	require.Contains(t, bare, "CREATE TABLE [dbo].[claims]")
	for _, s := range []string{"sp_cdc_enable", "CHANGE_TRACKING", "ALLOW_SNAPSHOT_ISOLATION"} {
		require.NotContains(t, bare, s)
	}

	some, _, err := runCmd(t, "simulate", "--dialect", "sqlserver", "--print-ddl",
		"--cdc-tables", "dbo.trans_detail", "--ct-tables", "dbo.claims", "--ct-retention-days", "7")
	require.NoError(t, err)
	require.Equal(t, 1, strings.Count(some, "EXEC sys.sp_cdc_enable_table"))
	require.Contains(t, some, "@source_name = N'trans_detail'")
	require.Equal(t, 1, strings.Count(some, "ENABLE CHANGE_TRACKING"))
	require.Contains(t, some, "CHANGE_RETENTION = 7 DAYS")

	_, _, err = runCmd(t, "simulate", "--dialect", "sqlserver", "--print-ddl", "--cdc-tables", "dbo.nope")
	require.ErrorContains(t, err, "dbo.nope")
	_, _, err = runCmd(t, "simulate", "--dialect", "postgres", "--dsn", "postgres://x", "--ct-tables", "none")
	require.ErrorContains(t, err, "--dialect sqlserver only")
}
