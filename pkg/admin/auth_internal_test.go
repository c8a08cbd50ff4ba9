package admin

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestAuthComparesEqualLengthDigests: the token check hands
// subtle.ConstantTimeCompare two values of one length whatever the token
// tried (subtle returns early on a length mismatch, which would tell a
// prober the token's length), and never the token itself.
func TestAuthComparesEqualLengthDigests(t *testing.T) {
	const token = "the-real-admin-token-0123456789abcdefghijklmnop"
	var seen [][2][]byte
	orig := constantTimeCompare
	t.Cleanup(func() { constantTimeCompare = orig })
	constantTimeCompare = func(x, y []byte) int {
		seen = append(seen, [2][]byte{append([]byte(nil), x...), append([]byte(nil), y...)})
		return orig(x, y)
	}
	ops := &Operators{}
	require.NoError(t, ops.AddToken("alice", token))
	s := &Server{Operators: ops}
	h := s.auth(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer " + token, http.StatusOK},
		{"Bearer " + token[:len(token)-1], http.StatusUnauthorized},
		{"Bearer " + token + "x", http.StatusUnauthorized},
		{"Bearer x", http.StatusUnauthorized},
		{"Bearer ", http.StatusUnauthorized},
		{"Basic " + token, http.StatusUnauthorized},
		{"", http.StatusUnauthorized},
	} {
		r := httptest.NewRequest(http.MethodGet, "/admin/orgs", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		w := httptest.NewRecorder()
		h(w, r)
		require.Equal(t, tc.want, w.Code, "Authorization: %q", tc.header)
	}
	require.Len(t, seen, 7, "every request is compared, the malformed ones too")
	for _, pair := range seen {
		require.Len(t, pair[0], 32)
		require.Len(t, pair[1], 32)
		require.NotContains(t, string(pair[1]), "admin-token", "the token itself is compared, not its digest")
	}
}
