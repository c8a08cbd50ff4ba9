package tdstest_test

import (
	"database/sql"
	"os"
	"path/filepath"
	"testing"

	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// dsn is a go-mssqldb URL for the server with the query options given as
// name, value pairs.
func dsn(s *tdstest.Server, user, password string, opts ...string) string {
	return s.URL(user, password, append([]string{"dial timeout", "10"}, opts...)...)
}

// open opens a database/sql pool on the server; the test's cleanup closes
// it before the server.
func open(t *testing.T, s *tdstest.Server, opts ...string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlserver", dsn(s, "sa", "secret", opts...))
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// openB is open for a benchmark.
func openB(b *testing.B, s *tdstest.Server) (*sql.DB, error) {
	db, err := sql.Open("sqlserver", dsn(s, "sa", "secret"))
	if err == nil {
		b.Cleanup(func() { db.Close() })
	}
	return db, err
}

// certFile writes the server's certificate for the client's "certificate"
// option.
func certFile(t *testing.T, s *tdstest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(p, s.CertPEM(), 0o600))
	return p
}

func typ(t testing.TB, s string) schemas.Type {
	t.Helper()
	ty, err := schemas.ParseType(schemas.SQLServer, s)
	require.NoError(t, err)
	return ty
}

var _ = mssql.Error{}

func mustType(s string) schemas.Type {
	ty, err := schemas.ParseType(schemas.SQLServer, s)
	if err != nil {
		panic(err)
	}
	return ty
}
