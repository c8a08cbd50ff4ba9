package mssqlmodel

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// The Change Tracking statements, as extractors/changetracking/sqlserver.go
// writes them.
const (
	ctCurrentSQL  = "SELECT CHANGE_TRACKING_CURRENT_VERSION()"
	ctMinValidSQL = "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1))"
	ctSnapshotSQL = "SELECT CAST(CASE WHEN snapshot_isolation_state = 1 THEN 1 ELSE 0 END AS bit) FROM sys.databases WHERE database_id = DB_ID()"
	ctProbeSQL    = `SELECT
  CAST(CASE WHEN CHANGE_TRACKING_CURRENT_VERSION() IS NULL THEN 0 ELSE 1 END AS bit) AS database_enabled,
  CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(@p1)) THEN 1 ELSE 0 END AS bit) AS table_enabled,
  CAST(ISNULL(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'VIEW CHANGE TRACKING'), 0) AS bit) AS view_change_tracking,
  CAST(ISNULL(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'SELECT'), 0) AS bit) AS can_select,
  CAST(CASE WHEN d.snapshot_isolation_state = 1 THEN 1 ELSE 0 END AS bit) AS snapshot_isolation,
  USER_NAME() AS user_name,
  DB_NAME() AS database_name
FROM sys.databases AS d
WHERE d.database_id = DB_ID()`
	// ctChangesSQL is changesQuery's text for claim_lines (the golden's).
	ctChangesSQL = `SELECT TOP (@p1) ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION, CAST(CASE WHEN t.[claim_id] IS NULL THEN 0 ELSE 1 END AS bit), ct.[claim_id], ct.[line_id], t.[practice_id], t.[paid_amt], t.[service_date], t.[modify_timestamp], t.[row_timestamp]
FROM CHANGETABLE(CHANGES [dbo].[claim_lines], @p2) AS ct
LEFT JOIN [dbo].[claim_lines] AS t ON t.[claim_id] = ct.[claim_id] AND t.[line_id] = ct.[line_id] AND t.[practice_id] IN (@p3)
WHERE ct.SYS_CHANGE_VERSION <= @p4`
	ctAfterSQL = `
  AND ((ct.[claim_id] > @p5) OR (ct.[claim_id] = @p5 AND ct.[line_id] > @p6))`
	ctOrderSQL = `
ORDER BY ct.[claim_id], ct.[line_id]`
)

func ctNetModel(t *testing.T) *Model {
	t.Helper()
	m := New(Options{})
	require.NoError(t, m.CreateTable(&schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{col("id", "int", false), col("a", "int", true)}, Key: []string{"id"}}))
	m.EnableCTDatabase()
	require.NoError(t, m.EnableCT("dbo.t"))
	return m
}

// netChanges renders CHANGETABLE(CHANGES dbo.t, @v) as "id op version/creation".
func netChanges(t *testing.T, m *Model, from any) string {
	t.Helper()
	res := query(t, m, "SELECT TOP (@p1) ct.id, ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION, ct.SYS_CHANGE_CREATION_VERSION FROM CHANGETABLE(CHANGES dbo.t, @p2) AS ct ORDER BY ct.id",
		pBigint(100), tdstest.Param{Type: tBigint, Value: from})
	var parts []string
	for _, r := range res.Rows {
		created := ""
		if r[3] != nil {
			created = fmt.Sprint(r[3])
		}
		parts = append(parts, fmt.Sprintf("%d%s%d/%s", r[0], r[1], r[2], created))
	}
	return strings.Join(parts, " ")
}

