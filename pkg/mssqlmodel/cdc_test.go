package mssqlmodel

import (
	"context"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// The CDC statements, as extractors/cdc/sqlserver.go writes them.
const (
	instancesSQL = `SELECT ct.capture_instance, ct.start_lsn, cc.column_name
FROM cdc.change_tables AS ct
JOIN sys.tables AS t ON t.object_id = ct.source_object_id
JOIN sys.schemas AS s ON s.schema_id = t.schema_id
JOIN cdc.captured_columns AS cc ON cc.object_id = ct.object_id
WHERE s.name = @p1 AND t.name = @p2
ORDER BY ct.start_lsn, ct.capture_instance, cc.column_ordinal`
	minLSNSQL = `SELECT sys.fn_cdc_get_min_lsn(@p1)`
	maxLSNSQL = `SELECT MAX(start_lsn) FROM cdc.lsn_time_mapping`
	agentSQL  = `SELECT
  (SELECT MAX(end_time) FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0),
  (SELECT COUNT(*) FROM sys.dm_cdc_errors)`
	checkAgentSQL = `SELECT (SELECT MAX(end_time) FROM sys.dm_cdc_log_scan_sessions),
(SELECT COUNT(*) FROM sys.dm_cdc_errors WHERE entry_time > DATEADD(hour, -1, GETDATE()))`
	gatingRoleSQL = "SELECT TOP 1 role_name FROM cdc.change_tables WHERE source_object_id = OBJECT_ID(@p1) ORDER BY create_date DESC"
)

var cdcColumns = []string{"id", "line", "practice_id", "amount", "note", "modify_timestamp"}

// changesSQL is extractors/cdc changesSQL: after is nil for the first
// chunk; cmd/seqval/op are set for a resume inside a transaction.
type resume struct {
	lsn    []byte
	inTx   bool
	cmd    int64
	seqval []byte
	op     int64
}

func changesSQL(instance string, cols []string, limit int64, to []byte, after *resume, practices ...string) (string, []tdstest.Param) {
	var b strings.Builder
	params := []tdstest.Param{pBigint(limit), pBytes(to)}
	b.WriteString("DECLARE @n bigint = @p1, @to binary(10) = @p2")
	if after != nil {
		params = append(params, pBytes(after.lsn))
		b.WriteString(", @lsn binary(10) = @p3")
		if after.inTx {
			params = append(params, pBigint(after.cmd), pBytes(after.seqval), pBigint(after.op))
			b.WriteString(", @cmd int = @p4, @seqval binary(10) = @p5, @op tinyint = @p6")
		}
	}
	b.WriteString(";\nSELECT TOP (@n) [__$start_lsn], [__$command_id], [__$seqval], [__$operation]")
	for _, c := range cols {
		b.WriteString(", [" + c + "]")
	}
	b.WriteString("\nFROM [cdc].[" + instance + "_CT] WITH (READCOMMITTED)")
	b.WriteString("\nWHERE [__$operation] IN (1, 2, 4) AND [__$start_lsn] <= @to")
	switch {
	case after == nil:
	case after.inTx:
		b.WriteString("\n  AND ([__$start_lsn] > @lsn OR ([__$start_lsn] = @lsn AND (ISNULL([__$command_id], 0) > @cmd" +
			" OR (ISNULL([__$command_id], 0) = @cmd AND ([__$seqval] > @seqval OR ([__$seqval] = @seqval AND [__$operation] > @op))))))")
	default:
		b.WriteString("\n  AND [__$start_lsn] > @lsn")
	}
	if len(practices) > 0 {
		b.WriteString("\n  AND ([__$operation] = 1 OR [practice_id] IN (")
		for i, p := range practices {
			if i > 0 {
				b.WriteString(", ")
			}
			params = append(params, pVarChar(p))
			b.WriteString("@p" + itoaTest(len(params)))
		}
		b.WriteString("))")
	}
	b.WriteString("\nORDER BY [__$start_lsn], [__$command_id], [__$seqval], [__$operation]")
	return b.String(), params
}

func itoaTest(n int) string { return big.NewInt(int64(n)).String() }

func cdcTable() *schemas.Table {
	return &schemas.Table{Schema: "dbo", Name: "claim_lines", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{col("id", "uniqueidentifier", false), col("line", "int", false), col("practice_id", "char(4)", false),
			col("amount", "decimal(19,2)", true), col("note", "nvarchar(100)", true), col("modify_timestamp", "datetime", true),
			col("doubled", "decimal(19,2)", true)},
		Key: []string{"id", "line"}}
}

func cdcModel(t *testing.T, opts Options) *Model {
	t.Helper()
	m := New(opts)
	require.NoError(t, m.CreateTable(cdcTable(), Computed{Column: "doubled", Func: func(r map[string]any) any {
		if r["amount"] == nil {
			return nil
		}
		a, _ := new(big.Rat).SetString(r["amount"].(string))
		return a.Mul(a, big.NewRat(2, 1))
	}}))
	return m
}

func line(n int, practice, amount string) map[string]any {
	return map[string]any{"id": guid(1), "line": n, "practice_id": practice, "amount": amount, "note": "n",
		"modify_timestamp": time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
}

func TestCDCNotEnabledIsInvalidObject(t *testing.T) {
	m := cdcModel(t, Options{})
	se := sqlErr(t, m, "ehrsync", 208, instancesSQL, pNVarchar("dbo"), pNVarchar("claim_lines"))
	require.Equal(t, "Invalid object name 'cdc.change_tables'.", se.Message)
	res := query(t, m, minLSNSQL, pNVarchar("dbo_claim_lines"))
	require.Equal(t, make([]byte, 10), res.Rows[0][0], "an unknown instance's minimum LSN is zero")
}

func TestCDCChangeRows(t *testing.T) {
	m := cdcModel(t, Options{})
	m.EnableCDCDatabase()
	start, err := m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v1", Columns: append(cdcColumns, "doubled")})
	require.NoError(t, err)

	t.Run("instances", func(t *testing.T) {
		res := query(t, m, instancesSQL, pNVarchar("dbo"), pNVarchar("claim_lines"))
		require.Len(t, res.Rows, 7)
		require.Equal(t, []any{"claims_v1", start, "id"}, res.Rows[0])
		require.Equal(t, "doubled", res.Rows[6][2])
		require.Equal(t, tLSN, res.Columns[1].Type)
	})

	// Transaction 1: two inserts. Transaction 2: an update, a delete and a
	// re-insert of the deleted key, whose seqvals run backwards (KB
	// 3030352).
	insert(t, m, "dbo.claim_lines", line(1, "0001", "10.00"), line(2, "0002", "20.00"))
	tx := m.Begin()
	require.NoError(t, tx.Update("dbo.claim_lines", map[string]any{"id": guid(1), "line": 1, "amount": "11.00"}))
	require.NoError(t, tx.Delete("dbo.claim_lines", map[string]any{"id": guid(1), "line": 2}))
	require.NoError(t, tx.Insert("dbo.claim_lines", line(2, "0001", "21.00")))
	tx.ReverseSeqvals()
	require.NoError(t, tx.Commit())

	t.Run("nothing is visible before the capture agent harvests", func(t *testing.T) {
		res := query(t, m, maxLSNSQL)
		require.Equal(t, [][]any{{nil}}, res.Rows)
		sql, params := changesSQL("claims_v1", cdcColumns, 100, LSN(1<<40), nil)
		res = query(t, m, sql, params...)
		require.Empty(t, res.Rows)
	})
	require.Equal(t, 2, m.Harvest())

	max := query(t, m, maxLSNSQL).Rows[0][0].([]byte)
	require.Equal(t, m.MaxLSN(), max)
	t.Run("min LSN is the instance's start", func(t *testing.T) {
		require.Equal(t, start, query(t, m, minLSNSQL, pNVarchar("claims_v1")).Rows[0][0])
		require.Equal(t, max, query(t, m, "SELECT sys.fn_cdc_get_max_lsn()").Rows[0][0])
	})

	type change struct {
		op   int64
		cmd  int64
		line int64
		amt  any
	}
	read := func(t *testing.T, res tdstest.Result) []change {
		var out []change
		for _, r := range res.Rows {
			out = append(out, change{op: r[3].(int64), cmd: r[1].(int64), line: r[5].(int64), amt: r[7]})
		}
		return out
	}
	t.Run("first chunk in (lsn, command id, seqval, operation) order", func(t *testing.T) {
		sql, params := changesSQL("claims_v1", cdcColumns, 100, max, nil, "0001")
		res := query(t, m, sql, params...)
		require.Equal(t, []string{"__$start_lsn", "__$command_id", "__$seqval", "__$operation", "id", "line", "practice_id",
			"amount", "note", "modify_timestamp"}, names(res))
		require.Equal(t, []change{
			{2, 1, 1, "10.00"}, // practice 0002's insert is filtered out
			{4, 1, 1, "11.00"}, // the update's after image; its before image (3) is left out
			{1, 2, 2, "20.00"}, // the delete passes the practice filter
			{2, 3, 2, "21.00"}, // the re-insert after it, although its seqval is lower
		}, read(t, res))
		// Seqvals contradict the command order in transaction 2.
		require.Equal(t, 1, compareBinary(res.Rows[2][2].([]byte), res.Rows[3][2].([]byte)))
	})
	t.Run("resume inside a transaction", func(t *testing.T) {
		all := query(t, m, func() string { s, _ := changesSQL("claims_v1", cdcColumns, 100, max, nil); return s }(),
			func() []tdstest.Param { _, p := changesSQL("claims_v1", cdcColumns, 100, max, nil); return p }()...)
		// Resume after the delete (the third row of transaction 2).
		var at []any
		for _, r := range all.Rows {
			if r[3].(int64) == 1 {
				at = r
			}
		}
		require.NotNil(t, at)
		sql, params := changesSQL("claims_v1", cdcColumns, 1, max, &resume{lsn: at[0].([]byte), inTx: true,
			cmd: at[1].(int64), seqval: at[2].([]byte), op: 1})
		res := query(t, m, sql, params...)
		require.Equal(t, []change{{2, 3, 2, "21.00"}}, read(t, res))
		// At a transaction boundary: resume after the LSN.
		sql, params = changesSQL("claims_v1", cdcColumns, 100, max, &resume{lsn: all.Rows[0][0].([]byte)})
		res = query(t, m, sql, params...)
		require.Len(t, res.Rows, 3)
	})
	t.Run("computed columns are NULL in change rows", func(t *testing.T) {
		rows, err := m.ChangeRows("claims_v1")
		require.NoError(t, err)
		require.Len(t, rows, 6) // 2 inserts, update before and after, delete, insert
		for _, r := range rows {
			require.Nil(t, r["doubled"])
		}
		cur, err := m.Rows("dbo.claim_lines")
		require.NoError(t, err)
		require.Equal(t, "22.00", cur[0]["doubled"], "the table computes it")
		res := query(t, m, "SELECT TOP (0) * FROM [cdc].[claims_v1_CT]")
		require.Contains(t, names(res), "doubled")
		require.Contains(t, names(res), "__$update_mask")
	})
	t.Run("update mask", func(t *testing.T) {
		rows, err := m.ChangeRows("claims_v1")
		require.NoError(t, err)
		// 7 captured columns: one byte; the update changed amount (4th).
		require.Equal(t, []byte{0x7F}, rows[0]["__$update_mask"])
		require.Equal(t, []byte{0x08}, rows[2]["__$update_mask"])
	})
	t.Run("cleanup raises the minimum LSN and removes older rows", func(t *testing.T) {
		require.NoError(t, m.CleanupCDC("claims_v1", max))
		require.Equal(t, max, query(t, m, minLSNSQL, pNVarchar("claims_v1")).Rows[0][0])
		rows, err := m.ChangeRows("claims_v1")
		require.NoError(t, err)
		require.Len(t, rows, 4)
	})
}

func TestCDCCommandIDMissing(t *testing.T) {
	m := cdcModel(t, Options{AutoHarvest: true})
	m.EnableCDCDatabase()
	_, err := m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "old", NoCommandID: true})
	require.NoError(t, err)
	insert(t, m, "dbo.claim_lines", line(1, "0001", "1.00"))
	sql, params := changesSQL("old", cdcColumns, 10, LSN(1<<40), nil)
	se := sqlErr(t, m, "ehrsync", 207, sql, params...)
	require.Equal(t, "Invalid column name '__$command_id'.", se.Message)
	res := query(t, m, "SELECT COL_LENGTH('[cdc].[old_CT]', '__$command_id')")
	require.Equal(t, [][]any{{nil}}, res.Rows)
	_, err = m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "new"})
	require.NoError(t, err)
	res = query(t, m, "SELECT COL_LENGTH(@p1, '__$command_id')", pNVarchar("cdc.new_CT"))
	require.Equal(t, [][]any{{int64(4)}}, res.Rows)
	res = query(t, m, "SELECT COL_LENGTH('dbo.claim_lines', 'note')")
	require.Equal(t, [][]any{{int64(200)}}, res.Rows)
}

