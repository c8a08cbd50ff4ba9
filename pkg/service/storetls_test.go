package service

import (
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
)

// TestStoreTLSMustBeVerifiedUnlessInsecure: a store on another machine
// whose certificate and name would go unverified (no sslmode, disable,
// allow, prefer, require, verify-ca) is refused naming the key, the
// problem and the fix, unless store.insecure_transport is set, and then
// warned about; sslmode given twice is refused whatever the host and
// setting; verify-full and local stores pass quietly.
func TestStoreTLSMustBeVerifiedUnlessInsecure(t *testing.T) {
	for _, tc := range []struct {
		name, url string
		err       string // refused without insecure_transport ("" when it passes quietly)
		always    bool   // refused with insecure_transport too
	}{
		{name: "remote, no sslmode (pgx prefer)", url: "postgres://u:p@store.example.com/db", err: "no sslmode (pgx's default, prefer"},
		{name: "remote key=value, no sslmode", url: "host=store.example.com user=u password=p dbname=db", err: "no sslmode"},
		{name: "remote ip, no sslmode", url: "postgres://u@10.1.2.3/db", err: "to the store at 10.1.2.3, which is not this machine"},
		{name: "remote require", url: "postgres://u:p@store.example.com/db?sslmode=require", err: "sslmode=require (TLS without verifying the certificate's name)"},
		{name: "remote disable", url: "postgres://u:p@store.example.com/db?sslmode=disable", err: "sslmode=disable (plain text) to the store at store.example.com"},
		{name: "remote prefer", url: "host=store.example.com password=p sslmode=prefer", err: "sslmode=prefer"},
		{name: "remote allow", url: "postgres://u@store.example.com/db?sslmode=allow", err: "sslmode=allow"},
		{name: "remote verify-ca", url: "host=store.example.com sslmode=verify-ca", err: "sslmode=verify-ca (the certificate's chain is verified, not its name"},
		{name: "remote quoted disable", url: "host=store.example.com sslmode='disable'", err: "sslmode=disable"},
		{name: "remote verify-full", url: "postgres://u:p@store.example.com/db?sslmode=verify-full"},
		{name: "remote sslrootcert=system", url: "postgres://u@store.example.com/db?sslrootcert=system"},
		{name: "loopback, no sslmode", url: "postgres://u@127.0.0.1:5432/db"},
		{name: "loopback disable", url: "postgres://u:p@127.0.0.1:5432/db?sslmode=disable"},
		{name: "localhost disable", url: "postgres://u@localhost/db?sslmode=disable"},
		{name: "ipv6 loopback", url: "postgres://u@[::1]:5432/db"},
		{name: "unix socket", url: "host=/var/run/postgresql dbname=db"},
		{name: "a remote fallback host", url: "postgres://u:p@127.0.0.1,store.example.com/db", err: "to the store at store.example.com"},
		{name: "sslmode twice in a URL", url: "postgres://u:p@store.example.com/db?sslmode=verify-full&sslmode=disable", err: "store.url: sslmode is given 2 times (sslmode=verify-full, sslmode=disable)", always: true},
		{name: "sslmode twice, first disable", url: "postgres://u:p@store.example.com/db?sslmode=disable&sslmode=verify-full", err: "sslmode is given 2 times", always: true},
		{name: "sslmode twice on loopback", url: "postgres://u:p@127.0.0.1/db?sslmode=disable&sslmode=disable", err: "sslmode is given 2 times", always: true},
		{name: "sslmode twice key=value", url: "host=store.example.com password=p sslmode=verify-full sslmode=disable", err: "sslmode is given 2 times", always: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := pgconn.ParseConfig(tc.url)
			require.NoError(t, err)
			for _, insecure := range []bool{false, true} {
				warn, err := storeTLS("store.url", tc.url, cfg, insecure)
				switch {
				case tc.err == "":
					require.NoError(t, err)
					require.Empty(t, warn)
				case !insecure || tc.always:
					var te *StoreTransportError
					require.ErrorAs(t, err, &te)
					require.ErrorContains(t, err, "store.url: ")
					require.ErrorContains(t, err, tc.err)
					if !tc.always {
						require.ErrorContains(t, err, "use sslmode=verify-full (with sslrootcert=FILE for a private CA), or set store.insecure_transport: true to accept it")
					}
					require.NotContains(t, err.Error(), ":p@")
					require.NotContains(t, err.Error(), "password=p")
				default:
					require.NoError(t, err)
					require.Contains(t, warn, "store.url: ")
					require.Contains(t, warn, tc.err)
					require.Contains(t, warn, "accepted by store.insecure_transport: true")
				}
			}
		})
	}
}