// TestCTNetOperations checks CHANGETABLE's net operation per key against
// the answers SQL Server 2025 gave for the same writes (the
// sql-server-simulator project's probes): each write its own transaction,
// after inserting keys 1, 2, 3 at version 1.
func TestCTNetOperations(t *testing.T) {
	type w struct {
		op byte
		id int
	}
	for _, c := range []struct {
		name   string
		writes []w
		from   any
		want   string
	}{
		{"inserts", nil, int64(0), "1I1/1 2I1/1 3I1/1"},
		{"insert then update is an insert", []w{{'U', 1}}, int64(0), "1I2/1 2I1/1 3I1/1"},
		{"update", []w{{'U', 1}}, int64(1), "1U2/"},
		{"insert then delete", []w{{'D', 2}}, int64(0), "1I1/1 2D2/1 3I1/1"},
		{"delete", []w{{'D', 2}}, int64(1), "2D2/"},
		{"insert then delete after the baseline is a delete", []w{{'I', 4}, {'D', 4}}, int64(1), "4D3/2"},
		{"delete then insert is an update", []w{{'D', 1}, {'I', 1}}, int64(1), "1U3/3"},
		{"twice deleted and inserted", []w{{'D', 1}, {'I', 1}, {'D', 1}, {'I', 1}}, int64(3), "1U5/5"},
		{"NULL baseline: every change", nil, nil, "1I1/1 2I1/1 3I1/1"},
		{"negative baseline: nothing", nil, int64(-1), ""},
		{"future baseline: nothing", []w{{'U', 1}}, int64(99), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := ctNetModel(t)
			insert(t, m, "dbo.t", map[string]any{"id": 1, "a": 1}, map[string]any{"id": 2, "a": 2}, map[string]any{"id": 3, "a": 3})
			for _, x := range c.writes {
				tx := m.Begin()
				switch x.op {
				case 'I':
					require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": x.id, "a": 0}))
				case 'U':
					require.NoError(t, tx.Update("dbo.t", map[string]any{"id": x.id, "a": 9}))
				case 'D':
					require.NoError(t, tx.Delete("dbo.t", map[string]any{"id": x.id}))
				}
				require.NoError(t, tx.Commit())
			}
			require.Equal(t, c.want, netChanges(t, m, c.from))
		})
	}
	t.Run("one transaction is one version and nets its writes", func(t *testing.T) {
		m := ctNetModel(t)
		insert(t, m, "dbo.t", map[string]any{"id": 9, "a": 9})
		tx := m.Begin()
		require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": 1, "a": 1}))
		require.NoError(t, tx.Delete("dbo.t", map[string]any{"id": 1}))
		require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": 2, "a": 2}))
		require.NoError(t, tx.Delete("dbo.t", map[string]any{"id": 2}))
		require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": 2, "a": 3}))
		require.NoError(t, tx.Delete("dbo.t", map[string]any{"id": 9}))
		require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": 9, "a": 10}))
		require.NoError(t, tx.Update("dbo.t", map[string]any{"id": 9, "a": 4}))
		require.NoError(t, tx.Commit())
		require.Equal(t, "1D2/2 2I2/2 9I2/2", netChanges(t, m, int64(0)))
		require.Equal(t, "1D2/2 2I2/2 9U2/2", netChanges(t, m, int64(1)))
		require.Equal(t, [][]any{{int64(2)}}, query(t, m, ctCurrentSQL).Rows)
	})
	t.Run("uncommitted and untracked writes take no version", func(t *testing.T) {
		m := ctNetModel(t)
		require.NoError(t, m.CreateTable(&schemas.Table{Schema: "dbo", Name: "u", Dialect: schemas.SQLServer,
			Columns: []schemas.Column{col("id", "int", false)}, Key: []string{"id"}}))
		insert(t, m, "dbo.u", map[string]any{"id": 1})
		tx := m.Begin()
		require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": 1}))
		require.Equal(t, [][]any{{int64(0)}}, query(t, m, ctCurrentSQL).Rows)
		require.Equal(t, "", netChanges(t, m, int64(0)))
		tx.Rollback()
		m.Touch()
		require.Equal(t, [][]any{{int64(1)}}, query(t, m, ctCurrentSQL).Rows, "Touch commits elsewhere: the version moves")
	})
}

func TestCTMinimumValidVersion(t *testing.T) {
	m := ctNetModel(t)
	minValid := func(user string) any {
		return queryAs(t, m, user, ctMinValidSQL, pNVarchar("[dbo].[t]")).Rows[0][0]
	}
	insert(t, m, "dbo.t", map[string]any{"id": 1})
	insert(t, m, "dbo.t", map[string]any{"id": 2})
	require.Equal(t, int64(0), minValid("ehrsync"))
	require.NoError(t, m.CleanupCT("dbo.t", 2))
	require.Equal(t, int64(2), minValid("ehrsync"))
	require.Equal(t, "2I2/2", netChanges(t, m, int64(0)), "cleanup removed version 1: a baseline below the minimum reads an incomplete answer, without an error")

	require.NoError(t, m.Truncate("dbo.t"))
	require.Equal(t, int64(2), minValid("ehrsync"), "TRUNCATE raises it to the current version")
	require.Equal(t, "", netChanges(t, m, int64(0)))
	insert(t, m, "dbo.t", map[string]any{"id": 3})
	require.Equal(t, "3I3/3", netChanges(t, m, int64(0)))

	m.AddLogin("reader", "db_datareader")
	require.Nil(t, minValid("reader"), "NULL without VIEW CHANGE TRACKING")
	require.NoError(t, m.Grant("reader", "VIEW CHANGE TRACKING", "OBJECT::[dbo].[t]"))
	require.Equal(t, int64(2), minValid("reader"))
	require.Nil(t, queryAs(t, m, "ehrsync", ctMinValidSQL, pNVarchar("[dbo].[nope]")).Rows[0][0])

	require.NoError(t, m.DisableCT("dbo.t"))
	require.NoError(t, m.DisableCTDatabase())
	require.Nil(t, minValid("ehrsync"))
	require.Equal(t, [][]any{{nil}}, query(t, m, ctCurrentSQL).Rows, "NULL while change tracking is off")
}

