package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
)

// TestAdminToken: `ehrsync admin token` prints a strong token once on
// stdout and its tokens-file line (the hash, never the token) on stderr or
// appended to a private file; a bad operator name is a usage error, and a
// tokens file others may read is refused, as the daemon refuses it.
func TestAdminToken(t *testing.T) {
	stdout, stderr, err := runCmd(t, "admin", "token", "--operator", "alice")
	require.NoError(t, err, stderr)
	token := strings.TrimSpace(stdout)
	require.NoError(t, admin.CheckToken(token))
	require.Contains(t, stderr, admin.TokenLine("alice", token))
	require.NotContains(t, stderr, token)

	file := filepath.Join(t.TempDir(), "admin-tokens")
	require.NoError(t, os.WriteFile(file, []byte("# operators"), 0o600)) // no final newline
	stdout, stderr, err = runCmd(t, "admin", "token", "--operator", "bob", "--tokens-file", file)
	require.NoError(t, err, stderr)
	bob := strings.TrimSpace(stdout)
	require.NotEqual(t, token, bob)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, "# operators\n"+admin.TokenLine("bob", bob)+"\n", string(b))
	ops, err := admin.LoadOperators("", file)
	require.NoError(t, err)
	name, ok := ops.Operator(bob)
	require.True(t, ok)
	require.Equal(t, "bob", name)

	_, stderr, err = runCmd(t, "admin", "token", "--operator", "bad name")
	require.Error(t, err)
	require.Equal(t, 2, exitCode(err, &discard{}))
	require.Contains(t, stderr, `--operator: operator name "bad name"`)

	require.NoError(t, os.Chmod(file, 0o644))
	stdout, stderr, err = runCmd(t, "admin", "token", "--operator", "carol", "--tokens-file", file)
	require.Error(t, err)
	require.Contains(t, stderr, "is open to group or others (mode 0644): run chmod 600")
	require.Empty(t, stdout, "no token printed for a line not written")
	b2, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Equal(t, string(b), string(b2))
}
