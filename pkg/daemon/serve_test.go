package daemon

import (
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestServesTwoListeners: Run serves the metrics listener and the admin
// listener, each its own handler, and closes both when it stops.
func TestServesTwoListeners(t *testing.T) {
	d, err := New(testConfig(time.Hour, "a"), &fakeSyncer{}, nil, quiet(), nil, Options{})
	require.NoError(t, err)
	listen := func() net.Listener {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		return ln
	}
	text := func(s string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, s) })
	}
	health, adm := listen(), listen()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- d.Run(ctx, Serve{Listener: health, Handler: text("health"), AdminListener: adm, AdminHandler: text("admin")})
	}()
	// A listener nobody serves accepts and never answers: the client gives
	// up instead of hanging the test.
	client := &http.Client{Timeout: 10 * time.Second}
	get := func(addr string) (string, error) {
		resp, err := client.Get("http://" + addr + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	for addr, want := range map[string]string{health.Addr().String(): "health", adm.Addr().String(): "admin"} {
		got, err := get(addr)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	cancel()
	require.NoError(t, <-done)
	for _, addr := range []string{health.Addr().String(), adm.Addr().String()} {
		_, err := get(addr)
		require.Error(t, err, "%s still served after Run returned", addr)
	}
}
