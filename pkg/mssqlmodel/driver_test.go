package mssqlmodel_test

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// These tests go through the real go-mssqldb driver and the TDS test
// server: what a statement's parameters become on the wire, and what the
// model's answers become in database/sql.

func serve(t *testing.T, m *mssqlmodel.Model) *tdstest.Server {
	t.Helper()
	s := tdstest.Start(t, tdstest.Config{Handler: m.Handler()})
	t.Cleanup(func() {
		for _, err := range s.Errors() {
			t.Errorf("tdstest server: %v", err)
		}
	})
	return s
}

func openAs(t *testing.T, s *tdstest.Server, user string) *sql.DB {
	t.Helper()
	q := url.Values{}
	q.Set("encrypt", "disable")
	q.Set("database", "NGProd")
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(user, "pw"), Host: s.Host() + ":" + strconv.Itoa(s.Port()), RawQuery: q.Encode()}
	db, err := sql.Open("sqlserver", u.String())
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func colT(name, typ string, nullable bool) schemas.Column {
	ty, err := schemas.ParseType(schemas.SQLServer, typ)
	if err != nil {
		panic(err)
	}
	return schemas.Column{Name: name, Type: ty, Nullable: nullable}
}

func linesTable() *schemas.Table {
	return &schemas.Table{Schema: "dbo", Name: "claim_lines", Dialect: schemas.SQLServer,
		Columns: []schemas.Column{colT("claim_id", "uniqueidentifier", false), colT("line_id", "smallint", false),
			colT("practice_id", "char(4)", false), colT("paid_amt", "numeric(19,2)", true),
			colT("modify_timestamp", "datetime", true), colT("last_name", "varchar(40)", true),
			colT("row_timestamp", "timestamp", false)},
		Key: []string{"claim_id", "line_id"}}
}

func TestThroughTheDriver(t *testing.T) {
	m := mssqlmodel.New(mssqlmodel.Options{})
	require.NoError(t, m.CreateTable(linesTable()))
	at := time.Date(2026, 1, 5, 8, 0, 0, 3_000_000, time.UTC)
	ids := []uuid.UUID{uuid.MustParse("6F9619FF-8B86-D011-B42D-00C04FC964FF"), uuid.MustParse("00010203-0405-0607-0809-0A0B0C0D0E0F")}
	tx := m.Begin()
	for i, id := range ids {
		for l := range 2 {
			require.NoError(t, tx.Insert("dbo.claim_lines", map[string]any{"claim_id": id, "line_id": l + 1, "practice_id": "0001",
				"paid_amt": "99999999999999999.99", "modify_timestamp": at, "last_name": []string{"O’Brien", "José"}[i]}))
		}
	}
	require.NoError(t, tx.Commit())
	s := serve(t, m)
	db := openAs(t, s, "ehrsync")
	ctx := context.Background()

	t.Run("keyset chunk with typed parameters", func(t *testing.T) {
		rows, err := db.QueryContext(ctx, "SELECT TOP (@p1) [claim_id], [line_id], [practice_id], [paid_amt], [modify_timestamp], [row_timestamp] FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) AND (([claim_id] > @p3) OR ([claim_id] = @p3 AND [line_id] > @p4)) ORDER BY [claim_id], [line_id]",
			int64(10), mssql.VarChar("0001"), mssql.UniqueIdentifier(ids[0]), int16(1))
		require.NoError(t, err)
		defer rows.Close()
		var got []string
		for rows.Next() {
			var id mssql.UniqueIdentifier
			var line int16
			var practice, amt string
			var mod time.Time
			var rv []byte
			require.NoError(t, rows.Scan(&id, &line, &practice, &amt, &mod, &rv))
			require.Equal(t, "99999999999999999.99", amt)
			require.Equal(t, at, mod, "a datetime tick round-trips")
			require.Len(t, rv, 8)
			got = append(got, uuid.UUID(id).String()+"/"+strconv.Itoa(int(line)))
		}
		require.NoError(t, rows.Err())
		// 6F9619FF-... has bytes 10-15 00C04FC964FF, below 0A0B0C0D0E0F:
		// it sorts first, although 00010203 is lower as text.
		require.Equal(t, []string{"6f9619ff-8b86-d011-b42d-00c04fc964ff/2",
			"00010203-0405-0607-0809-0a0b0c0d0e0f/1", "00010203-0405-0607-0809-0a0b0c0d0e0f/2"}, got)
	})
	t.Run("rowversion bound", func(t *testing.T) {
		var b []byte
		require.NoError(t, db.QueryRowContext(ctx, "SELECT MIN_ACTIVE_ROWVERSION()").Scan(&b))
		require.Equal(t, uint64(2005), binary.BigEndian.Uint64(b))
	})
	t.Run("mssql.VarChar of a non-ASCII key arrives as mojibake", func(t *testing.T) {
		for _, name := range []string{"O’Brien", "José"} {
			var nn sql.NullInt64
			require.NoError(t, db.QueryRowContext(ctx, "SELECT MAX([line_id]) FROM [dbo].[claim_lines] WHERE [last_name] IN (@p1)", mssql.VarChar(name)).Scan(&nn))
			require.False(t, nn.Valid, "the UTF-8 bytes of %s read in code page 1252 match nothing", name)
			require.NoError(t, db.QueryRowContext(ctx, "SELECT MAX([line_id]) FROM [dbo].[claim_lines] WHERE [last_name] IN (CAST(@p1 AS varchar(40)))", name).Scan(&nn))
			require.Equal(t, int64(2), nn.Int64, name)
		}
	})
	t.Run("SQL Server errors keep their numbers", func(t *testing.T) {
		_, err := db.QueryContext(ctx, "SELECT TOP (@p1) [nope] FROM [dbo].[claim_lines] ORDER BY [claim_id]", int64(1))
		var me mssql.Error
		require.True(t, errors.As(err, &me), "%v", err)
		require.Equal(t, int32(207), me.Number)
		_, err = db.QueryContext(ctx, "SELECT CAST(CASE WHEN OBJECT_ID(@p1, 'U') IS NULL THEN 0 ELSE 1 END AS bit)", "[dbo].[nope]")
		require.NoError(t, err)
	})
}

