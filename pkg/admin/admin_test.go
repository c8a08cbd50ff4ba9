package admin_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

type noSync struct{}

func (noSync) RunOrg(_ context.Context, org *config.Org, _ engine.OrgRun) engine.OrgResult {
	return engine.OrgResult{Org: org.Name}
}

type pinger struct{ err error }

func (p pinger) Ping(context.Context) error { return p.err }

var lastPool *pgxpool.Pool

// Tokens of 32 random bytes, as ehrsync admin token makes them.
const (
	aliceToken = "alice-0Jq3vX9mKp2LwT7yRb5NcF8hDs4GzUe1AiOoYtWk"
	bobToken   = "bob-7f3a9c2e5b8d1f4a6c0e9b2d5f8a1c4e7b0d3f6a9c2e5b8d"
)

// operators are alice and bob, each with a token.
func operators(t *testing.T) *admin.Operators {
	t.Helper()
	o := &admin.Operators{}
	require.NoError(t, o.AddToken("alice", aliceToken))
	require.NoError(t, o.AddToken("bob", bobToken))
	return o
}

type servers struct {
	admin, health *httptest.Server
}

func setup(t *testing.T, ops *admin.Operators, store admin.Pinger) (servers, *watermarks.Store, *admin.Server) {
	t.Helper()
	pool := pgtest.Pool(t)
	lastPool = pool
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &config.Config{Orgs: []config.Org{{Name: "st-mary", Schedule: config.Schedule{Cron: "0 2 * * *"},
		Tables: []config.Table{{Name: "dbo.claims"}}}}}
	d, err := daemon.New(cfg, noSync{}, nil, log, nil, daemon.Options{})
	require.NoError(t, err)
	positions := watermarks.NewStore(pool)
	if store == nil {
		store = pool
	}
	rec := audit.New(pool)
	s := &admin.Server{Daemon: d, Positions: positions, Store: store, Gatherer: prometheus.NewRegistry(),
		Audit: rec, Log: log, Operators: ops, Catalog: schemas.NextGen(),
		Resetter: &daemon.Resetter{Positions: positions, Leases: lease.NewManager(pool.Config().ConnConfig, nil), Audit: rec,
			Catalog: schemas.NextGen(), LeaseWait: 200 * time.Millisecond}}
	srv := servers{admin: httptest.NewServer(s.AdminHandler()), health: httptest.NewServer(s.HealthHandler())}
	t.Cleanup(srv.admin.Close)
	t.Cleanup(srv.health.Close)
	return srv, positions, s
}

// call sends a request with a bearer token (none when ""), and an
// X-Ehrsync-Operator header naming someone else: it must change nothing.
func call(t *testing.T, srv *httptest.Server, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("X-Ehrsync-Operator", "mallory")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

func TestAuth(t *testing.T) {
	srv, _, _ := setup(t, operators(t), nil)
	cases := []struct {
		name, token string
		want        int
	}{
		{"no token", "", http.StatusUnauthorized},
		{"wrong token", aliceToken[:len(aliceToken)-1], http.StatusUnauthorized},
		{"alice", aliceToken, http.StatusOK},
		{"bob", bobToken, http.StatusOK},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, body := call(t, srv.admin, http.MethodGet, "/admin/orgs", c.token, "")
			require.Equal(t, c.want, code, body)
		})
	}
	// Health and metrics need no token, on their own listener; the admin
	// API is not there.
	code, _ := call(t, srv.health, http.MethodGet, "/healthz", "", "")
	require.Equal(t, http.StatusOK, code)
	code, _ = call(t, srv.health, http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusOK, code)
	code, body := call(t, srv.health, http.MethodGet, "/admin/orgs", aliceToken, "")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, body, "server.admin_listen")
	code, _ = call(t, srv.admin, http.MethodGet, "/metrics", "", "")
	require.Equal(t, http.StatusNotFound, code, "metrics are not on the admin listener")
}

