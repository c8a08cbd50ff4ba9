package source_test

// Connections to SQL Server proven through go-mssqldb against tdstest's
// TDS server on loopback (directly, through a relay address, or through
// the in-process SSH server).

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/microsoft/go-mssqldb/integratedauth"
	"github.com/microsoft/go-mssqldb/integratedauth/krb5"
	"github.com/microsoft/go-mssqldb/msdsn"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
	"github.com/ehrsync/ehrsync/schemas"
)

// answer answers every statement with one int column holding 1 (the
// driver's ping, SELECT 1 and whatever else the tests send).
var answer = tdstest.HandlerFunc(func(context.Context, *tdstest.Request) ([]tdstest.Result, error) {
	return []tdstest.Result{{Columns: []tdstest.Column{{Name: "n", Type: schemas.Type{Name: "int"}}}, Rows: [][]any{{int64(1)}}}}, nil
})

// startTDS starts a TDS server that accepts ehrsync's login (the sentinel
// password) and answers with answer unless cfg says otherwise.
func startTDS(t *testing.T, cfg tdstest.Config) *tdstest.Server {
	t.Helper()
	if cfg.Handler == nil {
		cfg.Handler = answer
	}
	if cfg.Users == nil {
		cfg.Users = map[string]string{"ehrsync": sentinel}
	}
	return tdstest.Start(t, cfg)
}

// tdsSource is a SQL Server source at srv reached via via (relay and
// direct connect to srv itself; ssh goes through a fresh SSH server), with
// TLS mode and srv's certificates as the CA (added to cas, if any).
func tdsSource(t *testing.T, srv *tdstest.Server, via config.Via, mode config.TLSMode, cas ...*tdstest.Server) config.Source {
	t.Helper()
	src := testSource(t, config.SQLServer, via, srv.Addr())
	if via == config.ViaSSH {
		src, _ = viaSSH(t, srv.Addr())
	}
	src.TLS = config.TLS{Mode: mode}
	if mode != config.TLSDisable {
		pem := srv.CertPEM()
		for _, s := range cas {
			pem = append(pem, s.CertPEM()...)
		}
		p := filepath.Join(t.TempDir(), "ca.pem")
		require.NoError(t, os.WriteFile(p, pem, 0o600))
		src.TLS.CAFile = p
	}
	return src
}

// selectOne runs SELECT 1 on db.
func selectOne(ctx context.Context, db *sql.DB) error {
	var n int
	if err := db.QueryRowContext(ctx, "SELECT 1").Scan(&n); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("SELECT 1 gave %d", n)
	}
	return nil
}

// TestSSHToSQLServer (D1): through the SSH tunnel, go-mssqldb logs in and
// queries with every TLS mode. The driver arms read and write deadlines
// on the connection ehrsync hands it; an SSH channel refuses them, so
// only strict (whose TLS bypasses the driver's deadline wrapper) used to
// log in.
func TestSSHToSQLServer(t *testing.T) {
	for _, mode := range []config.TLSMode{config.TLSDisable, config.TLSRequire, config.TLSStrict} {
		t.Run(string(mode), func(t *testing.T) {
			srv := startTDS(t, tdstest.Config{})
			src, bastion := viaSSH(t, srv.Addr())
			src.TLS = tdsSource(t, srv, config.ViaDirect, mode).TLS
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the pool, the tunnel and its pipes stop on Close
			ctx := context.Background()
			db, err := source.Open(ctx, src)
			require.NoError(t, err)
			defer db.Close()
			require.NoError(t, selectOne(ctx, db))
			require.Equal(t, 1, srv.Logins())
			require.Equal(t, 1, bastion.Logins())
		})
	}
}