func TestCDCPermissions(t *testing.T) {
	m := cdcModel(t, Options{AutoHarvest: true})
	m.EnableCDCDatabase()
	_, err := m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v1", Role: "cdc_reader"})
	require.NoError(t, err)
	insert(t, m, "dbo.claim_lines", line(1, "0001", "1.00"))
	m.AddLogin("reader", "db_datareader")
	m.AddLogin("gated", "db_datareader", "cdc_reader")
	m.AddLogin("nocdc", "db_datareader")
	require.NoError(t, m.Deny("nocdc", "SELECT", "SCHEMA::cdc"))
	m.AddLogin("nobody")
	probe := "SELECT TOP (0) * FROM [cdc].[claims_v1_CT]"

	t.Run("the gating role", func(t *testing.T) {
		se := sqlErr(t, m, "reader", 229, probe)
		require.Equal(t, "The SELECT permission was denied on the object 'claims_v1_CT', database 'NGProd', schema 'cdc'.", se.Message)
		require.Equal(t, uint8(14), se.Class)
		queryAs(t, m, "gated", probe)
		// cdc.change_tables still lists the instance and its role.
		res := queryAs(t, m, "reader", gatingRoleSQL, pNVarchar("[dbo].[claim_lines]"))
		require.Equal(t, [][]any{{"cdc_reader"}}, res.Rows)
		res = queryAs(t, m, "reader", "SELECT CAST(IS_ROLEMEMBER(@p1) AS bit)", pNVarchar("cdc_reader"))
		require.Equal(t, [][]any{{false}}, res.Rows)
		res = queryAs(t, m, "gated", "SELECT CAST(IS_ROLEMEMBER(@p1) AS bit)", pNVarchar("cdc_reader"))
		require.Equal(t, [][]any{{true}}, res.Rows)
	})
	t.Run("cdc schema denied", func(t *testing.T) {
		se := sqlErr(t, m, "nocdc", 229, instancesSQL, pNVarchar("dbo"), pNVarchar("claim_lines"))
		require.Equal(t, "The SELECT permission was denied on the object 'change_tables', database 'NGProd', schema 'cdc'.", se.Message)
		res := queryAs(t, m, "nocdc", "SELECT CAST(HAS_PERMS_BY_NAME('cdc', 'SCHEMA', 'SELECT') AS bit)")
		require.Equal(t, [][]any{{false}}, res.Rows)
		res = queryAs(t, m, "reader", "SELECT CAST(HAS_PERMS_BY_NAME('cdc', 'SCHEMA', 'SELECT') AS bit)")
		require.Equal(t, [][]any{{true}}, res.Rows)
	})
	t.Run("min LSN is zero without SELECT on the source table or outside the gating role", func(t *testing.T) {
		require.Equal(t, make([]byte, 10), queryAs(t, m, "nobody", minLSNSQL, pNVarchar("claims_v1")).Rows[0][0])
		require.Equal(t, make([]byte, 10), queryAs(t, m, "reader", minLSNSQL, pNVarchar("claims_v1")).Rows[0][0])
		require.NotEqual(t, make([]byte, 10), queryAs(t, m, "gated", minLSNSQL, pNVarchar("claims_v1")).Rows[0][0])
	})
	t.Run("VIEW DATABASE STATE", func(t *testing.T) {
		se := sqlErr(t, m, "reader", 262, agentSQL)
		require.Equal(t, "VIEW DATABASE STATE permission denied in database 'NGProd'.", se.Message)
		require.NoError(t, m.Grant("reader", "VIEW DATABASE STATE", "DATABASE"))
		queryAs(t, m, "reader", agentSQL)
	})
	t.Run("SELECT on a table", func(t *testing.T) {
		se := sqlErr(t, m, "nobody", 229, "SELECT TOP (@p1) [id] FROM [dbo].[claim_lines] ORDER BY [id]", pBigint(1))
		require.Equal(t, "The SELECT permission was denied on the object 'claim_lines', database 'NGProd', schema 'dbo'.", se.Message)
	})
}

