package source_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
)

// TestUnverifiedTransportIsRefusedUnlessInsecure: a source on another
// machine without verified TLS (tls.mode disable, trust_server_certificate)
// is refused before any connection, for both dialects, naming the setting
// and the fix, unless the source says insecure_transport: true, which is
// then warned about; a loopback source and verified TLS are opened quietly.
func TestUnverifiedTransportIsRefusedUnlessInsecure(t *testing.T) {
	for _, tc := range []struct {
		name    string
		host    string
		tls     config.TLS
		refused string // "" when opened
	}{
		{"disable, remote", "sql01.hospital.local", config.TLS{Mode: config.TLSDisable}, "tls.mode: disable sends the connection to sql01.hospital.local"},
		{"trust, remote", "10.1.2.3", config.TLS{Mode: config.TLSRequire, TrustServerCertificate: true}, "tls.trust_server_certificate: true accepts any certificate"},
		{"require, remote", "sql01.hospital.local", config.TLS{Mode: config.TLSRequire}, ""},
		{"disable, 127.0.0.1", "127.0.0.1", config.TLS{Mode: config.TLSDisable}, ""},
		{"disable, localhost", "localhost", config.TLS{Mode: config.TLSDisable}, ""},
		{"trust, ::1", "::1", config.TLS{Mode: config.TLSRequire, TrustServerCertificate: true}, ""},
	} {
		for _, dialect := range []config.Dialect{config.SQLServer, config.Postgres} {
			t.Run(tc.name+"/"+string(dialect), func(t *testing.T) {
				src := config.Source{Dialect: dialect, Via: config.ViaDirect, Host: tc.host, Port: 1433, Database: "NGProd",
					User: "ehrsync", Password: config.NewSecret(sentinel), TLS: tc.tls, ConnectTimeout: time.Second}
				db, err := source.OpenPool(src)
				if tc.refused == "" {
					require.NoError(t, err)
					require.NoError(t, db.Close())
					require.NotContains(t, source.Warnings(src), "insecure_transport")
					return
				}
				var te *source.TransportError
				require.ErrorAs(t, err, &te)
				require.ErrorContains(t, err, tc.refused)
				require.ErrorContains(t, err, "insecure_transport: true")
				require.NotContains(t, err.Error(), sentinel)

				src.InsecureTransport = true
				db, err = source.OpenPool(src)
				require.NoError(t, err)
				require.NoError(t, db.Close())
				require.Contains(t, source.Warnings(src), "insecure_transport is true: the source on another machine is reached without verified TLS")
			})
		}
	}
}

// TestTrustFilesWritableByOthersAreRefused: a CA bundle (tls.ca_file, both
// dialects) and an SSH known_hosts file that group or others may write are
// refused before any connection, naming the file and chmod go-w; readable
// by others they are fine (they hold nothing secret). The known_hosts file
// read from the descriptor that was checked still verifies the bastion:
// its key is accepted, another key is not.
func TestTrustFilesWritableByOthersAreRefused(t *testing.T) {
	ca := sourcetest.NewCA(t)
	t.Run("tls.ca_file", func(t *testing.T) {
		for _, dialect := range []config.Dialect{config.SQLServer, config.Postgres} {
			p := ca.File(t)
			src := config.Source{Dialect: dialect, Via: config.ViaDirect, Host: "sql01.hospital.local", Port: 1433, Database: "NGProd",
				User: "ehrsync", TLS: config.TLS{Mode: config.TLSRequire, CAFile: p}, ConnectTimeout: time.Second}
			for _, mode := range []os.FileMode{0o600, 0o644, 0o444} {
				require.NoError(t, os.Chmod(p, mode))
				db, err := source.OpenPool(src)
				require.NoError(t, err, "%s %04o", dialect, mode)
				require.NoError(t, db.Close())
			}
			for _, mode := range []os.FileMode{0o664, 0o646, 0o666, 0o620} {
				require.NoError(t, os.Chmod(p, mode))
				_, err := source.OpenPool(src)
				var w *secrets.WritableError
				require.ErrorAs(t, err, &w, "%s %04o", dialect, mode)
				require.ErrorContains(t, err, "tls.ca_file")
				require.ErrorContains(t, err, "chmod go-w "+p)
			}
		}
	})
	t.Run("ssh.known_hosts", func(t *testing.T) {
		srv := sourcetest.StartSSH(t, "tunnel", "tunnel-pw")
		s := config.SSH{Host: srv.Host(), Port: srv.Port(), User: "tunnel", Password: config.NewSecret("tunnel-pw"), KnownHosts: srv.KnownHosts(t)}
		for _, mode := range []os.FileMode{0o600, 0o644} {
			require.NoError(t, os.Chmod(s.KnownHosts, mode))
			tun, err := source.NewTunnel(s, source.TunnelOptions{Timeout: 10 * time.Second})
			require.NoError(t, err, "%04o", mode)
			require.NoError(t, tun.Connect(context.Background()), "%04o: the bastion's own key", mode)
			require.NoError(t, tun.Close())
		}
		for _, mode := range []os.FileMode{0o664, 0o666, 0o602} {
			require.NoError(t, os.Chmod(s.KnownHosts, mode))
			_, err := source.NewTunnel(s, source.TunnelOptions{})
			var w *secrets.WritableError
			require.ErrorAs(t, err, &w, "%04o", mode)
			require.ErrorContains(t, err, "ssh.known_hosts")
			require.ErrorContains(t, err, "chmod go-w "+s.KnownHosts)
		}
		other := sourcetest.StartSSH(t, "tunnel", "tunnel-pw")
		s.KnownHosts = sourcetest.WriteKnownHosts(t, srv.Addr, other.HostKey.PublicKey())
		tun, err := source.NewTunnel(s, source.TunnelOptions{Timeout: 10 * time.Second})
		require.NoError(t, err)
		defer tun.Close()
		require.ErrorIs(t, tun.Connect(context.Background()), source.ErrHostKey, "another key passed the known_hosts read from the descriptor")
	})
}
