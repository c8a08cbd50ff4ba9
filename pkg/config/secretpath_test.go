package config

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// TestEncValuesAreBoundToTheirFieldByName: Parse binds every secret to
// its key path, naming an organization rather than numbering it: an enc:
// value still reveals after the organizations are reordered, and one
// copied to another organization's field, or to another field of its own,
// fails naming the field it was put in and the command that fixes it.
func TestEncValuesAreBoundToTheirFieldByName(t *testing.T) {
	const sentinel = "B0und-S3ntinel-4e1f"
	key, err := secrets.NewKey()
	require.NoError(t, err)
	t.Setenv(secrets.EnvKey, key.Encode())
	t.Setenv(secrets.EnvKeyFile, "")
	t.Setenv(secrets.EnvKeyPrevious, "")
	a, err := secrets.Encrypt(key, "org:st-mary/source.password", sentinel)
	require.NoError(t, err)
	b, err := secrets.Encrypt(key, "org:north/source.password", sentinel+"b")
	require.NoError(t, err)
	org := func(name, password string) string {
		return `  - name: ` + name + `
    schedule: {every: 10m}
    source: {via: direct, host: localhost, database: NGProd, user: reader, password: "` + password + `"}
    tables: [{name: dbo.claims}]
`
	}
	parse := func(orgs ...string) *Config {
		t.Helper()
		c, err := Parse([]byte("store: {url: env:STORE_URL}\norgs:\n" + strings.Join(orgs, "")))
		require.NoError(t, err)
		return c
	}
	for _, c := range []*Config{parse(org("st-mary", a), org("north", b)), parse(org("north", b), org("st-mary", a))} {
		for _, o := range c.Orgs {
			require.Equal(t, "org:"+o.Name+"/source.password", o.Source.Password.Path())
			got, err := o.Source.Password.Reveal()
			require.NoError(t, err, o.Name)
			require.Contains(t, got, sentinel)
		}
	}

	c := parse(org("st-mary", a), org("north", a))
	_, err = c.Orgs[1].Source.Password.Reveal()
	var be *secrets.BindingError
	require.ErrorAs(t, err, &be)
	require.ErrorContains(t, err, "does not decrypt as the value of org:north/source.password")
	require.ErrorContains(t, err, "ehrsync secrets encrypt --for org:north/source.password")
	require.NotContains(t, err.Error(), sentinel)

	c = parse(org("st-mary", "env:PW"))
	c.Server.AdminToken = NewSecret(a)
	c.ApplyDefaults()
	_, err = c.Server.AdminToken.Reveal()
	require.ErrorAs(t, err, &be, "a password copied to the admin token")
	require.ErrorContains(t, err, "server.admin_token")

	_, err = NewSecret(a).Reveal()
	require.ErrorIs(t, err, secrets.ErrDecrypt, "an enc:v2 value whose field is not known")
}

// TestSecretPaths: the key paths `secrets encrypt --for` accepts are the
// configuration's secrets, found in its types; EncValues finds the enc:
// values of secret fields only, with the path each is bound to.
func TestSecretPaths(t *testing.T) {
	paths := SecretPaths()
	for _, p := range []string{"store.url", "store.owner_url", "server.admin_token", "org:<name>/source.password", "org:<name>/source.ssh.password", "org:<name>/source.ssh.private_key"} {
		require.Contains(t, paths, p)
	}
	require.NoError(t, CheckSecretPath("org:st-mary/source.password"))
	require.NoError(t, CheckSecretPath("store.url"))
	for _, bad := range []string{"", "orgs[0].source.password", "org:/source.password", "org:St Mary/source.password", "org:x/source.host", "store", "store.url.x"} {
		require.Error(t, CheckSecretPath(bad), bad)
	}
	doc := []byte(`store:
  url: env:X
  owner_url: "enc:v2:aaaa:bbbb"
orgs:
  - name: st-mary
    source: {host: "enc:not-a-secret", password: 'enc:v1:cccc'}
    tables: [{name: "enc:x"}]
  - source:
      ssh: {password: enc:v2:dddd:eeee}
    name: north
`)
	values, err := EncValues(doc)
	require.NoError(t, err)
	require.Equal(t, []EncValue{
		{Key: "store.owner_url", Path: "store.owner_url", Line: 3, Column: 14, Value: "enc:v2:aaaa:bbbb"},
		{Key: "orgs[0].source.password", Path: "org:st-mary/source.password", Line: 6, Column: 50, Value: "enc:v1:cccc"},
		{Key: "orgs[1].source.ssh.password", Path: "org:north/source.ssh.password", Line: 9, Column: 23, Value: "enc:v2:dddd:eeee"},
	}, values)
}