func TestUnknownStatementThroughTheDriverFailsLoudly(t *testing.T) {
	m := mssqlmodel.New(mssqlmodel.Options{})
	s := tdstest.Start(t, tdstest.Config{Handler: m.Handler()})
	db := openAs(t, s, "ehrsync")
	_, err := db.ExecContext(context.Background(), "SELECT name FROM sys.dm_exec_sessions")
	require.Error(t, err)
	errs := s.Errors()
	require.NotEmpty(t, errs)
	require.Contains(t, errs[0].Error(), "sys.dm_exec_sessions")
}

func TestSnapshotTransactionThroughTheDriver(t *testing.T) {
	const minValid = "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1))"
	const changes = `SELECT TOP (@p1) ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION, CAST(CASE WHEN t.[claim_id] IS NULL THEN 0 ELSE 1 END AS bit), ct.[claim_id], ct.[line_id], t.[practice_id]
FROM CHANGETABLE(CHANGES [dbo].[claim_lines], @p2) AS ct
LEFT JOIN [dbo].[claim_lines] AS t ON t.[claim_id] = ct.[claim_id] AND t.[line_id] = ct.[line_id] AND t.[practice_id] IN (@p3)
WHERE ct.SYS_CHANGE_VERSION <= @p4
ORDER BY ct.[claim_id], ct.[line_id]`
	ctx := context.Background()
	setup := func(t *testing.T, snapshot bool) (*mssqlmodel.Model, *sql.DB) {
		m := mssqlmodel.New(mssqlmodel.Options{SnapshotIsolation: snapshot})
		require.NoError(t, m.CreateTable(linesTable()))
		m.EnableCTDatabase()
		require.NoError(t, m.EnableCT("dbo.claim_lines"))
		tx := m.Begin()
		require.NoError(t, tx.Insert("dbo.claim_lines", map[string]any{"claim_id": uuid.New(), "line_id": 1, "practice_id": "0001"}))
		require.NoError(t, tx.Commit())
		return m, openAs(t, serve(t, m), "ehrsync")
	}
	t.Run("a SNAPSHOT transaction reads one state", func(t *testing.T) {
		m, db := setup(t, true)
		tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSnapshot})
		require.NoError(t, err)
		defer tx.Rollback()
		read := func(q interface {
			QueryContext(context.Context, string, ...any) (*sql.Rows, error)
		}) (ops []string) {
			rows, err := q.QueryContext(ctx, changes, int64(10), int64(0), mssql.VarChar("0001"), int64(100))
			require.NoError(t, err)
			defer rows.Close()
			for rows.Next() {
				var op string
				var version int64
				var exists bool
				var id mssql.UniqueIdentifier
				var line int16
				var practice sql.NullString
				require.NoError(t, rows.Scan(&op, &version, &exists, &id, &line, &practice))
				ops = append(ops, op)
			}
			require.NoError(t, rows.Err())
			return ops
		}
		require.Equal(t, []string{"I"}, read(tx))
		// Elsewhere: a commit and the cleanup task.
		w := m.Begin()
		require.NoError(t, w.Insert("dbo.claim_lines", map[string]any{"claim_id": uuid.New(), "line_id": 2, "practice_id": "0001"}))
		require.NoError(t, w.Commit())
		require.NoError(t, m.CleanupCT("dbo.claim_lines", 2))
		var v int64
		require.NoError(t, tx.QueryRowContext(ctx, minValid, "[dbo].[claim_lines]").Scan(&v))
		require.Equal(t, int64(0), v, "the transaction's snapshot predates the cleanup")
		require.Equal(t, []string{"I"}, read(tx))
		require.NoError(t, tx.Commit())
		require.NoError(t, db.QueryRowContext(ctx, minValid, "[dbo].[claim_lines]").Scan(&v))
		require.Equal(t, int64(2), v)
		require.Equal(t, []string{"I"}, read(db), "after cleanup only version 2's insert is left")
	})
	t.Run("SNAPSHOT is refused where the database does not allow it", func(t *testing.T) {
		_, db := setup(t, false)
		tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSnapshot})
		require.NoError(t, err)
		defer tx.Rollback()
		var v sql.NullInt64
		err = tx.QueryRowContext(ctx, minValid, "[dbo].[claim_lines]").Scan(&v)
		var me mssql.Error
		require.True(t, errors.As(err, &me), "%v", err)
		require.Equal(t, int32(3952), me.Number)
	})
}

