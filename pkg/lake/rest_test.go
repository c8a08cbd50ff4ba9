package lake

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// A REST catalog by configuration: the lake asks it for its configuration
// and its tables with the configured token. The stand-in answers only
// those two questions (no table yet).
func TestTheLakeOpensARESTCatalog(t *testing.T) {
	var mu sync.Mutex
	var auth, paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		auth, paths = append(auth, r.Header.Get("Authorization")), append(paths, r.URL.Path)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/v1/config":
			w.Write([]byte(`{"defaults": {}, "overrides": {}}`))
		case strings.HasPrefix(r.URL.Path, "/v1/namespaces/st_mary/tables/"):
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"error": {"message": "Table does not exist", "type": "NoSuchTableException", "code": 404}}`))
		default:
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer srv.Close()
	f := newFixture(t)
	ctx := context.Background()
	lk, err := Open(ctx, f.pool, Config{Warehouse: "file://" + t.TempDir(), REST: &RESTCatalog{URI: srv.URL, Token: "tok-123"}})
	require.NoError(t, err)
	defer lk.Close()
	st, err := lk.State(ctx, claims)
	require.NoError(t, err)
	require.False(t, st.Exists)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"/v1/config", "/v1/namespaces/st_mary/tables/claim_lines__changes"}, paths)
	for _, a := range auth {
		require.Equal(t, "Bearer tok-123", a)
	}
}

// A REST catalog that cannot be reached is an error naming its address.
func TestAnUnreachableRESTCatalogIsNamed(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	uri := srv.URL
	srv.Close()
	f := newFixture(t)
	_, err := Open(context.Background(), f.pool, Config{Warehouse: "file://" + t.TempDir(), REST: &RESTCatalog{URI: uri, Token: "tok-123"}})
	require.ErrorContains(t, err, "REST catalog at "+uri)
	require.NotContains(t, err.Error(), "tok-123")
}
