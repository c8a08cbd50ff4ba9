package source_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/source"
)

// TestKeyFilesOpenToOthersAreRefused: an SSH private key (file:) and a
// Kerberos keytab that group or others may read are refused before any
// connection, naming the file and the fix; at 0600 they are accepted.
func TestKeyFilesOpenToOthersAreRefused(t *testing.T) {
	dir := t.TempDir()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "")
	require.NoError(t, err)
	keyPEM := pem.EncodeToMemory(block)

	t.Run("ssh private key", func(t *testing.T) {
		p := filepath.Join(dir, "id_ed25519")
		require.NoError(t, os.WriteFile(p, keyPEM, 0o600))
		s := config.SSH{Host: "bastion.example", Port: 22, User: "tunnel", PrivateKey: config.NewSecret("file:" + p),
			HostKeyFingerprint: "SHA256:" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}
		tun, err := source.NewTunnel(s, source.TunnelOptions{})
		require.NoError(t, err)
		require.NoError(t, tun.Close())

		require.NoError(t, os.Chmod(p, 0o644))
		_, err = source.NewTunnel(s, source.TunnelOptions{})
		var perm *secrets.PermissionError
		require.ErrorAs(t, err, &perm)
		require.ErrorContains(t, err, "ssh.private_key")
		require.ErrorContains(t, err, "chmod 600 "+p)
		require.NotContains(t, err.Error(), "PRIVATE KEY")
	})
	t.Run("kerberos keytab", func(t *testing.T) {
		conf, keytab := filepath.Join(dir, "krb5.conf"), filepath.Join(dir, "ehrsync.keytab")
		require.NoError(t, os.WriteFile(conf, []byte("[libdefaults]\n default_realm = HOSPITAL.LOCAL\n"), 0o644))
		require.NoError(t, os.WriteFile(keytab, nil, 0o600))
		src := config.Source{Dialect: config.SQLServer, Via: config.ViaDirect, Host: "ngsql01", Port: 1433, Database: "NGProd",
			User: "ehrsync", Kerberos: &config.Kerberos{Realm: "HOSPITAL.LOCAL", ConfigFile: conf, Keytab: keytab}}
		db, err := source.OpenPool(src)
		require.NoError(t, err)
		require.NoError(t, db.Close())

		require.NoError(t, os.Chmod(keytab, 0o640))
		_, err = source.OpenPool(src)
		var perm *secrets.PermissionError
		require.ErrorAs(t, err, &perm)
		require.ErrorContains(t, err, "kerberos.keytab")
		require.ErrorContains(t, err, "chmod 600 "+keytab)
	})
}
