package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// TestSecretsEncryptTakesTheKeyPath: encrypt refuses to run without --for,
// refuses a path that is no secret's, and binds the value to the field:
// --for orgs[0].source.password with --config names the organization.
func TestSecretsEncryptTakesTheKeyPath(t *testing.T) {
	key, _ := secrets.NewKey()
	t.Setenv(secrets.EnvKey, key.Encode())
	t.Setenv(secrets.EnvKeyFile, "")
	t.Cleanup(func() { stdin = os.Stdin })
	for _, args := range [][]string{
		{"secrets", "encrypt"},
		{"secrets", "encrypt", "--for", "orgs[0].source.password"},
		{"secrets", "encrypt", "--for", "org:st_mary/source.host"},
		{"secrets", "encrypt", "--for", "org:St Mary/source.password"},
		{"secrets", "encrypt", "--for", "store.password"},
	} {
		stdin = strings.NewReader(pwSentinel + "\n")
		out, errOut, err := runCmd(t, args...)
		var usage usageError
		require.ErrorAs(t, err, &usage, "%v", args)
		requireNoSentinel(t, out, errOut)
	}
	path := writeConfig(t, "1433", "env:PW")
	for _, args := range [][]string{
		{"secrets", "encrypt", "--for", "org:st_mary/source.password"},
		{"secrets", "encrypt", "--for", "orgs[0].source.password", "--config", path},
	} {
		stdin = strings.NewReader(pwSentinel + "\n")
		out, errOut, err := runCmd(t, args...)
		require.NoError(t, err, errOut)
		enc := strings.TrimSpace(out)
		got, _, err := secrets.NewKeyring(key).Decrypt("org:st_mary/source.password", enc)
		require.NoError(t, err, "%v", args)
		require.Equal(t, pwSentinel, got)
		_, _, err = secrets.NewKeyring(key).Decrypt("store.url", enc)
		require.ErrorAs(t, err, new(*secrets.BindingError))
	}
}

// rotationConfig is a configuration of two organizations whose secrets
// are enc: values: st_mary's password, north's SSH password and the
// store's owner URL.
func rotationConfig(t *testing.T, mary, north, owner string) string {
	t.Helper()
	cfg := `store:
  url: postgres://ehrsync@127.0.0.1:5432/store
  owner_url: "` + owner + `"
orgs:
  - name: st_mary
    schedule: {every: 10m}
    source: {dialect: sqlserver, via: relay, host: 127.0.0.1, database: NGProd, user: ehrsync, password: ` + mary + `}
    tables:
      - {name: dbo.claims, strategy: auto}
  - name: north
    schedule: {every: 10m}
    source:
      dialect: sqlserver
      via: ssh
      host: 127.0.0.1
      database: NGProd
      user: ehrsync
      ssh:
        host: bastion.example
        user: tunnel
        password: '` + north + `'
        host_key_fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    tables:
      - {name: dbo.claims, strategy: auto}
`
	p := filepath.Join(t.TempDir(), "ehrsync.yaml")
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o640))
	return p
}

