package secrets_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// TestReadPrivateAndTrusted: ReadPrivate refuses a file group or others
// may read or write; ReadTrusted (CA bundles, known_hosts) refuses one
// they may write and reads one they may only read; both follow links to
// the file's own mode and refuse what is not a regular file.
func TestReadPrivateAndTrusted(t *testing.T) {
	for _, tc := range []struct {
		mode             os.FileMode
		private, trusted bool // accepted by ReadPrivate, ReadTrusted
	}{
		{0o600, true, true}, {0o400, true, true}, {0o644, false, true}, {0o640, false, true}, {0o444, false, true},
		{0o604, false, true}, {0o660, false, false}, {0o664, false, false}, {0o646, false, false}, {0o602, false, false}, {0o620, false, false},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "file")
			require.NoError(t, os.WriteFile(p, []byte("content"), 0o600))
			require.NoError(t, os.Chmod(p, tc.mode))
			link := filepath.Join(dir, "link")
			require.NoError(t, os.Symlink(p, link))
			for _, path := range []string{p, link} {
				b, err := secrets.ReadPrivate(path)
				if tc.private {
					require.NoError(t, err)
					require.Equal(t, "content", string(b))
				} else {
					var perm *secrets.PermissionError
					require.ErrorAs(t, err, &perm)
					require.ErrorContains(t, err, "chmod 600 "+path)
					require.True(t, secrets.IsFileRefused(err))
				}
				b, err = secrets.ReadTrusted(path)
				if tc.trusted {
					require.NoError(t, err)
					require.Equal(t, "content", string(b))
				} else {
					var w *secrets.WritableError
					require.ErrorAs(t, err, &w)
					require.ErrorContains(t, err, path+" is writable by group or others")
					require.ErrorContains(t, err, "chmod go-w "+path)
					require.True(t, secrets.IsFileRefused(err))
				}
			}
		})
	}
	t.Run("not a regular file", func(t *testing.T) {
		dir := t.TempDir()
		require.NoError(t, os.Chmod(dir, 0o700))
		_, err := secrets.ReadPrivate(dir)
		var nr *secrets.NotRegularError
		require.ErrorAs(t, err, &nr)
		_, err = secrets.ReadTrusted(dir)
		require.ErrorAs(t, err, &nr)
	})
}
