package admin_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
)

// selfSigned writes a certificate for 127.0.0.1 and its key (mode
// keyMode) and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, keyMode os.FileMode) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	ca := sourcetest.NewCA(t)
	certFile, keyFile = ca.IssueFiles(t, "127.0.0.1", keyMode)
	return certFile, keyFile, ca.Pool()
}

func serve(t *testing.T, ln net.Listener) {
	t.Helper()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "admin") }), ErrorLog: log.New(io.Discard, "", 0),
		ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
}

// TestListen: the admin listener is plain HTTP on loopback, refused on any
// other address without TLS, and TLS (1.2 or later) with the configured
// certificate when admin_tls is set; a key file others may read is
// refused.
func TestListen(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0"} {
		_, err := admin.Listen(config.Server{AdminListen: addr})
		require.ErrorIs(t, err, admin.ErrAdminNeedsTLS, addr)
		require.ErrorContains(t, err, "set server.admin_tls (cert_file, key_file), or listen on 127.0.0.1", addr)
	}

	ln, err := admin.Listen(config.Server{AdminListen: "127.0.0.1:0"})
	require.NoError(t, err)
	serve(t, ln)
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	certFile, keyFile, pool := selfSigned(t, 0o600)
	ln, err = admin.Listen(config.Server{AdminListen: "127.0.0.1:0", AdminTLS: &config.AdminTLS{CertFile: certFile, KeyFile: keyFile}})
	require.NoError(t, err)
	serve(t, ln)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	resp, err = client.Get("https://" + ln.Addr().String() + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.NotNil(t, resp.TLS)
	// In clear text, a token would cross the network: refused.
	resp, err = http.Get("http://" + ln.Addr().String() + "/")
	if err == nil {
		resp.Body.Close()
		require.NotEqual(t, http.StatusOK, resp.StatusCode)
	}
	old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	_, err = old.Get("https://" + ln.Addr().String() + "/")
	require.Error(t, err, "TLS 1.1 is refused")

	// Every interface with TLS is allowed.
	ln, err = admin.Listen(config.Server{AdminListen: "0.0.0.0:0", AdminTLS: &config.AdminTLS{CertFile: certFile, KeyFile: keyFile}})
	require.NoError(t, err)
	ln.Close()

	certFile, keyFile, _ = selfSigned(t, 0o640)
	_, err = admin.Listen(config.Server{AdminListen: "127.0.0.1:0", AdminTLS: &config.AdminTLS{CertFile: certFile, KeyFile: keyFile}})
	var perm *secrets.PermissionError
	require.ErrorAs(t, err, &perm)
	require.ErrorContains(t, err, "server.admin_tls.key_file: "+keyFile+" is open to group or others (mode 0640): run chmod 600")
}
