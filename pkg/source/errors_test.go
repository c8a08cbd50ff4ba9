package source_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/source"
)

func TestClassify(t *testing.T) {
	ms := func(n int32) error {
		return fmt.Errorf("query: %w", mssql.Error{Number: n, Message: "text that may quote a value: SENTINEL"})
	}
	pg := func(code string) error { return fmt.Errorf("query: %w", &pgconn.PgError{Code: code}) }
	tests := []struct {
		name      string
		err       error
		want      *source.Class
		transient bool
	}{
		{"nil", nil, nil, false},
		{"mssql login failed 18456", ms(18456), source.ClassLoginFailed, false},
		{"mssql password expired 18487", ms(18487), source.ClassLoginFailed, false},
		{"mssql login locked 18486", ms(18486), source.ClassLoginFailed, false},
		{"mssql cannot open database 4060", ms(4060), source.ClassDatabase, false},
		{"mssql no access to database 916", ms(916), source.ClassDatabase, false},
		{"mssql select denied 229", ms(229), source.ClassPermission, false},
		{"mssql column denied 230", ms(230), source.ClassPermission, false},
		{"mssql no permission 297", ms(297), source.ClassPermission, false},
		{"mssql deadlock victim 1205", ms(1205), source.ClassTransient, true},
		{"secret file open to others", fmt.Errorf("source password: %w", &secrets.PermissionError{Path: "/etc/ehrsync/pw", Mode: 0o644}), source.ClassSecretFileOpen, false},
		{"mssql snapshot: object altered by DDL 3961", ms(3961), source.ClassTransient, true},
		{"mssql snapshot isolation not allowed 3952", ms(3952), source.ClassTransient, true},
		{"mssql ag secondary not readable 976", ms(976), source.ClassAGNotReadable, false},
		{"mssql ag secondary read-intent only 978", ms(978), source.ClassAGIntent, false},
		{"mssql ag primary refuses read-intent 979", ms(979), source.ClassAGIntent, false},
		{"mssql ag no readable secondary online 982", ms(982), source.ClassAGResolving, true},
		{"mssql ag replica resolving 983", ms(983), source.ClassAGResolving, true},
		{"mssql ag 976 at login", &source.ConnectError{Err: mssql.Error{Number: 976, Class: 14}}, source.ClassAGNotReadable, false},
		{"not tds", &source.ConnectError{Err: io.EOF, Seen: &source.NotTDSError{Addr: "x:1", Answer: "an HTTP response", Err: io.EOF}}, source.ClassNotSQLServer, false},
		{"strict unsupported", &source.ConnectError{Err: io.EOF, Seen: &source.StrictUnsupportedError{Addr: "x:1", Err: io.EOF}}, source.ClassTLSStrictUnsupported, false},
		{"routed through a relay", &source.ConnectError{Err: &source.RoutingError{Via: config.ViaRelay, Routed: "replica:1433"}}, source.ClassReadOnlyRouting, false},
		{"routed twice", &source.ConnectError{Err: &source.RoutingError{Via: config.ViaDirect, Routed: "replica:1433", Again: true}}, source.ClassReadOnlyRouting, false},
		{"mssql ct not enabled 4998", ms(4998), source.ClassCTDisabled, false},
		{"mssql cdc not enabled 22901", ms(22901), source.ClassCDCDisabled, false},
		{"mssql cdc not enabled on the table 22985", ms(22985), source.ClassCDCDisabled, false},
		{"mssql cdc needs sysadmin 22902", ms(22902), source.ClassPermission, false},
		{"mssql login in All chain", fmt.Errorf("x: %w", mssql.Error{Number: 1, All: []mssql.Error{{Number: 18456}}}), source.ClassLoginFailed, false},
		{"mssql unknown number", ms(50000), source.ClassUnknown, false},
		{"pg 28P01", pg("28P01"), source.ClassLoginFailed, false},
		{"pg 28000", pg("28000"), source.ClassLoginFailed, false},
		{"pg 3D000", pg("3D000"), source.ClassDatabase, false},
		{"pg 42501", pg("42501"), source.ClassPermission, false},
		{"pg 40001", pg("40001"), source.ClassTransient, true},
		{"pg 40P01", pg("40P01"), source.ClassTransient, true},
		{"pg 55P03", pg("55P03"), source.ClassTransient, true},
		{"pg 57P01", pg("57P01"), source.ClassTransient, true},
		{"pg 08006", pg("08006"), source.ClassTransient, true},
		{"pg 57014", pg("57014"), source.ClassQueryTimeout, true},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), source.ClassTransient, true},
		{"unexpected eof", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), source.ClassTransient, true},
		{"query deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), source.ClassQueryTimeout, true},
		{"connect deadline", &source.ConnectError{Err: context.DeadlineExceeded}, source.ClassConnectTimeout, true},
		{"dns", &source.DialError{Hop: source.HopServer, Err: &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}}, source.ClassDNS, true},
		{"relay refused", &source.DialError{Hop: source.HopRelay, Err: syscall.ECONNREFUSED}, source.ClassRelayUnreachable, true},
		{"bastion refused", &source.DialError{Hop: source.HopBastion, Err: syscall.ECONNREFUSED}, source.ClassBastionUnreachable, true},
		{"server refused", &source.DialError{Hop: source.HopServer, Err: syscall.ECONNREFUSED}, source.ClassServerUnreachable, true},
		{"upstream closed", &source.ConnectError{Seen: &source.UpstreamClosedError{}, Err: io.EOF}, source.ClassRelayUpstream, true},
		{"x509 expired", &source.TLSError{Err: x509.CertificateInvalidError{Reason: x509.Expired}}, source.ClassTLSExpired, false},
		{"x509 host", &source.TLSError{Err: x509.HostnameError{Host: "x", Certificate: &x509.Certificate{}}}, source.ClassTLSWrongHost, false},
		{"x509 unknown ca", fmt.Errorf("tls: %w", x509.UnknownAuthorityError{}), source.ClassTLSUnknownCA, false},
		{"secret unset", fmt.Errorf("password: %w", config.ErrSecretUnset), source.ClassSecret, false},
		{"secret no key", fmt.Errorf("password: %w", secrets.ErrNoKey), source.ClassSecret, false},
		{"host key", fmt.Errorf("ssh: %w", source.ErrHostKey), source.ClassSSHHostKey, false},
		{"capture agent", source.ErrCaptureAgentStopped, source.ClassCaptureAgent, false},
		{"permission error", &source.PermissionError{Permission: "SELECT", Grant: "GRANT SELECT"}, source.ClassPermission, false},
		{"other", errors.New("boom"), source.ClassUnknown, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := source.Classify(tt.err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.transient, source.IsTransient(tt.err))
		})
	}
}

