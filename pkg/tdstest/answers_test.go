package tdstest_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/golang-sql/sqlexp"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

func TestErrors(t *testing.T) {
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		switch req.SQL {
		case "sql error":
			return nil, &tdstest.Error{Number: 547, State: 0, Class: 16, Message: "The INSERT statement conflicted with the FOREIGN KEY constraint."}
		case "go error":
			return nil, errors.New("unknown statement")
		case "raise fatal":
			return nil, &tdstest.Error{Number: 9002, State: 2, Class: 21, Message: "The transaction log for database is full."}
		}
		return nil, nil
	})
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)
	db.SetMaxOpenConns(1)

	for _, args := range [][]any{nil, {int64(1)}} { // batch and RPC
		_, err := db.Exec("sql error", args...)
		e := mssqlError(t, err)
		require.EqualValues(t, 547, e.Number)
		require.EqualValues(t, 0, e.State)
		require.EqualValues(t, 16, e.Class)
		require.Equal(t, "The INSERT statement conflicted with the FOREIGN KEY constraint.", e.Message)
		require.Equal(t, "TDSTEST", e.ServerName)
		require.EqualValues(t, 1, e.LineNo)
		require.Empty(t, s.Errors())

		_, err = db.Exec("go error", args...)
		e = mssqlError(t, err)
		require.EqualValues(t, 50000, e.Number)
		require.Equal(t, "unknown statement", e.Message)
		require.Len(t, s.Errors(), 1)
		require.EqualError(t, s.Errors()[0], "unknown statement")
		s = restart(t, s, h, &db)
	}

	// A fatal error (class 20 and above) ends the connection.
	_, err := db.Exec("raise fatal")
	require.EqualValues(t, 9002, mssqlError(t, err).Number)
	// As with SQL Server, the pool learns of it by the next statement's
	// failure on that connection.
	_, err = db.Exec("select 1")
	require.Error(t, err)
	_, err = db.Exec("select 1")
	require.NoError(t, err)
	require.Equal(t, 2, s.Logins())
}

// restart starts a fresh server (and pool) so that Errors starts empty.
func restart(t *testing.T, old *tdstest.Server, h tdstest.Handler, db **sql.DB) *tdstest.Server {
	(*db).Close()
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	*db = open(t, s)
	(*db).SetMaxOpenConns(1)
	return s
}

func TestInfoMessagesAndResultSets(t *testing.T) {
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		return []tdstest.Result{
			{Info: []tdstest.Error{{Number: 0, Class: 0, Message: "hello from PRINT"}}},
			{Columns: []tdstest.Column{{Name: "a", Type: typ(t, "int")}}, Rows: [][]any{{int64(1)}, {int64(2)}}},
			{Columns: []tdstest.Column{{Name: "b", Type: typ(t, "varchar(5)")}}, Rows: [][]any{{"x"}},
				Info: []tdstest.Error{{Number: 8153, State: 1, Class: 10, Message: "Warning: Null value is eliminated by an aggregate or other SET operation."}}},
		}, nil
	})
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)
	for _, args := range [][]any{nil, {int64(1)}} { // batch and RPC
		ctx := context.Background()
		msgs := &sqlexp.ReturnMessage{}
		rows, err := db.QueryContext(ctx, "select x", append([]any{msgs}, args...)...)
		require.NoError(t, err)
		var infos []int32
		var sets [][]string
		for active := true; active; {
			switch m := msgs.Message(ctx).(type) {
			case sqlexp.MsgNotice:
				infos = append(infos, m.Message.(mssql.Error).Number)
			case sqlexp.MsgNext:
				var set []string
				for rows.Next() {
					var v string
					require.NoError(t, rows.Scan(&v))
					set = append(set, v)
				}
				sets = append(sets, set)
			case sqlexp.MsgNextResultSet:
				active = rows.NextResultSet()
			case sqlexp.MsgError:
				t.Fatalf("error: %v", m.Error)
			}
		}
		require.NoError(t, rows.Close())
		require.Equal(t, []int32{0, 8153}, infos)
		require.Equal(t, [][]string{{"1", "2"}, {"x"}}, sets)
	}

	// Without a message queue: two result sets through NextResultSet.
	rows, err := db.Query("select x")
	require.NoError(t, err)
	defer rows.Close()
	var n int
	for rows.Next() {
		n++
	}
	require.True(t, rows.NextResultSet())
	for rows.Next() {
		n++
	}
	require.False(t, rows.NextResultSet())
	require.NoError(t, rows.Err())
	require.Equal(t, 3, n)
}

