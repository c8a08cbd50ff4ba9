package admin_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/status"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Key values in the two organizations' positions: no answer may hold
// either, and an answer about one organization nothing of the other.
const (
	maryKey = "MaryK3y-Sentinel"
	lukeKey = "LukeK3y-Sentinel"
)

// TestStatusEndpoint: GET /admin/status answers `ehrsync status`'s report
// with the daemon's facts, for the organization (and tables) asked for
// only, with positions as summaries; names are checked; a token is needed.
func TestStatusEndpoint(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(ctx, pool))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &config.Config{Orgs: []config.Org{
		{Name: "st-mary", Schedule: config.Schedule{Every: time.Hour}, Tables: []config.Table{{Name: "dbo.claims"}, {Name: "dbo.charges"}}},
		{Name: "st-luke", Schedule: config.Schedule{Every: time.Hour}, Tables: []config.Table{{Name: "dbo.claims"}}},
	}}
	d, err := daemon.New(cfg, noSync{}, nil, log, nil, daemon.Options{})
	require.NoError(t, err)
	positions := watermarks.NewStore(pool)
	st := status.New(pool)
	s := &admin.Server{Daemon: d, Positions: positions, Store: pool, Gatherer: prometheus.NewRegistry(), Log: log,
		Operators: operators(t), Catalog: schemas.NextGen(), Status: st}
	srv := httptest.NewServer(s.AdminHandler())
	t.Cleanup(srv.Close)

	key := func(v string) watermarks.Key { return watermarks.Key{watermarks.String("varchar", v)} }
	require.NoError(t, positions.Reset(ctx, "st-mary", "dbo.claims", watermarks.Snapshot{LastKey: key(maryKey)}, "alice", ""))
	require.NoError(t, positions.Reset(ctx, "st-luke", "dbo.claims",
		watermarks.CT{Version: 9, To: 12, LastKey: key(lukeKey)}, "alice", ""))
	require.NoError(t, st.TableAttempt(ctx, "daemon", time.Second, engine.TableResult{Org: "st-luke", Table: "dbo.claims",
		RunID: "r1", Strategy: "change_tracking", Err: errors.New("boom")}))
	var stored string
	require.NoError(t, pool.QueryRow(ctx, "SELECT string_agg(position::text, ' ') FROM ehrsync.positions").Scan(&stored))
	require.Contains(t, stored, maryKey)
	require.Contains(t, stored, lukeKey)

	get := func(t *testing.T, path string) (int, string, *status.Report) {
		t.Helper()
		code, body := call(t, srv, http.MethodGet, path, aliceToken, "")
		require.NotContains(t, body, maryKey)
		require.NotContains(t, body, lukeKey)
		if code != http.StatusOK {
			return code, body, nil
		}
		var rep status.Report
		require.NoError(t, json.Unmarshal([]byte(body), &rep), body)
		require.Equal(t, "daemon", rep.From)
		return code, body, &rep
	}

	t.Run("one org", func(t *testing.T) {
		_, body, rep := get(t, "/admin/status?org=st-mary")
		require.NotContains(t, body, "st-luke", "another organization's data")
		require.Len(t, rep.Orgs, 1)
		o := rep.Orgs[0]
		require.Equal(t, "st-mary", o.Name)
		require.NotNil(t, o.Daemon)
		require.Equal(t, "idle", o.Daemon.State)
		require.Len(t, o.Tables, 2)
		require.Equal(t, status.StateSnapshotting, o.Tables[0].State)
		require.Equal(t, 1, o.Tables[0].Position.KeyValues)
		require.Equal(t, o.Daemon.NextRun, o.Tables[0].NextRun, "the daemon's next run")
	})
	t.Run("every org", func(t *testing.T) {
		_, _, rep := get(t, "/admin/status")
		require.Len(t, rep.Orgs, 2)
		var luke status.Org
		for _, o := range rep.Orgs {
			if o.Name == "st-luke" {
				luke = o
			}
		}
		require.Equal(t, status.StateFailing, luke.Tables[0].State)
		require.Equal(t, "change_tracking", luke.Tables[0].Strategy)
	})
	t.Run("one table", func(t *testing.T) {
		_, _, rep := get(t, "/admin/status?org=ST-MARY&table=charges&stale_after=2h")
		require.Equal(t, "st-mary", rep.Orgs[0].Name, "the canonical name")
		require.Len(t, rep.Orgs[0].Tables, 1)
		require.Equal(t, "dbo.charges", rep.Orgs[0].Tables[0].Name)
		require.Equal(t, (2 * time.Hour).Seconds(), rep.Orgs[0].Tables[0].StaleAfterSeconds)
	})
	for _, c := range []struct {
		name, path string
		want       int
	}{
		{"a table without its org", "/admin/status?table=dbo.claims", http.StatusBadRequest},
		{"an unknown org", "/admin/status?org=nowhere", http.StatusNotFound},
		{"an unknown table", "/admin/status?org=st-mary&table=dbo.nope", http.StatusNotFound},
		{"a control character", "/admin/status?org=st-mary%1b", http.StatusBadRequest},
		{"a bad threshold", "/admin/status?stale_after=soon", http.StatusBadRequest},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, body, _ := get(t, c.path)
			require.Equal(t, c.want, code, body)
			var e struct {
				Error string `json:"error"`
			}
			require.NoError(t, json.Unmarshal([]byte(body), &e), "an admin API error is JSON: %s", body)
			require.NotEmpty(t, e.Error, body)
		})
	}
	t.Run("no token", func(t *testing.T) {
		code, _ := call(t, srv, http.MethodGet, "/admin/status", "", "")
		require.Equal(t, http.StatusUnauthorized, code)
	})
}