// TestQuerySlowerThanConnectTimeout (D2): connect_timeout bounds the
// connect only. go-mssqldb re-arms its "connection timeout" before every
// read for the connection's whole life, so a query whose first row took
// longer than the connect timeout failed; queries are bounded by their
// context (query_timeout) instead.
func TestQuerySlowerThanConnectTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("long (waits out 3 s delays): runs without -short")
	}
	for _, via := range []config.Via{config.ViaDirect, config.ViaSSH} {
		t.Run(string(via), func(t *testing.T) {
			srv := startTDS(t, tdstest.Config{})
			src := tdsSource(t, srv, via, config.TLSRequire)
			src.ConnectTimeout = time.Second
			ctx := context.Background()
			db, err := source.Open(ctx, src)
			require.NoError(t, err)
			defer db.Close()
			f := tdstest.DelayFirstRow(3 * time.Second).On("slow")
			srv.Inject(f)
			qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			start := time.Now()
			var n int
			require.NoError(t, db.QueryRowContext(qctx, "SELECT 1 AS slow").Scan(&n))
			require.Equal(t, 1, n)
			require.GreaterOrEqual(t, time.Since(start), 3*time.Second, "the first row was delayed")
			select {
			case <-f.Reached():
			default:
				t.Fatal("the delay was not applied")
			}
			require.Equal(t, 1, srv.Logins(), "the slow query ran on the connection Open made")
		})
	}
}

// TestQueryBoundedByItsContext: with no driver deadline, a query is bounded
// by its context (query_timeout): against a server that stalls until the
// client cancels, it fails as query_timeout when the context ends, and the
// pool still works.
func TestQueryBoundedByItsContext(t *testing.T) {
	srv := startTDS(t, tdstest.Config{})
	src := tdsSource(t, srv, config.ViaDirect, config.TLSRequire)
	src.ConnectTimeout = time.Second
	ctx := context.Background()
	db, err := source.Open(ctx, src)
	require.NoError(t, err)
	defer db.Close()
	// The stall ends only at the client's cancel (an attention): a query
	// that returns was ended by its context.
	srv.Inject(tdstest.StallAfter(0).On("slow"))
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	var n int
	err = db.QueryRowContext(qctx, "SELECT 1 AS slow").Scan(&n)
	require.Error(t, err)
	require.Equal(t, source.ClassQueryTimeout.Code, source.Classify(err).Code, "%v", err)
	require.NoError(t, selectOne(ctx, db))
}

// spnRecorder stands in for the krb5 authenticator: it records the SPN
// go-mssqldb hands the authenticator during the login and sends a token
// the server refuses.
type spnRecorder struct {
	mu   sync.Mutex
	spns []string
}

func (r *spnRecorder) GetIntegratedAuthenticator(cfg msdsn.Config) (integratedauth.IntegratedAuthenticator, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.spns = append(r.spns, cfg.ServerSPN)
	return recordedAuth{}, nil
}

func (r *spnRecorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.spns...)
}

type recordedAuth struct{}

func (recordedAuth) InitialBytes() ([]byte, error)    { return []byte("not a kerberos token"), nil }
func (recordedAuth) NextBytes([]byte) ([]byte, error) { return nil, nil }
func (recordedAuth) Free()                            {}

// TestKerberosSPN (D4): ehrsync's Dialer is a go-mssqldb HostDialer, for
// which the driver derives no SPN, so the krb5 authenticator asked the KDC
// for a ticket to "". The SPN the driver hands the authenticator during a
// login against the TDS server is server_spn, or MSSQLSvc/<tls.server_name
// or host>:<port>. (The server then refuses the integrated login: the
// token is not a ticket.)
func TestKerberosSPN(t *testing.T) {
	rec := &spnRecorder{}
	require.NoError(t, integratedauth.SetIntegratedAuthenticationProvider("krb5", rec))
	t.Cleanup(func() { _ = integratedauth.SetIntegratedAuthenticationProvider("krb5", krb5.AuthProviderFunc) })
	srv := startTDS(t, tdstest.Config{})
	port := strconv.Itoa(srv.Port())
	tests := []struct {
		name   string
		modify func(*config.Source)
		want   string
	}{
		{"host name", func(s *config.Source) { s.Host = "localhost" }, "MSSQLSvc/localhost:" + port},
		{"tls.server_name", func(s *config.Source) { s.TLS.ServerName = "localhost" }, "MSSQLSvc/localhost:" + port},
		{"server_spn", func(s *config.Source) { s.Host, s.ServerSPN = "localhost", "MSSQLSvc/ngsql01.hospital.local:1433" },
			"MSSQLSvc/ngsql01.hospital.local:1433"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := tdsSource(t, srv, config.ViaDirect, config.TLSRequire)
			src.Kerberos = &config.Kerberos{Realm: "HOSPITAL.LOCAL", ConfigFile: "/etc/krb5.conf"}
			tt.modify(&src)
			before := len(rec.got())
			_, err := source.Open(context.Background(), src)
			require.Error(t, err, "the server refuses integrated logins")
			require.Equal(t, source.ClassLoginFailed.Code, source.Classify(err).Code, "%v", err)
			got := rec.got()[before:]
			require.NotEmpty(t, got, "the driver never asked the authenticator")
			for _, spn := range got {
				require.Equal(t, tt.want, spn)
			}
		})
	}
}