func TestRowsAffectedAndResultsThenError(t *testing.T) {
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		if req.SQL == "update t" {
			return []tdstest.Result{{RowsAffected: 3}, {RowsAffected: 4}}, nil
		}
		return []tdstest.Result{{Columns: []tdstest.Column{{Name: "a", Type: typ(t, "int")}}, Rows: [][]any{{int64(1)}}}},
			&tdstest.Error{Number: 8134, State: 1, Class: 16, Message: "Divide by zero error encountered."}
	})
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)
	for _, args := range [][]any{nil, {int64(1)}} {
		res, err := db.Exec("update t", args...)
		require.NoError(t, err)
		n, err := res.RowsAffected()
		require.NoError(t, err)
		require.EqualValues(t, 7, n)

		rows, err := db.Query("select x", args...)
		require.NoError(t, err)
		require.True(t, rows.Next())
		require.False(t, rows.Next())
		require.EqualValues(t, 8134, mssqlError(t, rows.Err()).Number)
		rows.Close()
	}
}

// txRecorder is a Handler and TxHandler that records the transaction
// requests and answers each statement with whether it runs in one.
type txRecorder struct {
	mu       sync.Mutex
	calls    []string
	failNext bool
}

func (r *txRecorder) record(s string) {
	r.mu.Lock()
	r.calls = append(r.calls, s)
	r.mu.Unlock()
}

func (r *txRecorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

func (r *txRecorder) Begin(s *tdstest.Session, iso tdstest.Isolation) error {
	r.record(fmt.Sprintf("begin %d", iso))
	if r.failNext {
		r.failNext = false
		return &tdstest.Error{Number: 3952, State: 1, Class: 16, Message: "Snapshot isolation transaction failed accessing database because snapshot isolation is not allowed in this database."}
	}
	return nil
}
func (r *txRecorder) Commit(s *tdstest.Session) error   { r.record("commit"); return nil }
func (r *txRecorder) Rollback(s *tdstest.Session) error { r.record("rollback"); return nil }

func (r *txRecorder) Handle(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
	r.record(req.SQL)
	return []tdstest.Result{{
		Columns: []tdstest.Column{{Name: "intx", Type: bitType}, {Name: "iso", Type: intType}},
		Rows:    [][]any{{req.Session.InTransaction, int64(req.Session.Isolation)}},
	}}, nil
}

func TestTransactions(t *testing.T) {
	rec := &txRecorder{}
	s := tdstest.Start(t, tdstest.Config{Handler: rec})
	db := open(t, s)
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	state := func(q interface {
		QueryRow(string, ...any) *sql.Row
	}) (bool, int) {
		var in bool
		var iso int
		require.NoError(t, q.QueryRow("select state").Scan(&in, &iso))
		return in, iso
	}

	tx, err := db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSnapshot})
	require.NoError(t, err)
	in, iso := state(tx)
	require.True(t, in)
	require.Equal(t, int(tdstest.IsolationSnapshot), iso)
	require.NoError(t, tx.Commit())
	in, _ = state(db)
	require.False(t, in)

	tx, err = db.BeginTx(ctx, nil)
	require.NoError(t, err)
	in, _ = state(tx)
	require.True(t, in)
	require.NoError(t, tx.Rollback())

	rec.failNext = true
	_, err = db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSnapshot})
	require.EqualValues(t, 3952, mssqlError(t, err).Number)
	in, _ = state(db)
	require.False(t, in)

	// The pool's reset of the connection put the default isolation back
	// before the second transaction (SQL Server 2014 and later do).
	require.Equal(t, []string{"begin 5", "select state", "commit", "select state", "begin 2", "select state", "rollback", "begin 5", "select state"}, rec.Calls())
	require.Equal(t, 1, s.Logins())
}

var (
	bitType = mustType("bit")
	intType = mustType("int")
)