func TestCTErrors(t *testing.T) {
	m := ctNetModel(t)
	require.NoError(t, m.CreateTable(&schemas.Table{Schema: "dbo", Name: "u", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{col("id", "int", false)}, Key: []string{"id"}}))
	se := sqlErr(t, m, "ehrsync", 22105, "SELECT TOP (@p1) ct.id FROM CHANGETABLE(CHANGES dbo.u, @p2) AS ct", pBigint(1), pBigint(0))
	require.Equal(t, "Change tracking is not enabled on table 'dbo.u'.", se.Message)
	sqlErr(t, m, "ehrsync", 22104, "SELECT TOP (@p1) id FROM CHANGETABLE(CHANGES dbo.t, @p2)", pBigint(1), pBigint(0))
	sqlErr(t, m, "ehrsync", 208, "SELECT TOP (@p1) ct.id FROM CHANGETABLE(CHANGES dbo.nope, @p2) AS ct", pBigint(1), pBigint(0))
	m.AddLogin("reader", "db_datareader")
	se = sqlErr(t, m, "reader", 229, "SELECT TOP (@p1) ct.id FROM CHANGETABLE(CHANGES dbo.t, @p2) AS ct", pBigint(1), pBigint(0))
	require.Equal(t, "The VIEW CHANGE TRACKING permission was denied on the object 't', database 'NGProd', schema 'dbo'.", se.Message)
}

func ctModel(t *testing.T, opts Options) *Model {
	t.Helper()
	m := newModel(t, opts)
	m.EnableCTDatabase()
	require.NoError(t, m.EnableCT("dbo.claim_lines"))
	return m
}

func TestCTChangesQuery(t *testing.T) {
	m := ctModel(t, Options{})
	row := func(c, l int, p string) map[string]any {
		return map[string]any{"claim_id": guid(c), "line_id": guid(l), "practice_id": p, "paid_amt": "1.00"}
	}
	insert(t, m, "dbo.claim_lines", row(1, 1, "0001"), row(1, 2, "0001"), row(2, 1, "0002"), row(3, 1, "0001"))
	from, _ := m.CTVersion()
	tx := m.Begin()
	require.NoError(t, tx.Update("dbo.claim_lines", map[string]any{"claim_id": guid(1), "line_id": guid(1), "paid_amt": "2.00"}))
	require.NoError(t, tx.Delete("dbo.claim_lines", map[string]any{"claim_id": guid(1), "line_id": guid(2)}))
	require.NoError(t, tx.Update("dbo.claim_lines", map[string]any{"claim_id": guid(2), "line_id": guid(1), "paid_amt": "3.00"}))
	require.NoError(t, tx.Insert("dbo.claim_lines", row(4, 1, "0001")))
	require.NoError(t, tx.Commit())
	to, _ := m.CTVersion()

	res := query(t, m, ctChangesSQL+ctOrderSQL, pBigint(10), pBigint(from), pVarChar("0001"), pBigint(to))
	require.Equal(t, []string{"SYS_CHANGE_OPERATION", "SYS_CHANGE_VERSION", "", "claim_id", "line_id", "practice_id", "paid_amt",
		"service_date", "modify_timestamp", "row_timestamp"}, names(res))
	require.Equal(t, nchar(1), res.Columns[0].Type)
	require.True(t, res.Columns[5].Nullable, "a NOT NULL column of the LEFT JOIN's right side is nullable")
	require.False(t, res.Columns[3].Nullable)
	type got struct {
		op     string
		exists bool
		line   int
		amt    any
	}
	var rows []got
	for _, r := range res.Rows {
		rows = append(rows, got{r[0].(string), r[2].(bool), int(r[4].([]byte)[15]), r[6]})
	}
	require.Equal(t, []got{
		{"U", true, 1, "2.00"},
		{"D", false, 2, nil}, // deleted: the key alone
		{"U", false, 1, nil}, // another practice's row reads as gone
		{"I", true, 1, "1.00"},
	}, rows)
	// Paging by key after the second row.
	res = query(t, m, ctChangesSQL+ctAfterSQL+ctOrderSQL, pBigint(10), pBigint(from), pVarChar("0001"), pBigint(to),
		pGUID(guid(1)), pGUID(guid(2)))
	require.Len(t, res.Rows, 2)
	require.Equal(t, GUIDWire(guid(2)), res.Rows[0][3])
}

func TestCTProbe(t *testing.T) {
	m := ctModel(t, Options{SnapshotIsolation: true})
	m.AddLogin("reader", "db_datareader")
	res := queryAs(t, m, "ehrsync", ctProbeSQL, pNVarchar("[dbo].[claim_lines]"))
	require.Equal(t, []string{"database_enabled", "table_enabled", "view_change_tracking", "can_select", "snapshot_isolation",
		"user_name", "database_name"}, names(res))
	require.Equal(t, []any{true, true, true, true, true, "dbo", "NGProd"}, res.Rows[0])
	res = queryAs(t, m, "reader", ctProbeSQL, pNVarchar("[dbo].[claim_lines]"))
	require.Equal(t, []any{true, true, false, true, true, "reader", "NGProd"}, res.Rows[0])
	require.Equal(t, [][]any{{true}}, query(t, m, ctSnapshotSQL).Rows)

	m2 := newModel(t, Options{})
	res = queryAs(t, m2, "ehrsync", ctProbeSQL, pNVarchar("[dbo].[claim_lines]"))
	require.Equal(t, []any{false, false, true, true, false, "dbo", "NGProd"}, res.Rows[0])
	require.Equal(t, [][]any{{false}}, query(t, m2, ctSnapshotSQL).Rows)
}
