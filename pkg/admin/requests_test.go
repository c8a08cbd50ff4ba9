package admin_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// holdingBackfill is a backfiller whose backfills run until their run is
// canceled, saying when one has begun.
type holdingBackfill struct {
	begun chan string // the table of each backfill begun
}

func (holdingBackfill) CheckRange(*config.Org, string, engine.Range) error { return nil }

func (b holdingBackfill) Backfill(ctx context.Context, org *config.Org, table string, _ engine.Range, _ string) (engine.TableResult, error) {
	b.begun <- table
	<-ctx.Done()
	return engine.TableResult{Org: org.Name, Table: table, Err: ctx.Err()}, nil
}

// runningDaemon serves the admin API of a running daemon for st-mary
// (dbo.claims, dbo.charges) whose syncs do nothing and whose backfills
// hold until canceled.
func runningDaemon(t *testing.T) (*httptest.Server, *daemon.Daemon, holdingBackfill) {
	t.Helper()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &config.Config{Orgs: []config.Org{{Name: "st-mary", Schedule: config.Schedule{Cron: "0 2 1 1 *"},
		Tables: []config.Table{{Name: "dbo.claims"}, {Name: "dbo.charges"}}}}}
	bf := holdingBackfill{begun: make(chan string, 4)}
	// A stop cancels the holding backfill at once.
	d, err := daemon.New(cfg, noSync{}, bf, log, nil, daemon.Options{Grace: time.Millisecond})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = d.Run(ctx, daemon.Serve{}) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	s := &admin.Server{Daemon: d, Positions: watermarks.NewStore(pool), Store: pool, Gatherer: prometheus.NewRegistry(),
		Audit: audit.New(pool), Log: log, Operators: operators(t), Catalog: schemas.NextGen()}
	srv := httptest.NewServer(s.AdminHandler())
	t.Cleanup(srv.Close)
	return srv, d, bf
}

// answer is an admin API answer: success or error.
type answer struct {
	Error    string          `json:"error"`
	Request  *daemon.Request `json:"request"`
	Existing *daemon.Request `json:"existing"`
	Canceled *daemon.Request `json:"canceled"`
	Queued   *daemon.Request `json:"queued"`
	Allow    []string        `json:"allow"`
	Header   http.Header     `json:"-"`
	Code     int             `json:"-"`
}

// send sends a request and decodes its answer, which must be JSON,
// whatever its status.
func send(t *testing.T, srv *httptest.Server, method, path, token, body string) answer {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"), "%s %s answered %d: %s", method, path, resp.StatusCode, b)
	var a answer
	require.NoError(t, json.Unmarshal(b, &a), "%s %s answered %d: %s", method, path, resp.StatusCode, b)
	a.Code, a.Header = resp.StatusCode, resp.Header
	if a.Code >= 400 {
		require.NotEmpty(t, a.Error, "an error answer without its error: %s", b)
	}
	return a
}

