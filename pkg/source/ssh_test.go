package source_test

import (
	"context"
	"net"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
)

const sshPassword = "ssh-S3ntinel-9c1e"

// sshSource is a PostgreSQL source (a fresh pgtest database) reached
// through an in-process SSH server.
func sshSource(t *testing.T) (config.Source, *sourcetest.SSHServer) {
	t.Helper()
	u, err := url.Parse(pgtest.URL(t))
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)
	srv := sourcetest.StartSSH(t, "tunnel", sshPassword)
	pw, _ := u.User.Password()
	return config.Source{Dialect: config.Postgres, Via: config.ViaSSH, Host: u.Hostname(), Port: port,
		Database: u.Path[1:], User: u.User.Username(), Password: config.NewSecret(pw),
		TLS: config.TLS{Mode: config.TLSDisable}, ConnectTimeout: 5 * time.Second, QueryTimeout: 5 * time.Second,
		SSH: &config.SSH{Host: srv.Host(), Port: srv.Port(), User: "tunnel", Password: config.NewSecret(sshPassword),
			HostKeyFingerprint: srv.Fingerprint()},
	}, srv
}

func TestSSHTunnelEndToEnd(t *testing.T) {
	for _, name := range []string{"fingerprint", "known_hosts", "both"} {
		t.Run(name, func(t *testing.T) {
			src, srv := sshSource(t)
			defer goleak.VerifyNone(t, goleak.IgnoreCurrent()) // the pool and the tunnel stop on Close
			switch name {
			case "known_hosts":
				src.SSH.HostKeyFingerprint, src.SSH.KnownHosts = "", srv.KnownHosts(t)
			case "both":
				src.SSH.KnownHosts = srv.KnownHosts(t)
			}
			ctx := context.Background()
			db, err := source.Open(ctx, src)
			require.NoError(t, err)
			defer db.Close()
			var n int
			require.NoError(t, db.QueryRowContext(ctx, "SELECT count(*) FROM generate_series(1, 1000)").Scan(&n))
			require.Equal(t, 1000, n)
			require.Equal(t, 1, srv.Logins())
		})
	}
}

func TestSSHRefusesWrongHostKey(t *testing.T) {
	other := sourcetest.NewSigner(t)
	t.Run("fingerprint", func(t *testing.T) {
		src, srv := sshSource(t)
		src.SSH.HostKeyFingerprint = ssh.FingerprintSHA256(other.PublicKey())
		openErr(t, src, source.ClassSSHHostKey)
		require.Equal(t, 0, srv.Logins())
	})
	t.Run("known_hosts", func(t *testing.T) {
		src, srv := sshSource(t)
		src.SSH.HostKeyFingerprint = ""
		src.SSH.KnownHosts = sourcetest.WriteKnownHosts(t, srv.Addr, other.PublicKey())
		openErr(t, src, source.ClassSSHHostKey)
		require.Equal(t, 0, srv.Logins())
	})
	t.Run("known_hosts right, fingerprint wrong", func(t *testing.T) {
		src, srv := sshSource(t)
		src.SSH.KnownHosts = srv.KnownHosts(t)
		src.SSH.HostKeyFingerprint = ssh.FingerprintSHA256(other.PublicKey())
		openErr(t, src, source.ClassSSHHostKey)
	})
	t.Run("neither", func(t *testing.T) {
		src, _ := sshSource(t)
		src.SSH.HostKeyFingerprint = ""
		openErr(t, src, source.ClassSSHHostKey)
	})
}

func TestSSHAuthFailed(t *testing.T) {
	src, _ := sshSource(t)
	src.SSH.Password = config.NewSecret("wrong-" + sentinel)
	openErr(t, src, source.ClassSSHAuth)
}

func TestSSHBastionUnreachable(t *testing.T) {
	src, _ := sshSource(t)
	host, port, _ := net.SplitHostPort(sourcetest.ClosedAddr(t))
	src.SSH.Host = host
	src.SSH.Port, _ = strconv.Atoi(port)
	openErr(t, src, source.ClassBastionUnreachable)
}

func TestSSHTunnelTargetUnreachable(t *testing.T) {
	src, _ := sshSource(t)
	_, port, _ := net.SplitHostPort(sourcetest.ClosedAddr(t))
	src.Port, _ = strconv.Atoi(port)
	openErr(t, src, source.ClassServerUnreachable)
}

func TestSSHReconnectsAfterDrop(t *testing.T) {
	src, srv := sshSource(t)
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	d, err := source.NewDialer(src)
	require.NoError(t, err)
	defer d.Close()
	pw, err := src.Password.Reveal()
	require.NoError(t, err)
	cfg, err := pgx.ParseConfig("")
	require.NoError(t, err)
	cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password = src.Host, uint16(src.Port), src.Database, src.User, pw
	cfg.TLSConfig, cfg.DialFunc = nil, d.DialContext
	ctx := context.Background()
	query := func() error {
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		var one int
		return conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	}
	require.NoError(t, query())
	require.Equal(t, 1, d.Tunnel().Dials())

	srv.DropAll()
	require.Eventually(t, func() bool { return query() == nil }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, 2, d.Tunnel().Dials())
	require.Equal(t, 2, srv.Logins())
}

func TestSSHPoolSurvivesDrop(t *testing.T) {
	src, srv := sshSource(t)
	ctx := context.Background()
	db, err := source.Open(ctx, src)
	require.NoError(t, err)
	defer db.Close()
	srv.DropAll()
	require.Eventually(t, func() bool {
		var one int
		return db.QueryRowContext(ctx, "SELECT 1").Scan(&one) == nil
	}, 10*time.Second, 20*time.Millisecond)
}

// TestSSHKeepAliveDetectsDeadPath: when the path to the bastion silently
// dies (no RST, nothing gets through), the keepalive notices and the next
// dial makes a new SSH connection.
func TestSSHKeepAliveDetectsDeadPath(t *testing.T) {
	src, srv := sshSource(t)
	proxy := sourcetest.StartProxy(t, srv.Addr)
	host, port, _ := net.SplitHostPort(proxy.Addr)
	src.SSH.Host = host
	src.SSH.Port, _ = strconv.Atoi(port)
	tun, err := source.NewTunnel(*src.SSH, source.TunnelOptions{Timeout: 300 * time.Millisecond, KeepAlive: 50 * time.Millisecond})
	require.NoError(t, err)
	defer tun.Close()
	ctx := context.Background()
	target := net.JoinHostPort(src.Host, strconv.Itoa(src.Port))
	c, err := tun.DialContext(ctx, target)
	require.NoError(t, err)
	c.Close()
	require.Equal(t, 1, tun.Dials())

	proxy.Freeze()
	require.Eventually(t, func() bool {
		c, err := tun.DialContext(ctx, target)
		if err != nil {
			return false
		}
		c.Close()
		return tun.Dials() == 2
	}, 10*time.Second, 50*time.Millisecond)
}
