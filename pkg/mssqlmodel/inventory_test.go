package mssqlmodel

import (
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// The statements of pkg/check (check.go, tables.go) and
// extractors/extractortest/sources.go.
const (
	checkExistsSQL = "SELECT CAST(CASE WHEN OBJECT_ID(@p1, 'U') IS NULL THEN 0 ELSE 1 END AS bit)"
	checkKeySQL    = `SELECT c.name FROM sys.indexes i
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
WHERE i.object_id = OBJECT_ID(@p1) AND i.is_primary_key = 1 ORDER BY ic.key_ordinal`
	checkStatusSQL = `SELECT t.is_tracked_by_cdc,
CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.change_tracking_tables ct WHERE ct.object_id = t.object_id) THEN 1 ELSE 0 END AS bit)
FROM sys.tables t WHERE t.object_id = OBJECT_ID(@p1)`
	checkSelectSQL  = "SELECT CAST(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'SELECT') AS bit)"
	checkViewCTSQL  = "SELECT CAST(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'VIEW CHANGE TRACKING') AS bit)"
	checkCDCSQL     = "SELECT CAST(HAS_PERMS_BY_NAME('cdc', 'SCHEMA', 'SELECT') AS bit)"
	checkRoleSQL    = "SELECT CAST(IS_ROLEMEMBER(@p1) AS bit)"
	checkVersionSQL = "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), CAST(SERVERPROPERTY('Edition') AS nvarchar(128))"
	rcsiSQL         = "SELECT is_read_committed_snapshot_on FROM sys.databases WHERE database_id = DB_ID()"
	estimateSQL     = "SELECT SUM(p.rows) FROM sys.partitions AS p WHERE p.object_id = OBJECT_ID(@p1) AND p.index_id < 2"
	chunkCols       = "[claim_id], [line_id], [practice_id], [paid_amt], [service_date], [modify_timestamp], [row_timestamp]"
)

type example struct {
	sql    string
	params []tdstest.Param
	check  func(t *testing.T, res []tdstest.Result)
}

// fullModel has a table with rows, CDC (a gated capture instance, the agent
// harvesting) and Change Tracking on.
func fullModel(t *testing.T) *Model {
	t.Helper()
	m := newModel(t, Options{AutoHarvest: true, SnapshotIsolation: true})
	m.EnableCDCDatabase()
	_, err := m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v1", Role: "cdc_reader"})
	require.NoError(t, err)
	m.EnableCTDatabase()
	require.NoError(t, m.EnableCT("dbo.claim_lines"))
	for i := range 4 {
		insert(t, m, "dbo.claim_lines", map[string]any{"claim_id": guid(i), "line_id": guid(i), "practice_id": "0001",
			"paid_amt": "1.00", "modify_timestamp": time.Date(2026, 1, 5, 8, i, 0, 0, time.UTC)})
	}
	return m
}

func rv(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func inventoryExamples() map[string][]example {
	one := func(want any) func(t *testing.T, res []tdstest.Result) {
		return func(t *testing.T, res []tdstest.Result) {
			t.Helper()
			require.Len(t, res[len(res)-1].Rows, 1)
			require.Equal(t, want, res[len(res)-1].Rows[0][0])
		}
	}
	rows := func(n int) func(t *testing.T, res []tdstest.Result) {
		return func(t *testing.T, res []tdstest.Result) {
			t.Helper()
			require.Len(t, res[len(res)-1].Rows, n)
		}
	}
	cdcSQL, cdcParams := changesSQL("claims_v1", []string{"claim_id", "line_id", "practice_id", "paid_amt"}, 10, LSN(1<<40), nil, "0001")
	return map[string][]example{
		"ping":                       {{sql: "SELECT 1", check: one(int64(1))}, {sql: "select 1;", check: one(int64(1))}},
		"rowversion bound":           {{sql: "SELECT MIN_ACTIVE_ROWVERSION()", check: one(rv(2005))}},
		"CT current version":         {{sql: ctCurrentSQL, check: one(int64(4))}},
		"CT minimum valid version":   {{sql: ctMinValidSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: one(int64(0))}},
		"CDC minimum LSN":            {{sql: minLSNSQL, params: []tdstest.Param{pNVarchar("claims_v1")}, check: one(LSN(100))}},
		"CDC maximum LSN (function)": {{sql: "SELECT sys.fn_cdc_get_max_lsn()", check: rows(1)}},
		"CDC maximum LSN":            {{sql: maxLSNSQL, check: rows(1)}},
		"CDC capture instances":      {{sql: instancesSQL, params: []tdstest.Param{pNVarchar("dbo"), pNVarchar("claim_lines")}, check: rows(7)}},
		"CDC gating role":            {{sql: gatingRoleSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: one("cdc_reader")}},
		"CDC readable probe":         {{sql: "SELECT TOP (0) * FROM [cdc].[claims_v1_CT]", check: rows(0)}},
		"CDC changes chunk": {
			{sql: cdcSQL, params: cdcParams, check: rows(4)},
			// Without __$command_id, for change tables that lack it (planned).
			{sql: strings.NewReplacer("[__$command_id], ", "", ", [__$command_id]", "").Replace(cdcSQL), params: cdcParams, check: rows(4)},
		},
		"CDC capture agent health": {
			{sql: agentSQL, check: rows(1)},
			{sql: checkAgentSQL, check: rows(1)},
			{sql: "SELECT DATEDIFF(second, (SELECT MAX(end_time) FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0), GETDATE()), (SELECT COUNT(*) FROM sys.dm_cdc_errors)",
				check: one(int64(0))},
		},
		"CDC __$command_id probe": {{sql: "SELECT COL_LENGTH(@p1, @p2)",
			params: []tdstest.Param{pNVarchar("[cdc].[claims_v1_CT]"), pNVarchar("__$command_id")}, check: one(int64(4))}},
		"CDC computed columns": {{sql: "SELECT c.name FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(@p1) AND c.is_computed = 1 ORDER BY c.column_id",
			params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: rows(0)}},
		"source columns": {{sql: "SELECT c.name, c.system_type_id, c.max_length, c.precision, c.scale, c.is_nullable\nFROM sys.columns c WHERE c.object_id = OBJECT_ID(@p1) ORDER BY c.column_id",
			params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: func(t *testing.T, res []tdstest.Result) {
				got := res[len(res)-1].Rows
				require.Len(t, got, 7)
				require.Equal(t, []any{"practice_id", int64(175), int64(4), int64(0), int64(0), false}, got[2], "char(4)")
				require.Equal(t, []any{"paid_amt", int64(108), int64(9), int64(19), int64(2), true}, got[3], "numeric(19,2)")
				require.Equal(t, []any{"row_timestamp", int64(189), int64(8), int64(0), int64(0), false}, got[6], "timestamp is rowversion")
			}}},
		"CT changes chunk": {{sql: ctChangesSQL + ctOrderSQL,
			params: []tdstest.Param{pBigint(10), pBigint(0), pVarChar("0001"), pBigint(4)}, check: rows(4)}},
		"CT probe":                      {{sql: ctProbeSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: rows(1)}},
		"snapshot isolation state":      {{sql: ctSnapshotSQL, check: one(true)}},
		"read committed snapshot state": {{sql: rcsiSQL, check: one(true)}},
		"row estimate": {
			{sql: estimateSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: one(int64(4))},
			{sql: estimateSQL, params: []tdstest.Param{pNVarchar("[dbo].[nope]")}, check: one(nil)},
		},
		"check: primary key": {{sql: checkKeySQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")},
			check: func(t *testing.T, res []tdstest.Result) {
				require.Equal(t, [][]any{{"claim_id"}, {"line_id"}}, res[0].Rows)
			}}},
		"check: CDC and CT status": {{sql: checkStatusSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")},
			check: func(t *testing.T, res []tdstest.Result) { require.Equal(t, [][]any{{true, true}}, res[0].Rows) }}},
		"check: table exists": {
			{sql: checkExistsSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: one(true)},
			{sql: checkExistsSQL, params: []tdstest.Param{pNVarchar("[dbo].[nope]")}, check: one(false)},
		},
		"check: permission": {
			{sql: checkSelectSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: one(true)},
			{sql: checkViewCTSQL, params: []tdstest.Param{pNVarchar("[dbo].[claim_lines]")}, check: one(true)},
			{sql: checkCDCSQL, check: one(true)},
		},
		"check: role membership": {{sql: checkRoleSQL, params: []tdstest.Param{pNVarchar("cdc_reader")}, check: one(false)}},
		"check: database name":   {{sql: "SELECT DB_NAME()", check: one("NGProd")}},
		"check: server version":  {{sql: checkVersionSQL, check: one("16.0.4135.4")}, {sql: "SELECT @@VERSION", check: rows(1)}},
		"cursor maximum": {{sql: "SELECT MAX([modify_timestamp]) FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p1)",
			params: []tdstest.Param{pVarChar("0001")}, check: one(time.Date(2026, 1, 5, 8, 3, 0, 0, time.UTC))}},
		"chunk read": {
			{sql: "SELECT TOP (@p1) " + chunkCols + " FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) ORDER BY [claim_id], [line_id]",
				params: []tdstest.Param{pBigint(2), pVarChar("0001")}, check: rows(2)},
			{sql: "SELECT TOP (@p1) " + chunkCols + " FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) AND [row_timestamp] > @p3 AND [row_timestamp] < @p4 ORDER BY [row_timestamp]",
				params: []tdstest.Param{pBigint(10), pVarChar("0001"), pBytes(rv(2001)), pBytes(rv(2005))}, check: rows(3)},
			// Rowversion paging by (row version, key), the planned fix.
			{sql: "SELECT TOP (@p1) " + chunkCols + " FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) AND (([row_timestamp] > @p3) OR ([row_timestamp] = @p3 AND [claim_id] > @p4) OR ([row_timestamp] = @p3 AND [claim_id] = @p4 AND [line_id] > @p5)) AND [row_timestamp] < @p6 ORDER BY [row_timestamp], [claim_id], [line_id]",
				params: []tdstest.Param{pBigint(10), pVarChar("0001"), pBytes(rv(2002)), pGUID(guid(1)), pGUID(guid(1)), pBytes(rv(2005))}, check: rows(2)},
			{sql: "SELECT TOP (@p1) " + chunkCols + " FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) AND [modify_timestamp] IS NOT NULL AND (([modify_timestamp] > @p3) OR ([modify_timestamp] = @p3 AND [claim_id] > @p4) OR ([modify_timestamp] = @p3 AND [claim_id] = @p4 AND [line_id] > @p5)) ORDER BY [modify_timestamp], [claim_id], [line_id]",
				params: []tdstest.Param{pBigint(10), pVarChar("0001"), pDateTime1(time.Date(2026, 1, 5, 8, 1, 0, 0, time.UTC)), pGUID(guid(1)), pGUID(guid(1))}, check: rows(2)},
			// A varchar key bound as nvarchar and cast (the planned fix).
			{sql: "SELECT TOP (@p1) [practice_id] FROM [dbo].[claim_lines] WHERE [practice_id] > CAST(@p2 AS char(4)) ORDER BY [practice_id]",
				params: []tdstest.Param{pBigint(10), pNVarchar("0000")}, check: rows(4)},
		},
	}
}

// TestInventory lists the statement shapes the model answers and feeds each
// a realistic request, which must be recognised as that shape and
// answered.
func TestInventory(t *testing.T) {
	examples := inventoryExamples()
	for _, s := range Inventory {
		t.Logf("%-32s %s\n%34s answered from: %s", s.Name, s.From, "", s.Reads)
	}
	var names []string
	for _, s := range Inventory {
		require.NotContains(t, names, s.Name, "shape names are unique")
		names = append(names, s.Name)
		require.NotEmpty(t, examples[s.Name], "shape %q has no example request in this test", s.Name)
	}
	for name := range examples {
		require.Contains(t, names, name, "an example for a shape the inventory does not have")
	}
	for _, s := range Inventory {
		for i, ex := range examples[s.Name] {
			t.Run(s.Name+"/"+strings.Repeat("+", i), func(t *testing.T) {
				m := fullModel(t)
				m.ResetStatements()
				res, err := m.Handle(context.Background(), request("ehrsync", ex.sql, slices.Clone(ex.params)...))
				st := m.Statements()
				require.Len(t, st, 1)
				require.Equal(t, s.Name, st[0].Shape, "recognised as")
				require.NoError(t, err)
				if ex.check != nil {
					ex.check(t, res)
				}
			})
		}
	}
}

func TestCheckProbesForAReader(t *testing.T) {
	m := fullModel(t)
	m.AddLogin("reader", "db_datareader")
	q := func(sql string, p ...tdstest.Param) [][]any { return queryAs(t, m, "reader", sql, p...).Rows }
	name := pNVarchar("[dbo].[claim_lines]")
	require.Equal(t, [][]any{{true}}, q(checkExistsSQL, name))
	require.Equal(t, [][]any{{true}}, q(checkSelectSQL, name))
	require.Equal(t, [][]any{{false}}, q(checkViewCTSQL, name))
	require.Equal(t, [][]any{{false}}, q(checkRoleSQL, pNVarchar("cdc_reader")))
	require.Equal(t, [][]any{{nil}}, q(checkRoleSQL, pNVarchar("no_such_role")))
	require.Equal(t, [][]any{{nil}}, q(checkSelectSQL, pNVarchar("[dbo].[nope]")), "HAS_PERMS_BY_NAME is NULL for a missing object")

	m.AddLogin("stranger")
	require.Equal(t, [][]any{{false}}, queryAs(t, m, "stranger", checkExistsSQL, name).Rows, "a table the login cannot see does not exist for it")
	require.Empty(t, queryAs(t, m, "stranger", checkKeySQL, name).Rows)
	require.Empty(t, queryAs(t, m, "stranger", checkStatusSQL, name).Rows)
	sqlErr(t, m, "stranger", 262, checkAgentSQL)
}