// TestRepeatedRequestsAreRefusedOrJoined: a backfill asked for while one of
// the same table runs is refused (409) naming it (id, state, who asked);
// a sync asked for while one is queued joins it; a request that would
// replace a queued one of another kind is refused naming that one. A
// cancel says what it canceled and what stays queued, and, with nothing
// running, says so.
func TestRepeatedRequestsAreRefusedOrJoined(t *testing.T) {
	srv, d, bf := runningDaemon(t)
	first := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/backfill", aliceToken, `{"tables": ["claims"]}`)
	require.Equal(t, http.StatusAccepted, first.Code)
	require.NotNil(t, first.Request)
	require.Equal(t, "backfill", first.Request.Kind)
	require.Equal(t, []string{"dbo.claims"}, first.Request.Tables)
	require.Equal(t, "queued", first.Request.State)
	require.Equal(t, "admin-api:alice", first.Request.Actor)
	require.Equal(t, "dbo.claims", <-bf.begun)

	again := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/backfill", bobToken, `{"tables": ["dbo.claims"]}`)
	require.Equal(t, http.StatusConflict, again.Code)
	require.NotNil(t, again.Existing)
	require.Equal(t, first.Request.ID, again.Existing.ID)
	require.Equal(t, "running", again.Existing.State)
	require.Contains(t, again.Error, "a backfill of dbo.claims is running (request "+first.Request.ID+", asked by admin-api:alice)")
	all := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/backfill", bobToken, "")
	require.Equal(t, http.StatusConflict, all.Code, "a backfill of every table overlaps the running one")

	sync1 := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/sync", bobToken, `{"tables": ["dbo.charges"]}`)
	require.Equal(t, http.StatusAccepted, sync1.Code)
	require.Equal(t, "queued", sync1.Request.State)
	require.Equal(t, first.Request.ID, sync1.Request.After)
	require.False(t, sync1.Request.Joined)
	sync2 := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/sync", aliceToken, `{"tables": ["dbo.claims"]}`)
	require.Equal(t, http.StatusAccepted, sync2.Code)
	require.True(t, sync2.Request.Joined)
	require.Equal(t, sync1.Request.ID, sync2.Request.ID)
	require.Equal(t, []string{"dbo.charges", "dbo.claims"}, sync2.Request.Tables)
	other := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/backfill", aliceToken, `{"tables": ["dbo.charges"]}`)
	require.Equal(t, http.StatusConflict, other.Code, "a backfill would have replaced the queued sync")
	require.Equal(t, sync1.Request.ID, other.Existing.ID)
	require.Equal(t, "queued", other.Existing.State)

	canceled := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/cancel", bobToken, "")
	require.Equal(t, http.StatusOK, canceled.Code)
	require.Equal(t, first.Request.ID, canceled.Canceled.ID)
	require.Equal(t, "backfill", canceled.Canceled.Kind)
	require.Equal(t, []string{"dbo.claims"}, canceled.Canceled.Tables)
	require.Equal(t, sync1.Request.ID, canceled.Queued.ID, "the cancel does not say what runs next")
	require.Eventually(t, func() bool {
		s := d.Status()[0]
		return s.State == "idle" && !s.Queued
	}, time.Minute, 5*time.Millisecond)
	none := send(t, srv, http.MethodPost, "/admin/orgs/st-mary/cancel", bobToken, "")
	require.Equal(t, http.StatusConflict, none.Code)
	require.Contains(t, none.Error, "nothing was running")
}

// TestErrorsAreJSON: every error the admin API answers is JSON like its
// successes, with a Content-Type saying so: unauthorized, unknown
// organization, unknown endpoint, a method the endpoint does not take, a
// bad body, and the admin API turned off.
func TestErrorsAreJSON(t *testing.T) {
	srv, _, _ := setup(t, operators(t), nil)
	tests := []struct {
		name, method, path, token, body string
		code                            int
		says                            string
	}{
		{"no token", http.MethodGet, "/admin/orgs", "", "", http.StatusUnauthorized, "unauthorized"},
		{"unknown org", http.MethodPost, "/admin/orgs/nowhere/pause", aliceToken, "", http.StatusNotFound, "no such organization"},
		{"unknown endpoint", http.MethodGet, "/admin/nothing", aliceToken, "", http.StatusNotFound, "no such admin API endpoint"},
		{"wrong method", http.MethodGet, "/admin/orgs/st-mary/sync", aliceToken, "", http.StatusMethodNotAllowed, "GET is not allowed on this path: use POST"},
		{"bad body", http.MethodPost, "/admin/orgs/st-mary/sync", aliceToken, `{"tabels": []}`, http.StatusBadRequest, "unknown field"},
		{"nothing to cancel", http.MethodPost, "/admin/orgs/st-mary/cancel", aliceToken, "", http.StatusConflict, "nothing was running"},
		{"no status here", http.MethodGet, "/admin/status", aliceToken, "", http.StatusServiceUnavailable, "status is not available here"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := send(t, srv.admin, tc.method, tc.path, tc.token, tc.body)
			require.Equal(t, tc.code, a.Code)
			require.Contains(t, a.Error, tc.says)
		})
	}
	a := send(t, srv.admin, http.MethodDelete, "/admin/orgs", aliceToken, "")
	require.Equal(t, http.StatusMethodNotAllowed, a.Code)
	require.Contains(t, a.Allow, "GET")
	require.Contains(t, a.Header.Get("Allow"), "GET")
	unauthorized := send(t, srv.admin, http.MethodGet, "/admin/orgs", "", "")
	require.Equal(t, `Bearer realm="ehrsync"`, unauthorized.Header.Get("WWW-Authenticate"))
	notHere := send(t, srv.health, http.MethodGet, "/admin/orgs", aliceToken, "")
	require.Equal(t, http.StatusNotFound, notHere.Code)
	require.Contains(t, notHere.Error, "server.admin_listen")

	off, _, _ := setup(t, &admin.Operators{}, nil)
	a = send(t, off.admin, http.MethodGet, "/admin/orgs", "anything", "")
	require.Equal(t, http.StatusNotFound, a.Code)
	require.Contains(t, a.Error, "admin API is off")
}