// TestReadOnlyRouting (D5): a listener answers ehrsync's read-only login
// with a route to a secondary. Via direct ehrsync follows it once (one
// login on each server) and checks the secondary's certificate against
// the routed name; via relay and ssh it stops at the route with
// read_only_routing instead of logging in to the listener for ever.
func TestReadOnlyRouting(t *testing.T) {
	ctx := context.Background()
	routeTo := func(r *tdstest.Server) func(*tdstest.Session) *tdstest.Route {
		return func(s *tdstest.Session) *tdstest.Route {
			if !s.ReadOnlyIntent {
				return nil
			}
			return &tdstest.Route{Host: "localhost", Port: r.Port()}
		}
	}
	t.Run("direct follows the route", func(t *testing.T) {
		for _, mode := range []config.TLSMode{config.TLSDisable, config.TLSRequire, config.TLSStrict} {
			t.Run(string(mode), func(t *testing.T) {
				secondary := startTDS(t, tdstest.Config{})
				listener := startTDS(t, tdstest.Config{Route: routeTo(secondary)})
				src := tdsSource(t, listener, config.ViaDirect, mode, secondary)
				db, err := source.Open(ctx, src)
				require.NoError(t, err)
				defer db.Close()
				require.NoError(t, selectOne(ctx, db))
				require.Equal(t, 1, listener.Logins())
				require.Equal(t, 1, secondary.Logins())
			})
		}
	})
	t.Run("direct checks the routed host's name", func(t *testing.T) {
		// The secondary's certificate is valid for 127.0.0.1, the
		// listener's address, and not for localhost, where the route
		// points: it must be refused.
		ca := sourcetest.NewCA(t)
		cert := ca.Issue(t, "127.0.0.1", time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
		secondary := startTDS(t, tdstest.Config{Certificate: &cert})
		listener := startTDS(t, tdstest.Config{Route: routeTo(secondary)})
		src := tdsSource(t, listener, config.ViaDirect, config.TLSRequire)
		pem, err := os.ReadFile(src.TLS.CAFile)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(src.TLS.CAFile, append(pem, ca.PEM...), 0o600))
		openErr(t, src, source.ClassTLSWrongHost)
		require.Equal(t, 1, listener.Logins())
		require.Equal(t, 0, secondary.Logins())
	})
	t.Run("direct follows one route only", func(t *testing.T) {
		var listener *tdstest.Server
		secondary := startTDS(t, tdstest.Config{Route: func(s *tdstest.Session) *tdstest.Route {
			return &tdstest.Route{Host: "localhost", Port: listener.Port()}
		}})
		listener = startTDS(t, tdstest.Config{Route: routeTo(secondary)})
		src := tdsSource(t, listener, config.ViaDirect, config.TLSDisable)
		openErr(t, src, source.ClassReadOnlyRouting)
		require.Equal(t, 1, listener.Logins())
		require.Equal(t, 1, secondary.Logins())
	})
	for _, via := range []config.Via{config.ViaRelay, config.ViaSSH} {
		t.Run(string(via)+" stops at the route", func(t *testing.T) {
			secondary := startTDS(t, tdstest.Config{})
			listener := startTDS(t, tdstest.Config{Route: routeTo(secondary)})
			src := tdsSource(t, listener, via, config.TLSRequire)
			db, err := source.Open(ctx, src)
			if db != nil {
				db.Close()
			}
			require.Error(t, err)
			require.Equal(t, source.ClassReadOnlyRouting.Code, source.Classify(err).Code, "%v", err)
			require.Contains(t, err.Error(), net.JoinHostPort("localhost", strconv.Itoa(secondary.Port())), "the error names the replica")
			require.NotContains(t, err.Error(), sentinel)
			require.LessOrEqual(t, listener.Logins(), 2)
			require.Equal(t, 0, secondary.Logins())
		})
	}
}