func TestNoTokenMeansAdminAPIOff(t *testing.T) {
	srv, _, _ := setup(t, &admin.Operators{}, nil)
	code, body := call(t, srv.admin, http.MethodGet, "/admin/orgs", "anything", "")
	require.Equal(t, http.StatusNotFound, code)
	require.Contains(t, body, "admin API is off")
	code, _ = call(t, srv.health, http.MethodGet, "/readyz", "", "")
	require.Equal(t, http.StatusOK, code)
}

func TestReadyzSaysWhy(t *testing.T) {
	srv, _, _ := setup(t, nil, pinger{errors.New("connection refused")})
	code, body := call(t, srv.health, http.MethodGet, "/readyz", "", "")
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Contains(t, body, "store unreachable")
}

func TestControlAndPositions(t *testing.T) {
	srv, positions, _ := setup(t, operators(t), nil)
	ctx := context.Background()
	require.NoError(t, positions.Reset(ctx, "st-mary", "dbo.claims", watermarks.CT{Version: 42}, "setup", "test"))

	code, body := call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/pause", aliceToken, "")
	require.Equal(t, http.StatusOK, code, body)
	code, body = call(t, srv.admin, http.MethodGet, "/admin/orgs", aliceToken, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"paused": true`)
	require.Contains(t, body, `"dbo.claims"`)
	code, _ = call(t, srv.admin, http.MethodPost, "/admin/orgs/nowhere/pause", aliceToken, "")
	require.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/sync", aliceToken, `{"tables": ["dbo.nope"]}`)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/backfill", aliceToken, "")
	require.Equal(t, http.StatusConflict, code, "backfills unavailable without a backfiller")
	code, _ = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/cancel", aliceToken, "")
	require.Equal(t, http.StatusConflict, code, "nothing running")

	// Reset needs the confirmation.
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", aliceToken, `{}`)
	require.Equal(t, http.StatusBadRequest, code, body)
	p, err := positions.Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.NotNil(t, p)
	// Rewind, then reset.
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", aliceToken,
		`{"confirm": "st-mary/dbo.claims", "position": {"v": 1, "kind": "ct", "version": 7}}`)
	require.Equal(t, http.StatusOK, code, body)
	p, err = positions.Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.Equal(t, watermarks.CT{Version: 7}, p)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", aliceToken,
		`{"confirm": "st-mary/dbo.claims", "position": null, "note": "re-sync"}`)
	require.Equal(t, http.StatusOK, code, body)
	p, err = positions.Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.Nil(t, p)
	hist, err := positions.History(ctx, "st-mary", "dbo.claims", 1)
	require.NoError(t, err)
	require.Equal(t, "admin-api:alice", hist[0].Actor)
	require.Equal(t, "re-sync", hist[0].Note)

	// Every admin action is audited, failed ones included, with the actor.
	var n, failed int
	require.NoError(t, lastPool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE outcome = 'failed')
		FROM ehrsync.audit WHERE action = 'admin' AND actor = 'admin-api:alice'`).Scan(&n, &failed))
	require.Equal(t, 7, n) // a request refused for a missing confirmation changes nothing and is not audited
	require.Equal(t, 4, failed)
	var rewound string
	require.NoError(t, lastPool.QueryRow(ctx, `SELECT to_position->>'kind' FROM ehrsync.audit WHERE what = 'rewind'`).Scan(&rewound))
	require.Equal(t, "ct", rewound)
}

// TestUnauditedActionIsAnError: an admin action whose audit record the
// store refuses answers 500 saying so, instead of 200 with a log line.
func TestUnauditedActionIsAnError(t *testing.T) {
	srv, _, _ := setup(t, operators(t), nil)
	code, body := call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/pause", aliceToken, "")
	require.Equal(t, http.StatusOK, code, body)
	// Every insert into the audit now fails, as a revoked INSERT would.
	_, err := lastPool.Exec(context.Background(), "ALTER TABLE ehrsync.audit ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
	require.NoError(t, err)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/resume", aliceToken, "")
	require.Equal(t, http.StatusInternalServerError, code, body)
	require.Contains(t, body, "resume done, but its audit record was not written (audit_not_written)")
}
