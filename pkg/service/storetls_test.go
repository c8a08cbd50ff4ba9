package service

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// TestStoreTLSCannotBeSilentlyUnverified: a store on another machine whose
// certificate would go unverified is refused unless store.url says its
// sslmode, and warned about when it does; verified modes and local stores
// pass quietly.
func TestStoreTLSCannotBeSilentlyUnverified(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		warn, err string
	}{
		{name: "remote, no sslmode (pgx prefer)", url: "postgres://u:p@store.example.com/db", err: "add sslmode=verify-full"},
		{name: "remote key=value, no sslmode", url: "host=store.example.com user=u dbname=db", err: "add sslmode=verify-full"},
		{name: "remote ip, no sslmode", url: "postgres://u@10.1.2.3/db", err: "would not verify its TLS certificate"},
		{name: "remote require", url: "postgres://u@store.example.com/db?sslmode=require", warn: "sslmode=require: the store's certificate is not verified"},
		{name: "remote disable", url: "postgres://u@store.example.com/db?sslmode=disable", warn: "sslmode=disable"},
		{name: "remote prefer", url: "host=store.example.com sslmode=prefer", warn: "sslmode=prefer"},
		{name: "remote allow", url: "postgres://u@store.example.com/db?sslmode=allow", warn: "sslmode=allow"},
		{name: "remote verify-full", url: "postgres://u@store.example.com/db?sslmode=verify-full"},
		{name: "remote verify-ca", url: "host=store.example.com sslmode=verify-ca"},
		{name: "loopback, no sslmode", url: "postgres://u@127.0.0.1:5432/db"},
		{name: "localhost disable", url: "postgres://u@localhost/db?sslmode=disable"},
		{name: "ipv6 loopback", url: "postgres://u@[::1]:5432/db"},
		{name: "unix socket", url: "host=/var/run/postgresql dbname=db"},
		{name: "a remote fallback host", url: "postgres://u@127.0.0.1,store.example.com/db", err: "add sslmode=verify-full"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := pgconn.ParseConfig(tc.url)
			require.NoError(t, err)
			warn, err := storeTLS(tc.url, cfg)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.NotContains(t, err.Error(), "u:p")
				return
			}
			require.NoError(t, err)
			if tc.warn == "" {
				require.Empty(t, warn)
			} else {
				require.Contains(t, warn, tc.warn)
			}
		})
	}
}
