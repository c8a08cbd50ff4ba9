package source_test

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// sentinel is a password that must never show up in an error.
const sentinel = "S3ntinel-Pa55word-7f3a"

func testSource(t *testing.T, dialect config.Dialect, via config.Via, addr string) config.Source {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return config.Source{Dialect: dialect, Via: via, Host: host, Port: p, Database: "ehr", User: "ehrsync",
		Password: config.NewSecret(sentinel), TLS: config.TLS{Mode: config.TLSRequire},
		ConnectTimeout: 2 * time.Second, QueryTimeout: 5 * time.Second}
}

// openErr opens the source and returns the error, checking it is
// classified as want (a hang would be classed as the connect timeout), has
// the fix and never shows the password.
func openErr(t *testing.T, src config.Source, want *source.Class) {
	t.Helper()
	db, err := source.Open(context.Background(), src)
	if db != nil {
		db.Close()
	}
	require.Error(t, err)
	got := source.Classify(err)
	require.Equal(t, want.Code, got.Code, "error: %v", err)
	require.NotEmpty(t, got.Fix)
	require.NotContains(t, err.Error(), sentinel)
}

func TestConnectFailures(t *testing.T) {
	if testing.Short() {
		t.Skip("long (waits out connect timeouts): runs without -short")
	}
	for _, dialect := range []config.Dialect{config.SQLServer, config.Postgres} {
		t.Run(string(dialect), func(t *testing.T) {
			t.Run("relay refuses", func(t *testing.T) {
				openErr(t, testSource(t, dialect, config.ViaRelay, sourcetest.ClosedAddr(t)), source.ClassRelayUnreachable)
			})
			t.Run("server refuses", func(t *testing.T) {
				openErr(t, testSource(t, dialect, config.ViaDirect, sourcetest.ClosedAddr(t)), source.ClassServerUnreachable)
			})
			t.Run("relay accepts and closes", func(t *testing.T) {
				openErr(t, testSource(t, dialect, config.ViaRelay, sourcetest.CloseAddr(t)), source.ClassRelayUpstream)
			})
			t.Run("server accepts and hangs", func(t *testing.T) {
				src := testSource(t, dialect, config.ViaDirect, sourcetest.HangAddr(t))
				src.ConnectTimeout = time.Second
				openErr(t, src, source.ClassConnectTimeout)
			})
			t.Run("relay accepts and hangs", func(t *testing.T) {
				src := testSource(t, dialect, config.ViaRelay, sourcetest.HangAddr(t))
				src.ConnectTimeout = time.Second
				openErr(t, src, source.ClassConnectTimeout)
			})
			t.Run("dns", func(t *testing.T) {
				src := testSource(t, dialect, config.ViaDirect, "127.0.0.1:1")
				src.Host = "ehrsync-no-such-host.invalid"
				openErr(t, src, source.ClassDNS)
			})
		})
	}
}

func TestTLSFailures(t *testing.T) {
	ca := sourcetest.NewCA(t)
	now := time.Now()
	const name = "sql.customer.example"
	tests := []struct {
		name   string
		cert   tls.Certificate
		caFile bool
		want   *source.Class
	}{
		{"expired", ca.Issue(t, name, now.Add(-48*time.Hour), now.Add(-24*time.Hour)), true, source.ClassTLSExpired},
		{"wrong host", ca.Issue(t, "other.example", now.Add(-time.Hour), now.Add(time.Hour)), true, source.ClassTLSWrongHost},
		{"unknown ca", ca.Issue(t, name, now.Add(-time.Hour), now.Add(time.Hour)), false, source.ClassTLSUnknownCA},
		{"valid", ca.Issue(t, name, now.Add(-time.Hour), now.Add(time.Hour)), true, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, kind := range []string{"postgres", "sqlserver strict", "sqlserver tls inside tds"} {
				t.Run(kind, func(t *testing.T) {
					d, addr := config.SQLServer, ""
					switch kind {
					case "postgres":
						d, addr = config.Postgres, sourcetest.TLSAddr(t, tt.cert, true)
					case "sqlserver strict":
						addr = sourcetest.TLSAddr(t, tt.cert, false) // TDS 8.0: TLS first
					default:
						addr = sourcetest.TDSTLSAddr(t, tt.cert) // PRELOGIN, then TLS in TDS packets
					}
					src := testSource(t, d, config.ViaDirect, addr)
					src.TLS.ServerName = name
					if kind == "sqlserver strict" {
						src.TLS.Mode = config.TLSStrict
					}
					if tt.caFile {
						src.TLS.CAFile = ca.File(t)
					}
					if tt.want == nil {
						// The handshake succeeds; the fake server then hangs up.
						_, err := source.Open(context.Background(), src)
						require.Error(t, err)
						require.NotContains(t, []string{source.ClassTLS.Code, source.ClassTLSExpired.Code, source.ClassTLSWrongHost.Code,
							source.ClassTLSUnknownCA.Code}, source.Classify(err).Code, "error: %v", err)
						return
					}
					openErr(t, src, tt.want)
				})
			}
		})
	}
}

func TestProbe(t *testing.T) {
	src := testSource(t, config.SQLServer, config.ViaRelay, sourcetest.ClosedAddr(t))
	require.NoError(t, source.Probe(context.Background(), src, time.Second), "no probe configured")

	src.Relay = &config.Relay{Probe: "tcp://" + sourcetest.ClosedAddr(t)}
	err := source.Probe(context.Background(), src, time.Second)
	require.Equal(t, source.ClassRelayUnreachable, source.Classify(err))

	src.Relay = &config.Relay{Probe: "tcp://" + sourcetest.HangAddr(t)}
	require.NoError(t, source.Probe(context.Background(), src, time.Second))
}

func TestConnectErrorHidesPassword(t *testing.T) {
	src := testSource(t, config.SQLServer, config.ViaDirect, sourcetest.CloseAddr(t))
	_, err := source.Open(context.Background(), src)
	require.Error(t, err)
	require.False(t, strings.Contains(err.Error(), sentinel))
}

func TestWarningsNameDeprecatedSettings(t *testing.T) {
	src := testSource(t, config.SQLServer, config.ViaDirect, "127.0.0.1:1433")
	require.Empty(t, source.Warnings(src))
	src.Timezone = "America/Chicago"
	w := source.Warnings(src)
	require.Len(t, w, 1)
	require.Contains(t, w[0], "source.timezone is deprecated and unused")
}
