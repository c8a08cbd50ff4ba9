package tdstest_test

import (
	"context"
	"database/sql"
	"errors"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// sessionEcho answers every statement with facts of its session.
func sessionEcho(t *testing.T) tdstest.Handler {
	return tdstest.HandlerFunc(func(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		s := req.Session
		return []tdstest.Result{{
			Columns: []tdstest.Column{
				{Name: "user", Type: typ(t, "nvarchar(128)")},
				{Name: "db", Type: typ(t, "nvarchar(128)")},
				{Name: "app", Type: typ(t, "nvarchar(128)")},
				{Name: "readonly", Type: typ(t, "bit")},
				{Name: "encrypted", Type: typ(t, "bit")},
				{Name: "packet", Type: typ(t, "int")},
			},
			Rows: [][]any{{s.User, s.Database, s.AppName, s.ReadOnlyIntent, s.Encrypted, int64(s.PacketSize)}},
		}}, nil
	})
}

type sessionFacts struct {
	User, DB, App       string
	ReadOnly, Encrypted bool
	Packet              int
}

func facts(t *testing.T, db *sql.DB) (sessionFacts, error) {
	t.Helper()
	var f sessionFacts
	err := db.QueryRowContext(context.Background(), "select facts").Scan(&f.User, &f.DB, &f.App, &f.ReadOnly, &f.Encrypted, &f.Packet)
	return f, err
}

func mssqlError(t *testing.T, err error) mssql.Error {
	t.Helper()
	var e mssql.Error
	require.True(t, errors.As(err, &e), "error %v (%T) is not an mssql.Error", err, err)
	return e
}

func TestLogin(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{
		Handler:   sessionEcho(t),
		Users:     map[string]string{"reader": "right"},
		Databases: []string{"Clinic", "other"},
	})
	t.Run("right password", func(t *testing.T) {
		db, err := sql.Open("sqlserver", dsn(s, "READER", "right", "database", "clinic", "app name", "ehrsync-test", "ApplicationIntent", "ReadOnly", "packet size", "8192"))
		require.NoError(t, err)
		defer db.Close()
		f, err := facts(t, db)
		require.NoError(t, err)
		require.Equal(t, sessionFacts{User: "READER", DB: "Clinic", App: "ehrsync-test", ReadOnly: true, Packet: 8192}, f)
	})
	t.Run("default database and intent", func(t *testing.T) {
		db, err := sql.Open("sqlserver", dsn(s, "reader", "right"))
		require.NoError(t, err)
		defer db.Close()
		f, err := facts(t, db)
		require.NoError(t, err)
		require.Equal(t, "Clinic", f.DB)
		require.False(t, f.ReadOnly)
		require.Equal(t, 4096, f.Packet)
	})
	t.Run("wrong password", func(t *testing.T) {
		before := s.Logins()
		db, err := sql.Open("sqlserver", dsn(s, "reader", "wrong"))
		require.NoError(t, err)
		defer db.Close()
		_, err = facts(t, db)
		require.Error(t, err)
		e := mssqlError(t, err)
		require.EqualValues(t, 18456, e.Number)
		require.EqualValues(t, 14, e.Class)
		require.EqualValues(t, 1, e.State)
		require.Contains(t, e.Message, "Login failed for user 'reader'.")
		require.Greater(t, s.Logins(), before)
	})
	t.Run("unknown database", func(t *testing.T) {
		db, err := sql.Open("sqlserver", dsn(s, "reader", "right", "database", "nosuch"))
		require.NoError(t, err)
		defer db.Close()
		_, err = facts(t, db)
		e := mssqlError(t, err)
		require.EqualValues(t, 18456, e.Number)
		var numbers []int32
		for _, x := range e.All {
			numbers = append(numbers, x.Number)
		}
		require.Equal(t, []int32{4060, 18456}, numbers)
		require.Equal(t, `Cannot open database "nosuch" requested by the login. The login failed.`, e.All[0].Message)
	})
}

func TestEncryption(t *testing.T) {
	cases := []struct {
		name      string
		server    tdstest.Encryption
		opts      []string
		encrypted bool
		fails     bool
	}{
		{name: "disable", server: tdstest.EncryptOff, opts: []string{"encrypt", "disable"}},
		{name: "false: login only", server: tdstest.EncryptOff, opts: []string{"encrypt", "false", "TrustServerCertificate", "true"}},
		{name: "true with CA", server: tdstest.EncryptOff, opts: []string{"encrypt", "true", "hostNameInCertificate", "localhost"}, encrypted: true},
		{name: "true trusting", server: tdstest.EncryptOff, opts: []string{"encrypt", "true", "TrustServerCertificate", "true"}, encrypted: true},
		{name: "strict", server: tdstest.EncryptOff, opts: []string{"encrypt", "strict", "hostNameInCertificate", "localhost"}, encrypted: true},
		{name: "strict against a forced-strict server", server: tdstest.EncryptStrict, opts: []string{"encrypt", "strict", "hostNameInCertificate", "localhost"}, encrypted: true},
		{name: "true against a forced-strict server", server: tdstest.EncryptStrict, opts: []string{"encrypt", "true", "TrustServerCertificate", "true"}, fails: true},
		{name: "false against forced encryption", server: tdstest.EncryptOn, opts: []string{"encrypt", "false", "TrustServerCertificate", "true"}, encrypted: true},
		{name: "true against required", server: tdstest.EncryptRequired, opts: []string{"encrypt", "true", "TrustServerCertificate", "true"}, encrypted: true},
		{name: "disable against forced encryption", server: tdstest.EncryptOn, opts: []string{"encrypt", "disable"}, fails: true},
		{name: "true against no certificate", server: tdstest.EncryptNotSupported, opts: []string{"encrypt", "true", "TrustServerCertificate", "true"}, fails: true},
		{name: "false against no certificate", server: tdstest.EncryptNotSupported, opts: []string{"encrypt", "false"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tdstest.Start(t, tdstest.Config{Handler: sessionEcho(t), Encryption: tc.server})
			opts := append([]string{"certificate", certFile(t, s)}, tc.opts...)
			db := open(t, s, opts...)
			f, err := facts(t, db)
			if tc.fails {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.encrypted, f.Encrypted)
			// A second statement on the same connection.
			_, err = facts(t, db)
			require.NoError(t, err)
		})
	}
}

func TestEncryptionChecksTheCertificate(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{Handler: sessionEcho(t)})
	other := tdstest.Start(t, tdstest.Config{})
	// The other server's CA does not sign this server's certificate.
	for _, enc := range []string{"true", "false", "strict"} {
		t.Run("encrypt="+enc, func(t *testing.T) {
			// With encrypt=false only the login is encrypted, but with TLS all
			// the same.
			db := open(t, s, "encrypt", enc, "certificate", certFile(t, other), "hostNameInCertificate", "localhost")
			_, err := facts(t, db)
			require.Error(t, err)
			require.Contains(t, err.Error(), "certificate")
		})
	}
}

func TestStrictAgainstAPre2022Server(t *testing.T) {
	s := tdstest.Start(t, tdstest.Config{Handler: sessionEcho(t), NoStrict: true, Version: tdstest.SQLServer2019})
	db := open(t, s, "encrypt", "strict", "TrustServerCertificate", "true")
	_, err := facts(t, db)
	require.Error(t, err)
	require.Zero(t, s.Logins())
	// The same server takes TDS 7.4 with encryption.
	db = open(t, s, "encrypt", "true", "TrustServerCertificate", "true")
	f, err := facts(t, db)
	require.NoError(t, err)
	require.True(t, f.Encrypted)
}
