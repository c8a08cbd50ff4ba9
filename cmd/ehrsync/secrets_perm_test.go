package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// TestSecretsRotateKeyRefusesAnOpenKeyFile: the new key file of rotate-key
// is a key file like any other: open to group or others, it is refused,
// naming the file and the fix, and the configuration is left as it was.
func TestSecretsRotateKeyRefusesAnOpenKeyFile(t *testing.T) {
	oldKey, _ := secrets.NewKey()
	newKey, _ := secrets.NewKey()
	v, err := secrets.Encrypt(oldKey, "org:st_mary/source.password", pwSentinel)
	require.NoError(t, err)
	path := writeConfig(t, "1433", v)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	keyFile := filepath.Join(t.TempDir(), "new.key")
	require.NoError(t, os.WriteFile(keyFile, []byte(newKey.Encode()+"\n"), 0o600))
	require.NoError(t, os.Chmod(keyFile, 0o644))
	t.Setenv(secrets.EnvKey, oldKey.Encode())
	out, errOut, err := runCmd(t, "secrets", "rotate-key", "--config", path, "--new-key-file", keyFile)
	var perm *secrets.PermissionError
	require.ErrorAs(t, err, &perm)
	require.ErrorContains(t, err, "chmod 600 "+keyFile)
	require.NotContains(t, err.Error()+out+errOut, newKey.Encode())
	after, _ := os.ReadFile(path)
	require.Equal(t, before, after)
}
