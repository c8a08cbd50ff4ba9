package tdstest_test

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// counting answers "select n" with a streamed result of n rows (one
// column, the row number) and anything else with one row; it records
// whether a Stream saw its ctx cancelled.
type counting struct {
	cancelled chan struct{}
}

func newCounting() *counting { return &counting{cancelled: make(chan struct{}, 16)} }

func (c *counting) Handle(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
	cols := []tdstest.Column{{Name: "n", Type: mustType("bigint")}}
	var n int64 = 1
	if v, ok := cutPrefix(req.SQL, "select "); ok {
		if x, err := strconv.ParseInt(v, 10, 64); err == nil {
			n = x
		}
	}
	var i int64
	return []tdstest.Result{{Columns: cols, Stream: func(ctx context.Context, row []any) (bool, error) {
		if ctx.Err() != nil {
			c.cancelled <- struct{}{}
			return false, ctx.Err()
		}
		if i == n {
			return false, nil
		}
		i++
		row[0] = i
		return true, nil
	}}}, nil
}

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

func count(t *testing.T, db *sql.DB, q string) int {
	t.Helper()
	rows, err := db.Query(q)
	require.NoError(t, err)
	defer rows.Close()
	n := 0
	for rows.Next() {
		n++
	}
	require.NoError(t, rows.Err())
	return n
}

func TestCancelAStalledQuery(t *testing.T) {
	h := newCounting()
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)
	db.SetMaxOpenConns(1)
	stall := tdstest.StallAfter(2).On("select 100")
	s.Inject(stall)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rows, err := db.QueryContext(ctx, "select 100")
	require.NoError(t, err)
	require.True(t, rows.Next())
	require.True(t, rows.Next())
	<-stall.Reached()
	cancel()
	require.False(t, rows.Next())
	require.ErrorIs(t, rows.Err(), context.Canceled)
	rows.Close()

	// The same pooled connection answers the next query.
	require.Equal(t, 3, count(t, db, "select 3"))
	require.Equal(t, 1, s.Logins())
	require.Empty(t, s.Errors())
}

func TestCancelARunningHandler(t *testing.T) {
	started := make(chan struct{})
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		if req.SQL == "select slow" {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return []tdstest.Result{{RowsAffected: 1}}, nil
	})
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)
	db.SetMaxOpenConns(1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	_, err := db.ExecContext(ctx, "select slow")
	require.ErrorIs(t, err, context.Canceled)
	_, err = db.Exec("select fast")
	require.NoError(t, err)
	require.Equal(t, 1, s.Logins())
	require.Empty(t, s.Errors(), "the Handler's ctx error after an attention is not a Handler error")
}

func TestCloseRowsEarly(t *testing.T) {
	h := newCounting()
	s := tdstest.Start(t, tdstest.Config{Handler: h})
	db := open(t, s)
	db.SetMaxOpenConns(1)
	for range 5 {
		rows, err := db.Query("select 1000000")
		require.NoError(t, err)
		require.True(t, rows.Next())
		require.NoError(t, rows.Close()) // an attention stops the stream
	}
	require.Equal(t, 2, count(t, db, "select 2"))
	require.Equal(t, 1, s.Logins())
}

