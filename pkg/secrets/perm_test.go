package secrets_test

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// TestKeyFileOpenToOthersIsRefused: a secrets key file that group or others
// may read is refused, naming the file and the fix; 0600 and 0400 pass.
func TestKeyFileOpenToOthersIsRefused(t *testing.T) {
	key, err := secrets.NewKey()
	require.NoError(t, err)
	for _, tc := range []struct {
		mode os.FileMode
		ok   bool
	}{
		{0o600, true}, {0o400, true}, {0o640, false}, {0o604, false}, {0o644, false}, {0o660, false}, {0o602, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "secrets.key")
			require.NoError(t, os.WriteFile(p, []byte(key.Encode()+"\n"), 0o600))
			require.NoError(t, os.Chmod(p, tc.mode))
			t.Setenv(secrets.EnvKey, "")
			t.Setenv(secrets.EnvKeyFile, p)
			got, err := secrets.KeyFromEnv()
			if tc.ok {
				require.NoError(t, err)
				require.Equal(t, key.Encode(), got.Encode())
				return
			}
			var perm *secrets.PermissionError
			require.ErrorAs(t, err, &perm)
			require.ErrorContains(t, err, p)
			require.ErrorContains(t, err, "chmod 600 "+p)
			require.ErrorContains(t, err, secrets.EnvKeyFile)
			require.NotContains(t, err.Error(), key.Encode())
		})
	}
}

// TestOpenPrivateFollowsLinksAndHoldsTheFile: a private link to an open
// file is refused (the file's mode counts, not the link's); the held path
// of a file opened reads that file after another is renamed into its
// place.
func TestOpenPrivateFollowsLinksAndHoldsTheFile(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	require.NoError(t, os.WriteFile(target, []byte("checked"), 0o644))
	link := filepath.Join(dir, "link")
	require.NoError(t, os.Symlink(target, link))
	_, err := secrets.OpenPrivate(link)
	var perm *secrets.PermissionError
	require.ErrorAs(t, err, &perm)
	require.NoError(t, os.Chmod(target, 0o600))
	f, err := secrets.OpenPrivate(link)
	require.NoError(t, err)
	defer f.Close()
	_, err = secrets.OpenPrivate(filepath.Join(dir, "missing"))
	require.ErrorIs(t, err, os.ErrNotExist)

	other := filepath.Join(dir, "other")
	require.NoError(t, os.WriteFile(other, []byte("swapped"), 0o644))
	require.NoError(t, os.Rename(other, target))
	b, err := os.ReadFile(secrets.HeldPath(f))
	require.NoError(t, err)
	if runtime.GOOS == "linux" {
		require.Equal(t, "checked", string(b), "the held path reads the file now at the original path")
	}
}
