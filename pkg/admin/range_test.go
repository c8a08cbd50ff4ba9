package admin_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/backfill"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestBackfillRangeRequests: the backfill endpoint takes a key range of
// one table; a range that does not parse is a 400 naming the column and
// the format (never echoing the value), a range over several tables or on
// a sync is refused, and an accepted one is audited without its values.
// The daemon is not running: accepted requests only queue.
func TestBackfillRangeRequests(t *testing.T) {
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := &config.Config{Orgs: []config.Org{{Name: "st-mary", Schedule: config.Schedule{Cron: "0 2 * * *"},
		Source: config.Source{Dialect: config.SQLServer},
		Tables: []config.Table{{Name: "dbo.claims"}, {Name: "dbo.charges"}}}}}
	bf := backfill.New(engine.New(nil, nil, nil, schemas.NextGen()), pool, nil, backfill.Options{Log: log})
	d, err := daemon.New(cfg, noSync{}, bf, log, nil, daemon.Options{})
	require.NoError(t, err)
	s := &admin.Server{Daemon: d, Positions: watermarks.NewStore(pool), Store: pool, Gatherer: prometheus.NewRegistry(),
		Audit: audit.New(pool), Log: log, Operators: operators(t), Catalog: schemas.NextGen()}
	srv := httptest.NewServer(s.AdminHandler())
	t.Cleanup(srv.Close)

	const guid = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
	tests := []struct {
		name, path, body string
		code             int
		says             string
	}{
		{"bad key", "backfill", `{"tables": ["dbo.claims"], "from": "patient-42"}`, http.StatusBadRequest, "column claim_id (uniqueidentifier): want a GUID"},
		{"two tables", "backfill", `{"tables": ["dbo.claims", "dbo.charges"], "to": "` + guid + `"}`, http.StatusBadRequest, "exactly one table"},
		{"on a sync", "sync", `{"tables": ["dbo.claims"], "from": "` + guid + `"}`, http.StatusBadRequest, "exactly one table"},
		{"unknown table", "backfill", `{"tables": ["dbo.nope"], "from": "` + guid + `"}`, http.StatusNotFound, "no such table"},
		{"accepted", "backfill", `{"tables": ["dbo.claims"], "from": "` + guid + `", "to": "` + guid + `"}`, http.StatusAccepted, "backfill key range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, srv, http.MethodPost, "/admin/orgs/st-mary/"+tc.path, aliceToken, tc.body)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.says)
			require.NotContains(t, body, "patient-42")
		})
	}
	var audited int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM ehrsync.audit
		WHERE action = 'admin' AND what = 'backfill key range' AND outcome = 'ok' AND actor = 'admin-api:alice'`).Scan(&audited))
	require.Equal(t, 1, audited)
	var leaked int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM ehrsync.audit WHERE audit::text LIKE '%6f9619ff%'`).Scan(&leaked))
	require.Zero(t, leaked, "key bounds are not in the audit")
	require.Equal(t, "idle", d.Status()[0].State)
	require.True(t, d.Status()[0].Queued)
}