func TestDelayFirstRow(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{Handler: newCounting()})
	db := open(t, s)
	db.SetMaxOpenConns(1)

	delay := tdstest.DelayFirstRow(50 * time.Millisecond)
	s.Inject(delay)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var n int64
	require.NoError(t, db.QueryRowContext(ctx, "select 1").Scan(&n))
	require.EqualValues(t, 1, n)
	select {
	case <-delay.Reached():
	default:
		t.Fatal("the delay was not applied")
	}

	// A statement without rows is delayed before its end.
	plain := tdstest.Start(t, tdstest.Config{})
	exec := tdstest.DelayFirstRow(time.Millisecond)
	plain.Inject(exec)
	_, err := open(t, plain).Exec("update t set a = 1")
	require.NoError(t, err)
	select {
	case <-exec.Reached():
	default:
		t.Fatal("the delay was not applied")
	}

	// Cancelled during the delay: the attention is acknowledged and the
	// connection survives.
	long := tdstest.DelayFirstRow(time.Hour)
	s.Inject(long)
	cctx, cancelNow := context.WithCancel(context.Background())
	go func() {
		<-long.Reached()
		cancelNow()
	}()
	err = db.QueryRowContext(cctx, "select 1").Scan(&n)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 2, count(t, db, "select 2"))
	require.Equal(t, 1, s.Logins())

	// A deadline shorter than the delay: the driver cancels too, but takes
	// a deadline (a net.Error to it) for a broken connection and the pool
	// opens another, as it would with SQL Server.
	s.Inject(tdstest.DelayFirstRow(time.Hour))
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	err = db.QueryRowContext(short, "select 1").Scan(&n)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, 2, count(t, db, "select 2"))
	require.Equal(t, 2, s.Logins())
}

func TestDropConnection(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{Handler: newCounting()})
	db := open(t, s)
	db.SetMaxOpenConns(1)
	require.Equal(t, 1, count(t, db, "select 1"))

	s.Inject(tdstest.DropConnection().On("select 5"))
	_, err := db.Query("select 5")
	require.Error(t, err)
	require.Equal(t, 5, count(t, db, "select 5"), "the pool opens a new connection")
	require.Equal(t, 2, s.Logins())

	drop := tdstest.DropAfter(3)
	s.Inject(drop)
	rows, err := db.Query("select 10")
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		n++
	}
	require.Error(t, rows.Err())
	require.Equal(t, 3, n)
	rows.Close()
	require.Equal(t, 4, count(t, db, "select 4"))
	require.Equal(t, 3, s.Logins())
}

func TestBadServers(t *testing.T) {
	for _, f := range []struct {
		name  string
		fault func() *tdstest.Fault
	}{{"garbage", tdstest.Garbage}, {"http", tdstest.HTTP}} {
		for _, enc := range []string{"disable", "true", "strict"} {
			t.Run(f.name+" "+enc, func(t *testing.T) {
				s := tdstest.Start(t, tdstest.Config{Handler: newCounting()})
				fault := f.fault()
				s.Inject(fault)
				db := open(t, s, "encrypt", enc, "certificate", certFile(t, s), "hostNameInCertificate", "localhost")
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				err := db.PingContext(ctx)
				require.Error(t, err)
				require.False(t, errors.Is(err, context.DeadlineExceeded), "the connect hung: %v", err)
				<-fault.Reached()
				require.Zero(t, s.Logins())
				// The fault is spent: the next connection works.
				require.NoError(t, db.PingContext(ctx))
			})
		}
	}
}

func TestRouting(t *testing.T) {
	replica := tdstest.Start(t, tdstest.Config{Handler: sessionEcho(t), Databases: []string{"clinic"}})
	cert := replica.Certificate()
	listener := tdstest.Start(t, tdstest.Config{
		Certificate: &cert, // the replicas' certificate, trusted by the client
		Handler: tdstest.HandlerFunc(func(context.Context, *tdstest.Request) ([]tdstest.Result, error) {
			return nil, errors.New("the listener answered")
		}),
		Databases: []string{"clinic"},
		Route: func(s *tdstest.Session) *tdstest.Route {
			if !s.ReadOnlyIntent {
				return nil
			}
			return &tdstest.Route{Host: replica.Host(), Port: replica.Port()}
		},
	})
	for _, enc := range []string{"disable", "true"} {
		t.Run(enc, func(t *testing.T) {
			before, beforeReplica := listener.Logins(), replica.Logins()
			db := open(t, listener, "database", "clinic", "ApplicationIntent", "ReadOnly", "encrypt", enc, "certificate", certFile(t, listener))
			f, err := facts(t, db)
			require.NoError(t, err)
			require.True(t, f.ReadOnly)
			require.Equal(t, "clinic", f.DB)
			require.Equal(t, before+1, listener.Logins())
			require.Equal(t, beforeReplica+1, replica.Logins())
		})
	}
	require.Empty(t, listener.Errors())
}
