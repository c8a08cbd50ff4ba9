package mssqlmodel

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// Parameters shaped as go-mssqldb sends them through sp_executesql and as
// tdstest decodes them (handler.go).

var latin1 = &tdstest.Collation{LCID: 0x0409, SortID: 52, CodePage: 1252, IgnoreCase: true}

func pBigint(v int64) tdstest.Param { return tdstest.Param{Type: tBigint, Value: v} }
func pInt(v int32) tdstest.Param    { return tdstest.Param{Type: tInt, Value: int64(v)} }

// pNVarchar is a Go string: nvarchar.
func pNVarchar(s string) tdstest.Param {
	return tdstest.Param{Type: nvarchar(4000), Value: s}
}

// pVarChar is mssql.VarChar: go-mssqldb sends the Go string's UTF-8 bytes
// as varchar in the connection's collation, and the server reads them in
// code page 1252.
func pVarChar(s string) tdstest.Param {
	raw := []byte(s)
	return tdstest.Param{Type: varchar(8000), Collation: latin1, Value: DecodeCP1252(raw), Raw: raw}
}

// pGUID is mssql.UniqueIdentifier: 16 bytes in wire order.
func pGUID(u uuid.UUID) tdstest.Param { return tdstest.Param{Type: tGUID, Value: GUIDWire(u)} }

// pBytes is a []byte: varbinary.
func pBytes(b []byte) tdstest.Param {
	return tdstest.Param{Type: varbinaryT(max(1, len(b))), Value: b}
}

// pDateTime1 is mssql.DateTime1: datetime, decoded as go-mssqldb decodes
// it (to the millisecond).
func pDateTime1(t time.Time) tdstest.Param {
	r := roundDatetime(t)
	return tdstest.Param{Type: tDatetime, Value: r.Round(time.Millisecond)}
}

// pDatetime2 is civil.DateTime: datetime2(7).
func pDatetime2(t time.Time) tdstest.Param { return tdstest.Param{Type: tDatetime2, Value: t} }

func session(user string) *tdstest.Session {
	return &tdstest.Session{ID: 51, User: user, Database: "NGProd", Isolation: tdstest.IsolationReadCommitted}
}

func request(user, sql string, params ...tdstest.Param) *tdstest.Request {
	for i := range params {
		params[i].Name = "@p" + strconv.Itoa(i+1)
	}
	return &tdstest.Request{SQL: sql, Params: params, Session: session(user)}
}

// query runs a statement as login ehrsync and returns its first result.
func query(t *testing.T, m *Model, sql string, params ...tdstest.Param) tdstest.Result {
	t.Helper()
	return queryAs(t, m, "ehrsync", sql, params...)
}

func queryAs(t *testing.T, m *Model, user, sql string, params ...tdstest.Param) tdstest.Result {
	t.Helper()
	res, err := m.Handle(context.Background(), request(user, sql, params...))
	require.NoError(t, err, sql)
	require.NotEmpty(t, res, sql)
	return res[len(res)-1]
}

// eval runs a statement outside the inventory (expressions under test).
func eval(t *testing.T, m *Model, sql string, params ...tdstest.Param) ([]tdstest.Result, error) {
	t.Helper()
	return m.Handler().handle(context.Background(), request("ehrsync", sql, params...), false)
}

// sqlErr runs a statement that must fail with SQL Server error number.
func sqlErr(t *testing.T, m *Model, user string, number int32, sql string, params ...tdstest.Param) *tdstest.Error {
	t.Helper()
	_, err := m.Handle(context.Background(), request(user, sql, params...))
	require.Error(t, err, sql)
	se, ok := err.(*tdstest.Error)
	require.True(t, ok, "want a SQL Server error, got %v", err)
	require.Equal(t, number, se.Number, se.Message)
	return se
}

func col(name, typ string, nullable bool) schemas.Column {
	ty, err := schemas.ParseType(schemas.SQLServer, typ)
	if err != nil {
		panic(err)
	}
	return schemas.Column{Name: name, Type: ty, Nullable: nullable}
}

// claimLines is the suite's table: a composite GUID key, a varchar
// practice, a decimal, a datetime cursor and a rowversion.
func claimLines() *schemas.Table {
	return &schemas.Table{
		Schema: "dbo", Name: "claim_lines", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{
			col("claim_id", "uniqueidentifier", false),
			col("line_id", "uniqueidentifier", false),
			col("practice_id", "char(4)", false),
			col("paid_amt", "numeric(19,2)", true),
			col("service_date", "date", true),
			col("modify_timestamp", "datetime", true),
			col("row_timestamp", "timestamp", false),
		},
		Key: []string{"claim_id", "line_id"}, RowVersion: "row_timestamp", ModifiedAt: "modify_timestamp", Practice: "practice_id",
	}
}

func newModel(t *testing.T, opts Options) *Model {
	t.Helper()
	m := New(opts)
	require.NoError(t, m.CreateTable(claimLines()))
	return m
}

// write commits one transaction of inserts.
func insert(t *testing.T, m *Model, table string, rows ...map[string]any) {
	t.Helper()
	tx := m.Begin()
	for _, r := range rows {
		require.NoError(t, tx.Insert(table, r))
	}
	require.NoError(t, tx.Commit())
}

func column(res tdstest.Result, name string) []any {
	for i, c := range res.Columns {
		if c.Name == name {
			out := make([]any, len(res.Rows))
			for j, r := range res.Rows {
				out[j] = r[i]
			}
			return out
		}
	}
	panic("no column " + name)
}

func guid(n int) uuid.UUID {
	var u uuid.UUID
	u[15] = byte(n)
	u[14] = byte(n >> 8)
	return u
}
