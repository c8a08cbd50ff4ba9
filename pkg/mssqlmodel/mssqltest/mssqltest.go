// Package mssqltest serves a SQL Server model (package mssqlmodel) over TDS
// (package tdstest) on loopback and opens ehrsync's own source connection
// to it (package source: its dialer, TLS verification and go-mssqldb), so
// that a test reads the model exactly as production reads a SQL Server.
package mssqltest

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// User and Password are the login the server accepts.
const (
	User     = "ehrsync_reader"
	Password = "Tds-S3ntinel-Pw-51d0"
)

// Server is a model served over TDS.
type Server struct {
	Model *mssqlmodel.Model
	TDS   *tdstest.Server
	// Source reaches the server directly with TLS required and the server's
	// certificate verified (its CA file written for the test).
	Source config.Source
}

// Start serves a new model with opts; the test's cleanup stops it. The
// server encrypts (TLS inside TDS, as SQL Server with a certificate does).
func Start(t testing.TB, opts mssqlmodel.Options) *Server {
	t.Helper()
	return Serve(t, mssqlmodel.New(opts))
}

// Serve serves m.
func Serve(t testing.TB, m *mssqlmodel.Model) *Server {
	t.Helper()
	return ServeHandler(t, m, m.Handler())
}

// ServeHandler serves m through h, a handler that forwards to m's (a
// recorder, a hook): h answers every statement; m is the Server's Model.
// A statement the model does not know (or a value it cannot send) is a Go
// error from the handler: the client sees error 50000, and the test fails
// at its end, even when the code under test recovered from the error.
func ServeHandler(t testing.TB, m *mssqlmodel.Model, h tdstest.Handler) *Server {
	t.Helper()
	srv := tdstest.Start(t, tdstest.Config{
		Handler:    h,
		Users:      map[string]string{User: Password},
		Databases:  []string{m.Database()},
		Encryption: tdstest.EncryptOn,
	})
	t.Cleanup(func() {
		for _, err := range srv.Errors() {
			t.Errorf("mssqltest: the model could not answer a statement: %v", err)
		}
	})
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, srv.CertPEM(), 0o600))
	return &Server{Model: m, TDS: srv, Source: config.Source{
		Dialect: config.SQLServer, Via: config.ViaDirect, Host: srv.Host(), Port: srv.Port(),
		Database: m.Database(), User: User, Password: config.NewSecret(Password),
		TLS:            config.TLS{Mode: config.TLSRequire, CAFile: ca},
		MaxConnections: 4, ConnectTimeout: 10 * time.Second, QueryTimeout: time.Minute,
	}}
}

// Open opens ehrsync's connection pool to the server; the test's cleanup
// closes it.
func (s *Server) Open(t testing.TB) *sql.DB {
	t.Helper()
	db, err := source.Open(context.Background(), s.Source)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}