func TestCDCAgentHealth(t *testing.T) {
	chicago, err := time.LoadLocation("America/Chicago")
	require.NoError(t, err)
	now := time.Date(2026, 1, 5, 14, 0, 0, 0, time.UTC)
	m := cdcModel(t, Options{ServerZone: chicago, Now: now})
	m.EnableCDCDatabase()
	_, err = m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines"})
	require.NoError(t, err)

	res := query(t, m, agentSQL)
	require.Equal(t, [][]any{{nil, int64(0)}}, res.Rows, "no log scan session yet")

	insert(t, m, "dbo.claim_lines", line(1, "0001", "1.00"))
	m.Harvest()
	m.Advance(10 * time.Minute)
	res = query(t, m, agentSQL)
	// The server's local wall clock (08:00 in Chicago), without a zone.
	require.Equal(t, []any{time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC), int64(0)}, res.Rows[0])

	res = query(t, m, "SELECT DATEDIFF(second, (SELECT MAX(end_time) FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0), GETDATE()), (SELECT COUNT(*) FROM sys.dm_cdc_errors)")
	require.Equal(t, []any{int64(600), int64(0)}, res.Rows[0], "ages computed on the server are right whatever its zone")

	m.AddCDCError(22859, "Log Scan process failed to process log records.")
	res = query(t, m, checkAgentSQL)
	require.Equal(t, int64(1), res.Rows[0][1])
	m.Advance(2 * time.Hour)
	res = query(t, m, checkAgentSQL)
	require.Equal(t, int64(0), res.Rows[0][1], "the error is older than an hour")

	res = query(t, m, "SELECT session_id, tran_count FROM sys.dm_cdc_log_scan_sessions WHERE session_id = 0")
	require.Equal(t, [][]any{{int64(0), int64(1)}}, res.Rows[:1], "session 0 aggregates the sessions")
}