// TestStoreRootCertWritableByOthersIsRefused: the store URL's sslrootcert
// (a CA bundle) that group or others may write is refused naming the key,
// the file and chmod go-w; readable by others it is used, and the pool
// the store is verified with is the one read from the file checked, not
// the one pgx read by name before.
func TestStoreRootCertWritableByOthersIsRefused(t *testing.T) {
	ca := sourcetest.NewCA(t)
	p := ca.File(t)
	url := "postgres://u:p@store.example.com/db?sslmode=verify-full&sslrootcert=" + p
	for _, mode := range []os.FileMode{0o600, 0o644} {
		require.NoError(t, os.Chmod(p, mode))
		cfg, err := pgconn.ParseConfig(url)
		require.NoError(t, err)
		pgxPool := cfg.TLSConfig.RootCAs
		require.NoError(t, storeRoots("store.url", url, cfg))
		require.NotSame(t, pgxPool, cfg.TLSConfig.RootCAs, "%04o: the pool is still pgx's", mode)
		require.True(t, pgxPool.Equal(cfg.TLSConfig.RootCAs))
	}
	for _, mode := range []os.FileMode{0o664, 0o646} {
		require.NoError(t, os.Chmod(p, mode))
		cfg, err := pgconn.ParseConfig(url)
		require.NoError(t, err)
		err = storeRoots("store.url", url, cfg)
		var w *secrets.WritableError
		require.ErrorAs(t, err, &w, "%04o", mode)
		require.ErrorContains(t, err, "store.url: sslrootcert: "+p+" is writable by group or others")
		require.NotContains(t, err.Error(), ":p@")
	}
}

// TestStoreClientKeyReadableByOthersIsRefused: the store URL's sslkey that
// group or others may read is refused naming the key, the file and chmod
// 600; private, the certificate pgx would present is the one read from the
// file checked, not the one pgx read by name before.
func TestStoreClientKeyReadableByOthersIsRefused(t *testing.T) {
	ca := sourcetest.NewCA(t)
	certFile, keyFile := ca.IssueFiles(t, "ehrsync", 0o600)
	url := "postgres://u:p@store.example.com/db?sslmode=verify-full&sslrootcert=" + ca.File(t) +
		"&sslcert=" + certFile + "&sslkey=" + keyFile
	cfg, err := pgconn.ParseConfig(url)
	require.NoError(t, err)
	pgxCert := &cfg.TLSConfig.Certificates[0]
	require.NoError(t, storeClientKey("store.url", url, cfg))
	require.NotSame(t, pgxCert, &cfg.TLSConfig.Certificates[0], "the certificate is still pgx's")
	require.Equal(t, pgxCert.Certificate, cfg.TLSConfig.Certificates[0].Certificate)

	for _, mode := range []os.FileMode{0o640, 0o604} {
		require.NoError(t, os.Chmod(keyFile, mode))
		cfg, err := pgconn.ParseConfig(url)
		require.NoError(t, err)
		err = storeClientKey("store.url", url, cfg)
		var perm *secrets.PermissionError
		require.ErrorAs(t, err, &perm, "%04o", mode)
		require.ErrorContains(t, err, "store.url: sslkey: "+keyFile+" is open to group or others")
		require.ErrorContains(t, err, "chmod 600 "+keyFile)
		require.NotContains(t, err.Error(), ":p@")
	}
}
