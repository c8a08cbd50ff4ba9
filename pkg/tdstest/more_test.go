package tdstest_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

func TestPacketSizes(t *testing.T) {
	big := bytes.Repeat([]byte{0xAB, 0xCD, 0xEF}, 40_000)
	text := strings.Repeat("Zoë ", 5000)
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		if req.SQL == "select size" {
			return []tdstest.Result{{Columns: []tdstest.Column{{Name: "n", Type: mustType("int")}}, Rows: [][]any{{int64(req.Session.PacketSize)}}}}, nil
		}
		res := tdstest.Result{Columns: []tdstest.Column{{Name: "b", Type: mustType("varbinary(max)")}, {Name: "s", Type: mustType("nvarchar(max)")}}}
		for range 3 {
			res.Rows = append(res.Rows, []any{big, text})
		}
		return []tdstest.Result{res}, nil
	})
	// Below 4096 encryption fails with go-mssqldb as with SQL Server: the
	// TLS handshake comes in 4096-byte packets, before the size is agreed.
	for _, tc := range []struct {
		size, want int
		enc        string
	}{{512, 512, "disable"}, {32767, 32767, "disable"}, {32767, 16383, "true"}, {8192, 8192, "true"}} {
		s := tdstest.Start(t, tdstest.Config{Handler: h})
		db := open(t, s, "packet size", itoa(tc.size), "encrypt", tc.enc, "TrustServerCertificate", "true")
		var size int
		require.NoError(t, db.QueryRow("select size").Scan(&size))
		require.Equal(t, tc.want, size)
		rows, err := db.Query("select b, s from t")
		require.NoError(t, err)
		n := 0
		for rows.Next() {
			var b []byte
			var str string
			require.NoError(t, rows.Scan(&b, &str))
			require.Equal(t, big, b)
			require.Equal(t, text, str)
			n++
		}
		require.NoError(t, rows.Err())
		rows.Close()
		require.Equal(t, 3, n)
		// A large parameter in the client's packets of that size.
		_, err = db.Exec("insert t values (@p1)", big)
		require.NoError(t, err)
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestStallRelease(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{Handler: newCounting()})
	db := open(t, s)
	stall := tdstest.StallAfter(3)
	s.Inject(stall)
	go func() {
		<-stall.Reached()
		stall.Release()
	}()
	require.Equal(t, 10, count(t, db, "select 10"))
	// A stall beyond the rows a statement has comes before its end.
	late := tdstest.StallAfter(100)
	s.Inject(late)
	go func() {
		<-late.Reached()
		late.Release()
	}()
	require.Equal(t, 2, count(t, db, "select 2"))
}

func TestConcurrentConnections(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{Handler: newCounting()})
	db := open(t, s)
	db.SetMaxOpenConns(4)
	// database/sql keeps 2 idle connections by default and closes the
	// others as they come back: a later query would log in again.
	db.SetMaxIdleConns(4)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				rows, err := db.Query("select 50")
				if err != nil {
					errs <- err
					return
				}
				n := 0
				for rows.Next() {
					n++
				}
				rows.Close()
				if n != 50 {
					errs <- io.ErrUnexpectedEOF
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.LessOrEqual(t, s.Logins(), 4)
}

func TestNilHandler(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{})
	db := open(t, s)
	res, err := db.Exec("anything at all")
	require.NoError(t, err)
	n, err := res.RowsAffected()
	require.NoError(t, err)
	require.Zero(t, n)
	require.NoError(t, db.Ping())
}

// prelogin sends a PRELOGIN with the ENCRYPTION option enc on a raw
// connection and returns the server's options.
func prelogin(t *testing.T, s *tdstest.Server, enc byte) map[byte][]byte {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
	payload := []byte{
		0, 0, 11, 0, 6, // VERSION
		1, 0, 17, 0, 1, // ENCRYPTION
		0xFF,
		16, 0, 0, 0, 0, 0, // version
		enc,
	}
	hdr := []byte{0x12, 1, 0, 0, 0, 0, 1, 0}
	binary.BigEndian.PutUint16(hdr[2:], uint16(8+len(payload)))
	_, err = c.Write(append(hdr, payload...))
	require.NoError(t, err)
	_, err = io.ReadFull(c, hdr)
	require.NoError(t, err)
	require.EqualValues(t, 0x04, hdr[0], "a reply packet")
	require.EqualValues(t, 1, hdr[1], "end of message")
	body := make([]byte, binary.BigEndian.Uint16(hdr[2:])-8)
	_, err = io.ReadFull(c, body)
	require.NoError(t, err)
	opts := map[byte][]byte{}
	for i := 0; body[i] != 0xFF; i += 5 {
		off, n := binary.BigEndian.Uint16(body[i+1:]), binary.BigEndian.Uint16(body[i+3:])
		opts[body[i]] = body[off : off+n]
	}
	return opts
}