func TestCDCTouchMovesTheHarvestedLSN(t *testing.T) {
	m := cdcModel(t, Options{AutoHarvest: true})
	m.EnableCDCDatabase()
	_, err := m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines"})
	require.NoError(t, err)
	m.Touch()
	a := query(t, m, maxLSNSQL).Rows[0][0].([]byte)
	m.Touch()
	b := query(t, m, maxLSNSQL).Rows[0][0].([]byte)
	require.Equal(t, 1, compareBinary(b, a))
	m.SetAutoHarvest(false)
	m.Touch()
	require.Equal(t, b, query(t, m, maxLSNSQL).Rows[0][0], "a stopped agent does not move the harvested LSN")
	_, err = m.Handle(context.Background(), request("ehrsync", "SELECT sys.fn_cdc_get_max_lsn()"))
	require.NoError(t, err)
}

func TestCDCSecondCaptureInstanceAfterASchemaChange(t *testing.T) {
	m := cdcModel(t, Options{AutoHarvest: true})
	m.EnableCDCDatabase()
	v1, err := m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v1", Columns: cdcColumns})
	require.NoError(t, err)
	insert(t, m, "dbo.claim_lines", line(1, "0001", "1.00"))
	require.NoError(t, m.AddColumn("dbo.claim_lines", col("status", "varchar(10)", true)))
	v2, err := m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v2", Columns: append(cdcColumns, "status")})
	require.NoError(t, err)
	r := line(2, "0001", "2.00")
	r["status"] = "open"
	insert(t, m, "dbo.claim_lines", r)
	_, err = m.EnableCDC(CaptureInstance{Table: "dbo.claim_lines", Name: "claims_v3"})
	require.ErrorContains(t, err, "22962", "two capture instances at most")

	res := query(t, m, instancesSQL, pNVarchar("dbo"), pNVarchar("claim_lines"))
	require.Len(t, res.Rows, 13)
	require.Equal(t, []any{"claims_v1", v1, "id"}, res.Rows[0])
	require.Equal(t, []any{"claims_v2", v2, "status"}, res.Rows[12])

	sql, params := changesSQL("claims_v1", append(cdcColumns, "status"), 10, LSN(1<<40), nil)
	sqlErr(t, m, "ehrsync", 207, sql, params...)
	sql, params = changesSQL("claims_v1", cdcColumns, 10, LSN(1<<40), nil)
	require.Len(t, query(t, m, sql, params...).Rows, 2, "the old instance keeps capturing its columns")
	sql, params = changesSQL("claims_v2", append(cdcColumns, "status"), 10, LSN(1<<40), nil)
	res = query(t, m, sql, params...)
	require.Len(t, res.Rows, 1, "the new instance starts at its start LSN")
	require.Equal(t, "open", res.Rows[0][len(res.Rows[0])-1])
}

