package cdc_test

import (
	"context"
	"database/sql/driver"
	"strings"
	"testing"
	"time"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/internal/fakesql"
)

// TestP6CheckAgentSQLServer: the SQL Server agent probe reports a stale
// capture job (no log scan within the allowed lag), a healthy one, and a
// login without VIEW DATABASE STATE as unknown with the GRANT, not as an
// error or as healthy.
func TestP6CheckAgentSQLServer(t *testing.T) {
	tests := []struct {
		name      string
		scan      any
		err       error
		stale     bool
		reasonHas string
	}{
		// The server computes the age (end_time is its local time, D6).
		{name: "recent scan", scan: int64(10)},
		{name: "no scan for an hour", scan: int64(3600), stale: true, reasonHas: "no log scan for 1h0m0s"},
		// No sessions (a restart, an AG secondary) is unknown, not stopped.
		{name: "no scan on record", scan: nil, reasonHas: "no finished log scan on record"},
		{name: "no VIEW DATABASE STATE", err: mssql.Error{Number: 300, Message: "VIEW DATABASE STATE permission denied"}, reasonHas: "GRANT VIEW DATABASE STATE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := fakesql.Open(func(query string, _ []any) (fakesql.Result, error) {
				switch {
				case strings.HasPrefix(query, "SELECT sys.fn_cdc_get_max_lsn()"):
					return fakesql.Result{Columns: []string{""}, Rows: [][]driver.Value{{lsnBytes(150)}}}, nil
				case tc.err != nil:
					return fakesql.Result{}, tc.err
				}
				return fakesql.Result{Columns: []string{"", ""}, Rows: [][]driver.Value{{tc.scan, int64(0)}}}, nil
			})
			defer db.Close()
			h, err := cdc.CheckAgent(context.Background(), &cdc.SQLServer{DB: db}, time.Minute)
			require.NoError(t, err)
			require.Equal(t, tc.stale, h.Stale, h.Reason)
			if tc.reasonHas == "" {
				require.Empty(t, h.Reason)
			} else {
				require.Contains(t, h.Reason, tc.reasonHas)
			}
		})
	}
}

// TestP17CheckReadableNamesTheGrant (P17): a change table the login may not
// read (a gating role) is a *cdc.PermissionError naming the fix, not "no
// changes".
func TestP17CheckReadableNamesTheGrant(t *testing.T) {
	db, rec := fakesql.Open(func(string, []any) (fakesql.Result, error) {
		return fakesql.Result{}, mssql.Error{Number: 229, Message: "The SELECT permission was denied"}
	})
	defer db.Close()
	err := (&cdc.SQLServer{DB: db}).CheckReadable(context.Background(), "claims_v1")
	var pe *cdc.PermissionError
	require.ErrorAs(t, err, &pe)
	require.Contains(t, err.Error(), "GRANT SELECT ON SCHEMA::cdc")
	require.Equal(t, "SELECT TOP (0) * FROM [cdc].[claims_v1_CT]", rec.Calls()[0].Query)

	ok, _ := fakesql.Open(func(string, []any) (fakesql.Result, error) { return fakesql.Result{Columns: []string{"x"}}, nil })
	defer ok.Close()
	require.NoError(t, (&cdc.SQLServer{DB: ok}).CheckReadable(context.Background(), "claims_v1"))
}