func TestClassesDocumented(t *testing.T) {
	seen := map[string]bool{}
	for _, c := range source.Classes() {
		require.NotEmpty(t, c.Code)
		require.NotEmpty(t, c.Cause, c.Code)
		require.NotEmpty(t, c.Fix, c.Code)
		require.False(t, seen[c.Code], "duplicate code %s", c.Code)
		seen[c.Code] = true
	}
}

// TestClassForSource: the classes a PostgreSQL source can meet on the way
// to its server name neither SQL Server nor its port 1433, and name the
// source's port; for SQL Server on 1433 they read as the classes do, and
// on another port name that port.
func TestClassForSource(t *testing.T) {
	path := []*source.Class{source.ClassConnectTimeout, source.ClassRelayUnreachable, source.ClassRelayUpstream,
		source.ClassServerUnreachable, source.ClassBastionUnreachable, source.ClassDNS, source.ClassTLSExpired,
		source.ClassTLSWrongHost, source.ClassTLSUnknownCA, source.ClassTLS, source.ClassLoginFailed, source.ClassDatabase,
		source.ClassPermission, source.ClassSecret, source.ClassQueryTimeout, source.ClassTransient}
	pg := config.Source{Dialect: config.Postgres, Via: config.ViaDirect, Port: 5433}
	for _, c := range path {
		got := c.For(pg)
		require.Equal(t, c.Code, got.Code)
		for _, text := range []string{got.Cause, got.Fix} {
			require.NotContains(t, text, "1433", c.Code)
			require.NotContains(t, text, "SQL Server", c.Code)
			require.NotContains(t, text, "18456", c.Code)
		}
	}
	require.Contains(t, source.ClassServerUnreachable.For(pg).Fix, "on 5433")
	require.Contains(t, source.ClassConnectTimeout.For(pg).Fix, "443/5433")
	require.Contains(t, source.ClassRelayUpstream.For(pg).Fix, "nc -vz PGHOST 5432; check that PostgreSQL is running")
	require.Contains(t, source.ClassLoginFailed.For(pg).Fix, "pg_hba.conf")

	ms := config.Source{Dialect: config.SQLServer, Via: config.ViaDirect, Port: 1433}
	for _, c := range source.Classes() {
		require.Equal(t, *c, *c.For(ms), c.Code)
	}
	ms.Port = 14330
	require.Contains(t, source.ClassServerUnreachable.For(ms).Fix, "on 14330")
}