func TestClock(t *testing.T) {
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	require.NoError(t, err)
	m := New(Options{ServerZone: tokyo, Now: time.Date(2026, 1, 5, 20, 0, 0, 2_000_000, time.UTC)})
	res, err := eval(t, m, "SELECT GETDATE(), GETUTCDATE(), SYSDATETIME(), DATEADD(hour, -1, GETDATE()), DATEDIFF(day, GETUTCDATE(), GETDATE())")
	require.NoError(t, err)
	require.Equal(t, []any{
		time.Date(2026, 1, 6, 5, 0, 0, 3333333, time.UTC), // Tokyo's wall clock, at a datetime tick
		time.Date(2026, 1, 5, 20, 0, 0, 3333333, time.UTC),
		time.Date(2026, 1, 6, 5, 0, 0, 2_000_000, time.UTC),
		time.Date(2026, 1, 6, 4, 0, 0, 3333333, time.UTC),
		int64(1), // a day boundary lies between them
	}, res[0].Rows[0])
	require.Equal(t, tDatetime, res[0].Columns[0].Type)
	m.Advance(time.Hour)
	res, err = eval(t, m, "SELECT GETUTCDATE()")
	require.NoError(t, err)
	require.Equal(t, time.Date(2026, 1, 5, 21, 0, 0, 3333333, time.UTC), res[0].Rows[0][0])
}