// TestSecretsRotateWithTwoKeys: with the new key current and the old one
// previous (EHRSYNC_SECRETS_KEY and EHRSYNC_SECRETS_KEY_PREVIOUS),
// rotate-key re-encrypts every value not under the current key, each for
// its own field, enc:v1 values included (written as enc:v2), and changes no
// other byte; the file keeps its mode; a value copied to another field
// stops it before anything is written; so does a temporary file left by an
// interrupted run, which it never overwrites.
func TestSecretsRotateWithTwoKeys(t *testing.T) {
	oldKey, _ := secrets.NewKey()
	newKey, _ := secrets.NewKey()
	const northPW, ownerURL = "N0rth-SSH-S3ntinel", "postgres://owner:0wner-S3ntinel@127.0.0.1/store"
	mary, err := secrets.EncryptV1(oldKey, pwSentinel)
	require.NoError(t, err)
	north, err := secrets.Encrypt(oldKey, "org:north/source.ssh.password", northPW)
	require.NoError(t, err)
	owner, err := secrets.Encrypt(newKey, "store.owner_url", ownerURL)
	require.NoError(t, err)
	t.Setenv(secrets.EnvKeyFile, "")
	t.Setenv(secrets.EnvKey, newKey.Encode())
	t.Setenv(secrets.EnvKeyPrevious, oldKey.Encode())

	// Loaded, the old and the new values all reveal, and the enc:v1 one is
	// warned about with the command that rewrites it.
	path := rotationConfig(t, mary, north, owner)
	cfg, err := config.Load(path)
	require.NoError(t, err)
	for s, want := range map[config.Secret]string{cfg.Orgs[0].Source.Password: pwSentinel, cfg.Orgs[1].Source.SSH.Password: northPW, cfg.Store.OwnerURL: ownerURL} {
		got, err := s.Reveal()
		require.NoError(t, err, s.Path())
		require.Equal(t, want, got)
	}
	require.Equal(t, []string{"orgs[0].source.password is an enc:v1 value, bound to no field and no key id (a copy would decrypt in any field): re-encrypt every such value as enc:v2 with ehrsync secrets rotate-key --config FILE (the current key stays)"}, cfg.SecretWarnings())

	// A value copied to another field: nothing is written.
	copied := rotationConfig(t, north, north, owner)
	before, _ := os.ReadFile(copied)
	_, _, err = runCmd(t, "secrets", "rotate-key", "--config", copied)
	require.ErrorAs(t, err, new(*secrets.BindingError))
	require.ErrorContains(t, err, "orgs[0].source.password (line 7): does not decrypt as the value of org:st_mary/source.password")
	after, _ := os.ReadFile(copied)
	require.Equal(t, before, after)

	// A temporary file already there (a run interrupted, or one running).
	require.NoError(t, os.WriteFile(path+".rotate.tmp", []byte("left over"), 0o600))
	before, _ = os.ReadFile(path)
	_, _, err = runCmd(t, "secrets", "rotate-key", "--config", path)
	require.ErrorContains(t, err, path+".rotate.tmp exists")
	after, _ = os.ReadFile(path)
	require.Equal(t, before, after)
	left, _ := os.ReadFile(path + ".rotate.tmp")
	require.Equal(t, "left over", string(left), "the temporary file is never overwritten")
	require.NoError(t, os.Remove(path+".rotate.tmp"))

	out, errOut, err := runCmd(t, "secrets", "rotate-key", "--config", path)
	require.NoError(t, err, errOut)
	require.Contains(t, out, "re-encrypted 2 values (1 of them enc:v1) under key "+newKey.ID())
	requireNoSentinel(t, out, errOut)
	after, _ = os.ReadFile(path)
	require.NotContains(t, string(after), secrets.PrefixV1)
	require.Contains(t, string(after), owner, "a value already under the current key is left as it is")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	_, err = os.Stat(path + ".rotate.tmp")
	require.ErrorIs(t, err, os.ErrNotExist)

	// Only the new key now: every value reveals, for its own field.
	t.Setenv(secrets.EnvKeyPrevious, "")
	cfg, err = config.Load(path)
	require.NoError(t, err)
	require.Empty(t, cfg.SecretWarnings())
	values, err := config.EncValues(after)
	require.NoError(t, err)
	require.Len(t, values, 3)
	for i, s := range []config.Secret{cfg.Store.OwnerURL, cfg.Orgs[0].Source.Password, cfg.Orgs[1].Source.SSH.Password} {
		require.True(t, strings.HasPrefix(values[i].Value, secrets.Prefix+newKey.ID()+":"), values[i].Key)
		_, err := s.Reveal()
		require.NoError(t, err, s.Path())
	}
	// Nothing but the values changed.
	want, err := os.ReadFile(rotationConfig(t, values[1].Value, values[2].Value, values[0].Value))
	require.NoError(t, err)
	require.Equal(t, string(want), string(after))
}
