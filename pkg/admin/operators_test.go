package admin_test

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// TestCheckToken: 32 random bytes or more, written as at least 43 base64
// or base64url characters or 64 hex digits; anything shorter, of another
// alphabet, or of few distinct characters is refused without quoting it.
func TestCheckToken(t *testing.T) {
	fresh, err := admin.NewToken()
	require.NoError(t, err)
	require.Len(t, fresh, 43)
	tests := []struct {
		name, token string
		ok          bool
	}{
		{"ehrsync admin token", fresh, true},
		{"43 base64url", "Zk9xLw2_Rt7-Yq3mNc8vBp1hJd6sFa4uGe0iKo5TyWx", true},
		{"44 base64 with padding", "Zk9xLw2+Rt7/Yq3mNc8vBp1hJd6sFa4uGe0iKo5TyWx=", true},
		{"64 hex", "7f3a9c2e5b8d1f4a6c0e9b2d5f8a1c4e7b0d3f6a9c2e5b8d1f4a6c0e9b2d5f8a", true},
		{"42 base64url", "Zk9xLw2_Rt7-Yq3mNc8vBp1hJd6sFa4uGe0iKo5TyW", false},
		{"63 hex", "7f3a9c2e5b8d1f4a6c0e9b2d5f8a1c4e7b0d3f6a9c2e5b8d1f4a6c0e9b2d5f8", false},
		{"50 hex digits read as base64", "7f3a9c2e5b8d1f4a6c0e9b2d5f8a1c4e7b0d3f6a9c2e5b8d1f", false},
		{"a pass phrase", "correct horse battery staple correct horse battery", false},
		{"one letter repeated", strings.Repeat("Q", 60), false},
		{"short", "s3cret", false},
		{"empty", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := admin.CheckToken(tc.token)
			if tc.ok {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, admin.ErrWeakToken)
			if tc.token != "" {
				require.NotContains(t, err.Error(), tc.token)
			}
		})
	}
}

func writeFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "admin-tokens")
	require.NoError(t, os.WriteFile(path, []byte(content), mode))
	require.NoError(t, os.Chmod(path, mode))
	return path
}

// TestLoadOperators: the single admin_token is operator "admin"; the
// tokens file maps each token's SHA-256 to its operator; a weak
// admin_token, a file others may read, and a malformed line are refused
// naming the key and the line, never a token or a hash.
func TestLoadOperators(t *testing.T) {
	carol := "carol-Zk9xLw2_Rt7-Yq3mNc8vBp1hJd6sFa4uGe0iKo5TyWx"
	dave := "dave-7f3a9c2e5b8d1f4a6c0e9b2d5f8a1c4e7b0d3f6a9c2e5b8d"
	file := "# operators\n\n" + admin.TokenLine("carol", carol) + "\n  " + admin.TokenLine("dave", dave) + "  \n" +
		admin.TokenLine("carol", carol+"x") + "\n" // a second token of carol's (rotation)
	ops, err := admin.LoadOperators(aliceToken, writeFile(t, file, 0o600))
	require.NoError(t, err)
	require.Equal(t, 4, ops.Len())
	for token, want := range map[string]string{aliceToken: "admin", carol: "carol", carol + "x": "carol", dave: "dave"} {
		got, ok := ops.Operator(token)
		require.True(t, ok, want)
		require.Equal(t, want, got)
	}
	for _, bad := range []string{"", carol[:len(carol)-1], dave + " ", "Bearer " + carol} {
		_, ok := ops.Operator(bad)
		require.False(t, ok, bad)
	}

	// A weak token in the file cannot be used, though its hash matches.
	weak, err := admin.LoadOperators("", writeFile(t, admin.TokenLine("eve", "hunter2")+"\n", 0o600))
	require.NoError(t, err)
	_, ok := weak.Operator("hunter2")
	require.False(t, ok)

	sum := sha256.Sum256([]byte(carol))
	hash := hex.EncodeToString(sum[:])
	for _, tc := range []struct {
		name, token, file string
		mode              os.FileMode
		want              string
	}{
		{"weak admin_token", "s3cret-token", "", 0, "server.admin_token: admin token too weak"},
		{"readable file", "", "carol:" + hash + "\n", 0o644, "server.admin_tokens_file: " + "%s is open to group or others (mode 0644): run chmod 600"},
		{"group writable", "", "carol:" + hash + "\n", 0o620, "open to group or others (mode 0620)"},
		{"no colon", "", "# x\ncarol " + hash + "\n", 0o600, "server.admin_tokens_file: line 2: want operator:sha256-hex"},
		{"the token itself", "", "carol:" + carol + "\n", 0o600, "line 1: the hash is not 64 lower-case hex digits"},
		{"upper-case hash", "", "carol:" + strings.ToUpper(hash) + "\n", 0o600, "line 1: the hash is not 64"},
		{"bad operator", "", "car ol:" + hash + "\n", 0o600, `line 1: operator name "car ol"`},
		{"control character in operator", "", "car\x1bol:" + hash + "\n", 0o600, `line 1: operator name "car\x1bol"`},
		{"two operators, one token", "", "carol:" + hash + "\ndave:" + hash + "\n", 0o600, "line 2: operators carol and dave have the same token"},
		{"empty", "", "# nobody yet\n", 0o600, "server.admin_tokens_file: no tokens in it"},
		{"missing", "", "", 0, "server.admin_tokens_file: open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := ""
			switch {
			case tc.name == "missing":
				path = filepath.Join(t.TempDir(), "none")
			case tc.file != "":
				path = writeFile(t, tc.file, tc.mode)
			}
			want := strings.Replace(tc.want, "%s", path, 1)
			_, err := admin.LoadOperators(tc.token, path)
			require.ErrorContains(t, err, want)
			require.NotContains(t, err.Error(), hash)
			require.NotContains(t, err.Error(), carol)
			if tc.token != "" {
				require.NotContains(t, err.Error(), tc.token)
			}
			if tc.mode&0o077 != 0 {
				var perm *secrets.PermissionError
				require.ErrorAs(t, err, &perm)
			}
		})
	}
}