// TestAvailabilityGroupErrorOverTheWire (D11): SQL Server's 976 as the
// server sends it is classified with its fix.
func TestAvailabilityGroupErrorOverTheWire(t *testing.T) {
	srv := startTDS(t, tdstest.Config{Handler: tdstest.HandlerFunc(func(_ context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
		if strings.Contains(req.SQL, "claims") {
			return nil, &tdstest.Error{Number: 976, State: 1, Class: 14, Message: "The target database, 'NGProd', is participating in an availability group and is currently not accessible for queries. Either data movement is suspended or the availability replica is not enabled for read access. To allow read-only access to this and other databases in the availability group, enable read access to one or more secondary availability replicas in the group. For more information, see the ALTER AVAILABILITY GROUP statement in SQL Server Books Online."}
		}
		return answer(context.Background(), req)
	})})
	ctx := context.Background()
	db, err := source.Open(ctx, tdsSource(t, srv, config.ViaDirect, config.TLSRequire))
	require.NoError(t, err)
	defer db.Close()
	_, err = db.ExecContext(ctx, "SELECT count(*) FROM dbo.claims")
	require.Error(t, err)
	c := source.Classify(err)
	require.Equal(t, source.ClassAGNotReadable.Code, c.Code, "%v", err)
	require.False(t, c.Transient)
	require.Contains(t, c.Fix, "ALLOW_CONNECTIONS")
}

// TestNotSQLServer (D12): an endpoint that answers in another protocol
// (an HTTP server, random bytes) is not_sql_server, with what answered and
// the driver's error in the detail; it used to be a query timeout or a
// transient error.
func TestNotSQLServer(t *testing.T) {
	for _, fault := range []struct {
		name   string
		f      func() *tdstest.Fault
		answer string
	}{{"http", tdstest.HTTP, "an HTTP response"}, {"garbage", tdstest.Garbage, "bytes ee"}} {
		for _, mode := range []config.TLSMode{config.TLSRequire, config.TLSStrict} {
			for _, via := range []config.Via{config.ViaDirect, config.ViaRelay} {
				t.Run(fault.name+"/"+string(mode)+"/"+string(via), func(t *testing.T) {
					srv := startTDS(t, tdstest.Config{})
					f := fault.f()
					srv.Inject(f)
					src := tdsSource(t, srv, via, mode)
					_, err := source.Open(context.Background(), src)
					require.Error(t, err)
					c := source.Classify(err)
					require.Equal(t, source.ClassNotSQLServer.Code, c.Code, "%v", err)
					require.False(t, c.Transient)
					require.Contains(t, err.Error(), "is not SQL Server: it answered with "+fault.answer)
					require.Contains(t, err.Error(), "(driver: ", "the driver's cause is in the detail")
					select {
					case <-f.Reached():
					default:
						t.Fatal("the fault was not applied")
					}
				})
			}
		}
	}
}

// TestStrictAgainstPre2022 (D13): tls.mode strict against a server
// without TDS 8.0 (it hangs up on the TLS ClientHello) is
// tls_strict_unsupported, naming tls.mode: require, and not retried; it
// used to be a transient EOF, retried for ever. A relay that cannot reach
// its server stays relay_upstream_unreachable.
func TestStrictAgainstPre2022(t *testing.T) {
	for _, via := range []config.Via{config.ViaDirect, config.ViaRelay, config.ViaSSH} {
		t.Run(string(via), func(t *testing.T) {
			srv := startTDS(t, tdstest.Config{NoStrict: true, Version: tdstest.SQLServer2019})
			src := tdsSource(t, srv, via, config.TLSStrict)
			openErr(t, src, source.ClassTLSStrictUnsupported)
			_, err := source.Open(context.Background(), src)
			require.ErrorContains(t, err, "tls.mode: require")
			require.ErrorContains(t, err, "SQL Server 15.0.2000")
			require.False(t, source.IsTransient(err))
			require.Equal(t, 0, srv.Logins())

			src.TLS.Mode = config.TLSRequire
			db, err := source.Open(context.Background(), src)
			require.NoError(t, err, "the fix works")
			require.NoError(t, selectOne(context.Background(), db))
			db.Close()
		})
	}
	t.Run("relay upstream down", func(t *testing.T) {
		src := testSource(t, config.SQLServer, config.ViaRelay, sourcetest.CloseAddr(t))
		src.TLS.Mode = config.TLSStrict
		openErr(t, src, source.ClassRelayUpstream)
	})
}