func TestPreloginAnswer(t *testing.T) {
	const off, on, notSup, req = 0, 1, 2, 3
	for _, tc := range []struct {
		server       tdstest.Encryption
		client, want byte
	}{
		{tdstest.EncryptOff, off, off}, {tdstest.EncryptOff, on, on}, {tdstest.EncryptOff, notSup, notSup},
		{tdstest.EncryptOn, off, req}, {tdstest.EncryptOn, on, on}, {tdstest.EncryptOn, notSup, req},
		{tdstest.EncryptRequired, on, req},
		{tdstest.EncryptNotSupported, off, notSup}, {tdstest.EncryptNotSupported, on, notSup},
	} {
		s := tdstest.Start(t, tdstest.Config{Encryption: tc.server, Version: tdstest.SQLServer2016})
		opts := prelogin(t, s, tc.client)
		require.Equal(t, []byte{tc.want}, opts[1], "server %d, client %d", tc.server, tc.client)
		require.Equal(t, []byte{13, 0, 0x06, 0x41, 0, 0}, opts[0], "VERSION 13.0.1601")
		require.Equal(t, []byte{0}, opts[4], "MARS off")
	}
}

func TestSessionChangesByStatements(t *testing.T) {
	echo := sessionEcho(t)
	h := tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		if db, ok := strings.CutPrefix(req.SQL, "use "); ok {
			req.Session.Database = db
			return nil, nil
		}
		return echo.Handle(ctx, req)
	})
	s := tdstest.Start(t, tdstest.Config{Handler: h, Databases: []string{"clinic", "archive"}})
	db := open(t, s)
	db.SetMaxOpenConns(1)
	ctx := context.Background()
	conn, err := db.Conn(ctx)
	require.NoError(t, err)
	_, err = conn.ExecContext(ctx, "use archive")
	require.NoError(t, err)
	var user, name string
	require.NoError(t, conn.QueryRowContext(ctx, "select facts").Scan(&user, &name, new(string), new(bool), new(bool), new(int)))
	require.Equal(t, "archive", name)
	require.NoError(t, conn.Close())
	// The pool resets the connection before its next use: the login's
	// database again.
	f, err := facts(t, db)
	require.NoError(t, err)
	require.Equal(t, "clinic", f.DB)
	require.Equal(t, 1, s.Logins())
}

func TestHandlerPanicFailsTheTest(t *testing.T) {
	fake := &recordingTB{TB: t}
	s := tdstest.Start(fake, tdstest.Config{Handler: tdstest.HandlerFunc(func(context.Context, *tdstest.Request) ([]tdstest.Result, error) {
		panic("model bug")
	})})
	db := open(t, s)
	_, err := db.Exec("select 1")
	require.Error(t, err)
	s.Close()
	require.True(t, fake.failed, "the panic is reported to the test")
	require.Len(t, s.Errors(), 1)
	require.Contains(t, s.Errors()[0].Error(), "model bug")
}

// recordingTB records Errorf instead of failing the test.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	failed bool
}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.failed = true
	r.mu.Unlock()
}

func TestForcedStrictAnswersPlainTDSWithTLS(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{Encryption: tdstest.EncryptStrict})
	c, err := net.Dial("tcp", s.Addr())
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(time.Minute)))
	_, err = c.Write([]byte{0x12, 1, 0, 8, 0, 0, 1, 0})
	require.NoError(t, err)
	head, err := io.ReadAll(c)
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(head), 2)
	require.Equal(t, []byte{0x15, 0x03}, head[:2], "a TLS alert record")
}
