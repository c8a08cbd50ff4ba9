package source_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
)

// viaSSH is a SQL Server source at addr (as the bastion sees it) reached
// through a fresh in-process SSH server.
func viaSSH(t *testing.T, addr string) (config.Source, *sourcetest.SSHServer) {
	t.Helper()
	src := testSource(t, config.SQLServer, config.ViaSSH, addr)
	srv := sourcetest.StartSSH(t, "tunnel", sshPassword)
	src.SSH = &config.SSH{Host: srv.Host(), Port: srv.Port(), User: "tunnel", Password: config.NewSecret(sshPassword),
		HostKeyFingerprint: srv.Fingerprint()}
	return src, srv
}

// hang is how long within waits before it calls f blocked: a guard against
// a hang, not a speed bound (the timeouts under test are a second).
const hang = 5 * time.Minute

// within returns f's error, or fails the test when f has not returned
// after hang (f keeps running: a hang is what is being tested; it must not
// touch t).
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(hang):
		t.Fatalf("still blocked after %s", hang)
		return nil
	}
}

// openSlow opens src within hang and returns Open's error.
func openSlow(t *testing.T, src config.Source) error {
	t.Helper()
	return within(t, func() error {
		db, err := source.Open(context.Background(), src)
		if db != nil {
			db.Close()
		}
		return err
	})
}

// TestConnectTimeoutBoundsTheLogin: connect_timeout bounds every connection
// the pool makes, whatever the context of the query that needs it. A
// server stuck after the prelogin fails a query whose context has no
// deadline at the connect timeout, as connect_timeout: nothing else could
// end it (within fails a query still waiting).
func TestConnectTimeoutBoundsTheLogin(t *testing.T) {
	src := testSource(t, config.SQLServer, config.ViaDirect, sourcetest.LoginHangAddr(t))
	src.TLS = config.TLS{Mode: config.TLSDisable}
	src.ConnectTimeout = time.Second
	db, err := source.OpenPool(src)
	require.NoError(t, err)
	defer db.Close()
	err = within(t, func() error { return db.PingContext(context.Background()) })
	require.Error(t, err)
	require.Equal(t, source.ClassConnectTimeout.Code, source.Classify(err).Code, "%v", err)
	require.NotContains(t, err.Error(), sentinel)
}

// TestSSHConnectTimeout: through the SSH tunnel a server that accepts and
// never answers is interrupted at the connect timeout. The interruption is
// a deadline on the connection the driver reads, which an SSH channel
// refuses (go-mssqldb's prelogin read does not watch the context), so
// without deadline support the attempt would block for ever.
func TestSSHConnectTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("long (waits out connect timeouts): runs without -short")
	}
	for _, mode := range []config.TLSMode{config.TLSDisable, config.TLSRequire, config.TLSStrict} {
		t.Run(string(mode), func(t *testing.T) {
			src, srv := viaSSH(t, sourcetest.HangAddr(t))
			src.TLS.Mode = mode
			src.ConnectTimeout = time.Second
			err := openSlow(t, src)
			require.Equal(t, source.ClassConnectTimeout.Code, source.Classify(err).Code, "interrupted by the 1 s connect timeout, not blocked: %v", err)
			require.Equal(t, 1, srv.Logins())
		})
	}
}

// TestSSHTunnelConnDeadlines: the tunnel's connections keep net.Conn's
// deadline promise, which go-mssqldb and ehrsync rely on.
func TestSSHTunnelConnDeadlines(t *testing.T) {
	src, _ := viaSSH(t, sourcetest.HangAddr(t))
	tun, err := source.NewTunnel(*src.SSH, source.TunnelOptions{Timeout: 5 * time.Second})
	require.NoError(t, err)
	defer tun.Close()
	c, err := tun.DialContext(context.Background(), net.JoinHostPort(src.Host, strconv.Itoa(src.Port)))
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(50*time.Millisecond)))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	require.ErrorAs(t, err, &ne)
	require.True(t, ne.Timeout())
	require.NoError(t, c.SetDeadline(time.Time{}))
	_, err = c.Write([]byte("still open"))
	require.NoError(t, err)
}