func TestConcurrentSessionsAndWriters(t *testing.T) {
	m := mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true})
	require.NoError(t, m.CreateTable(linesTable()))
	m.EnableCDCDatabase()
	_, err := m.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.claim_lines"})
	require.NoError(t, err)
	m.EnableCTDatabase()
	require.NoError(t, m.EnableCT("dbo.claim_lines"))
	db := openAs(t, serve(t, m), "ehrsync")
	db.SetMaxOpenConns(4)
	ctx := context.Background()
	done := make(chan error, 5)
	go func() {
		for i := range 50 {
			tx := m.Begin()
			if err := tx.Insert("dbo.claim_lines", map[string]any{"claim_id": uuid.New(), "line_id": i, "practice_id": "0001"}); err != nil {
				done <- err
				return
			}
			if err := tx.Commit(); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for range 4 {
		go func() {
			for range 25 {
				var n int
				if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM cdc.lsn_time_mapping").Scan(&n); err != nil {
					done <- err
					return
				}
				rows, err := db.QueryContext(ctx, "SELECT TOP (@p1) [claim_id], [line_id] FROM [dbo].[claim_lines] WHERE [practice_id] IN (@p2) ORDER BY [claim_id], [line_id]",
					int64(10), mssql.VarChar("0001"))
				if err != nil {
					done <- err
					return
				}
				for rows.Next() {
				}
				rows.Close()
			}
			done <- nil
		}()
	}
	for range 5 {
		require.NoError(t, <-done)
	}
	var n int
	require.NoError(t, db.QueryRowContext(ctx, "SELECT COUNT(*) FROM cdc.lsn_time_mapping").Scan(&n))
	require.Equal(t, 50, n)
}
