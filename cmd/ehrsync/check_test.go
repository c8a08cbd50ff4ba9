package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/source"
)

const (
	pwSentinel    = "Pw-S3ntinel-0b7e"
	storeSentinel = "Store-S3ntinel-51c9"
)

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, ln.Close())
	return port
}

func writeConfig(t *testing.T, port, password string) string {
	t.Helper()
	cfg := `store:
  url: postgres://ehrsync:` + storeSentinel + `@127.0.0.1:5432/store
orgs:
  - name: st_mary
    schedule: {every: 10m}
    source:
      dialect: sqlserver
      via: relay
      host: 127.0.0.1
      port: ` + port + `
      database: NGProd
      user: ehrsync
      password: ` + password + `
      connect_timeout: 2s
    tables:
      - {name: dbo.claims, strategy: auto}
`
	p := filepath.Join(t.TempDir(), "ehrsync.yaml")
	require.NoError(t, os.WriteFile(p, []byte(cfg), 0o600))
	return p
}

func runCmd(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(context.Background(), args, &out, &errb)
	exitCode(err, &errb) // prints the error as main does
	return out.String(), errb.String(), err
}

func requireNoSentinel(t *testing.T, texts ...string) {
	t.Helper()
	for _, s := range texts {
		require.NotContains(t, s, pwSentinel)
		require.NotContains(t, s, storeSentinel)
	}
}

func TestCheckRelayUnreachable(t *testing.T) {
	path := writeConfig(t, closedPort(t), pwSentinel)
	out, errOut, err := runCmd(t, "check", "--config", path, "--step-timeout", "2s")
	require.Error(t, err)
	var buf bytes.Buffer
	require.Equal(t, 1, exitCode(err, &buf))
	require.Contains(t, out, "UNHEALTHY")
	require.Contains(t, out, "[relay_unreachable]")
	require.Contains(t, out, "ailevate-tunnel")
	requireNoSentinel(t, out, errOut)

	out, errOut, err = runCmd(t, "--log-format", "json", "check", "--config", path, "--json")
	require.Error(t, err)
	requireNoSentinel(t, out, errOut)
	var rep check.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.False(t, rep.Healthy)
	require.Len(t, rep.Orgs, 1)
	var codes []string
	for _, s := range rep.Orgs[0].Steps {
		if s.Problem != nil {
			codes = append(codes, s.Problem.Code)
		}
	}
	require.Equal(t, []string{source.ClassRelayUnreachable.Code}, codes)
}

func TestCheckUnknownOrg(t *testing.T) {
	path := writeConfig(t, closedPort(t), pwSentinel)
	_, _, err := runCmd(t, "check", "--config", path, "--org", "nope")
	var buf bytes.Buffer
	require.Equal(t, 2, exitCode(err, &buf))
}

func TestSecretsEncryptThenCheck(t *testing.T) {
	key, err := secrets.NewKey()
	require.NoError(t, err)
	t.Setenv(secrets.EnvKey, key.Encode())
	t.Setenv(secrets.EnvKeyFile, "")
	stdin = strings.NewReader(pwSentinel + "\n")
	t.Cleanup(func() { stdin = os.Stdin })
	out, errOut, err := runCmd(t, "secrets", "encrypt", "--for", "org:st_mary/source.password")
	require.NoError(t, err, errOut)
	enc := strings.TrimSpace(out)
	require.True(t, strings.HasPrefix(enc, secrets.Prefix+key.ID()+":"))
	requireNoSentinel(t, out, errOut)
	got, _, err := secrets.NewKeyring(key).Decrypt("org:st_mary/source.password", enc)
	require.NoError(t, err)
	require.Equal(t, pwSentinel, got)

	path := writeConfig(t, closedPort(t), enc)
	out, errOut, err = runCmd(t, "check", "--config", path, "--json")
	require.Error(t, err)
	requireNoSentinel(t, out, errOut)
	var rep check.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Equal(t, check.StatusOK, rep.Orgs[0].Steps[0].Status, "the enc: password decrypts")

	t.Setenv(secrets.EnvKey, "")
	out, errOut, err = runCmd(t, "check", "--config", path, "--json")
	require.Error(t, err)
	requireNoSentinel(t, out, errOut)
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Equal(t, "secrets", rep.Orgs[0].Steps[0].Name)
	require.Equal(t, source.ClassSecret.Code, rep.Orgs[0].Steps[0].Problem.Code)
}

func TestSecretsRotateKey(t *testing.T) {
	oldKey, _ := secrets.NewKey()
	newKey, _ := secrets.NewKey()
	v, err := secrets.Encrypt(oldKey, "org:st_mary/source.password", pwSentinel)
	require.NoError(t, err)
	path := writeConfig(t, "1433", v)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "new.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(newKey.Encode()+"\n"), 0o600))

	t.Setenv(secrets.EnvKey, newKey.Encode()) // the wrong old key: nothing is written
	_, _, err = runCmd(t, "secrets", "rotate-key", "--config", path, "--new-key-file", keyFile)
	require.ErrorIs(t, err, secrets.ErrDecrypt)
	after, _ := os.ReadFile(path)
	require.Equal(t, before, after)

	t.Setenv(secrets.EnvKey, oldKey.Encode())
	out, errOut, err := runCmd(t, "secrets", "rotate-key", "--config", path, "--new-key-file", keyFile)
	require.NoError(t, err, errOut)
	require.Contains(t, out, "re-encrypted 1 values")
	after, err = os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(after), v)
	w := strings.TrimSpace(strings.SplitN(strings.SplitN(string(after), "password: ", 2)[1], "\n", 2)[0])
	got, _, err := secrets.NewKeyring(newKey).Decrypt("org:st_mary/source.password", w)
	require.NoError(t, err)
	require.Equal(t, pwSentinel, got)
	require.Equal(t, strings.Replace(string(before), v, w, 1), string(after), "nothing else changes")
	requireNoSentinel(t, out, errOut)
}
