package mssqltest_test

import (
	"context"
	"database/sql"
	"testing"

	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
	"github.com/ehrsync/ehrsync/schemas"
)

// The recorder shows what the server received: the types go-mssqldb
// declared, a GUID in the form SQL Server displays, and transactions with
// their isolation level.
func TestRecorderTranscript(t *testing.T) {
	srv, rec := mssqltest.ServeRecorded(t, mssqlmodel.New(mssqlmodel.Options{SnapshotIsolation: true}))
	typ, err := schemas.ParseType(schemas.SQLServer, "uniqueidentifier")
	require.NoError(t, err)
	require.NoError(t, srv.Model.CreateTable(&schemas.Table{Schema: "dbo", Name: "t", Dialect: schemas.SQLServer,
		Key: []string{"id"}, Columns: []schemas.Column{{Name: "id", Type: typ}}}))
	tx := srv.Model.Begin()
	require.NoError(t, tx.Insert("dbo.t", map[string]any{"id": mssqlmodel.GUIDWire(uuid.MustParse("00000000-0000-0000-0000-000000000001"))}))
	require.NoError(t, tx.Commit())
	db := srv.Open(t)
	rec.Reset()
	ctx := context.Background()
	u := uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")
	const query = "SELECT TOP (@p1) [id] FROM [dbo].[t] WHERE [id] > @p2 ORDER BY [id]"
	rows, err := db.QueryContext(ctx, query, int64(2), mssql.UniqueIdentifier(u))
	require.NoError(t, err)
	require.NoError(t, rows.Close())
	stx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSnapshot})
	require.NoError(t, err)
	_, err = stx.QueryContext(ctx, query, int64(1), "x")
	require.Error(t, err) // nvarchar compared with uniqueidentifier: a conversion error
	require.NoError(t, stx.Commit())
	require.Equal(t, `-- statement 1
`+query+`
--   @p1 bigint 2
--   @p2 uniqueidentifier 6F9619FF-8B86-D011-B42D-00C04FC964FF
-- begin transaction, isolation snapshot
-- statement 2
`+query+`
--   @p1 bigint 1
--   @p2 nvarchar(1) "x"
--   => error 8169, class 16: Conversion failed when converting from a character string to uniqueidentifier.
-- commit transaction
`, rec.Transcript())
	require.Len(t, rec.Statements(), 2)
}

func TestEventChecks(t *testing.T) {
	ev := mssqltest.Event{
		SQL: "SELECT 1 FROM [t] WHERE [a] IN (@p1, CAST(@p2 AS char(4))) AND ([k] > CAST(@p3 AS varchar(40)) OR [k] = @p4) AND [n] = @p10",
		Params: []mssqltest.Param{
			{Name: "@p1", Type: "varchar(4)"}, {Name: "@p2", Type: "nvarchar(4)"}, {Name: "@p3", Type: "nvarchar(7)"},
			{Name: "@p4", Type: "nvarchar(7)"}, {Name: "@p10", Type: "bigint"},
		},
	}
	require.Equal(t, []string{"@p4"}, ev.PlainNVarChar())
	bound := ev.Bound()
	names := func(ps []mssqltest.Param) (out []string) {
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return out
	}
	require.Equal(t, []string{"@p1", "@p2"}, names(bound["a"]))
	require.Equal(t, []string{"@p3", "@p4"}, names(bound["k"]))
	require.Equal(t, []string{"@p10"}, names(bound["n"]))
	require.Equal(t, "NULL", mssqltest.Render("int", nil))
	require.Equal(t, "0x00FF", mssqltest.Render("varbinary", []byte{0, 255}))
}
