package cdc_test

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel/mssqltest"
)

// TestWireD6AgentHealthInServerTime (D6): the capture agent's health over
// the wire on a server whose time zone is far from UTC. end_time in
// sys.dm_cdc_log_scan_sessions is the server's local wall clock without a
// zone (go-mssqldb hands it back as if it were UTC), so the age of the
// last log scan must be computed on the server (DATEDIFF against
// GETDATE()).
//
// The cases are built so that the old client-side computation (MAX(end_time)
// compared with the client's UTC clock, here the model's instant, the
// server's own now) is wrong by construction: in Chicago (UTC-6) a scan 10 s
// ago has an end_time six hours behind UTC now, so the old code called a
// healthy agent stale; in Kolkata (UTC+5:30) a scan 2 h ago has an end_time
// 3.5 h ahead of UTC now, a negative age, so the old code called a stopped
// agent healthy. oldStale recomputes that verdict over the wire and each
// case says whether it differs.
func TestWireD6AgentHealthInServerTime(t *testing.T) {
	chicago, err := time.LoadLocation("America/Chicago")
	require.NoError(t, err)
	kolkata, err := time.LoadLocation("Asia/Kolkata")
	require.NoError(t, err)
	const maxLag = 5 * time.Minute
	cases := []struct {
		name     string
		zone     *time.Location
		ago      time.Duration // since the last log scan; 0: no scan at all
		stale    bool
		reason   string
		oldWrong bool // the old client-side verdict differs
	}{
		{name: "chicago scan 10s ago is healthy", zone: chicago, ago: 10 * time.Second, oldWrong: true},
		{name: "chicago scan 2h ago is stale", zone: chicago, ago: 2 * time.Hour, stale: true, reason: "no log scan for 2h0m0s"},
		{name: "kolkata scan 10s ago is healthy", zone: kolkata, ago: 10 * time.Second},
		{name: "kolkata scan 2h ago is stale", zone: kolkata, ago: 2 * time.Hour, stale: true, reason: "no log scan for 2h0m0s", oldWrong: true},
		// Without any log scan session nothing was harvested either (the
		// model records a session at every harvest): the agent never ran.
		{name: "chicago no session and nothing harvested", zone: chicago, stale: true, reason: "harvested nothing"},
		{name: "kolkata no session and nothing harvested", zone: kolkata, stale: true, reason: "harvested nothing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := captured(t, mssqlmodel.Options{ServerZone: c.zone, Now: time.Date(2026, 1, 5, 14, 0, 0, 0, time.UTC)}, c.ago > 0)
			if c.ago > 0 {
				s.Model.Advance(c.ago)
			}
			src := &cdc.SQLServer{DB: s.pool}
			st, err := src.Agent(context.Background())
			require.NoError(t, err)
			if c.ago > 0 {
				require.Equal(t, c.ago, st.SinceScan, "the age as the server computes it")
			} else {
				require.Equal(t, time.Duration(-1), st.SinceScan, "no session: unknown")
			}
			h, err := cdc.CheckAgent(context.Background(), src, maxLag)
			require.NoError(t, err)
			require.Equal(t, c.stale, h.Stale, h.Reason)
			if c.reason == "" {
				require.Empty(t, h.Reason)
			} else {
				require.Contains(t, h.Reason, c.reason)
			}
			if c.ago > 0 {
				require.Equal(t, c.oldWrong, oldStale(t, s.pool, s.Model.Now(), maxLag) != c.stale,
					"the old client-side verdict's error is what the case was built for")
			}
		})
	}
	t.Run("no session after a restart, harvested LSN kept", func(t *testing.T) {
		s := captured(t, mssqlmodel.Options{ServerZone: chicago, Now: time.Date(2026, 1, 5, 14, 0, 0, 0, time.UTC)}, true)
		s.Model.Advance(time.Hour)
		s.Model.Restart() // the DMV starts empty; the harvested LSN stays
		src := &cdc.SQLServer{DB: s.pool}
		st, err := src.Agent(context.Background())
		require.NoError(t, err)
		require.False(t, st.HarvestedLSN.IsZero())
		require.Equal(t, time.Duration(-1), st.SinceScan)
		h, err := cdc.CheckAgent(context.Background(), src, maxLag)
		require.NoError(t, err)
		require.False(t, h.Stale, "no session on record is unknown, not stopped: %s", h.Reason)
		require.Contains(t, h.Reason, "no finished log scan on record")
	})
	t.Run("without VIEW DATABASE STATE the health is unknown and names the grant", func(t *testing.T) {
		s := captured(t, mssqlmodel.Options{ServerZone: chicago}, true)
		s.Model.AddLogin(mssqltest.User, "db_datareader")
		h, err := cdc.CheckAgent(context.Background(), &cdc.SQLServer{DB: s.pool}, maxLag)
		require.NoError(t, err)
		require.False(t, h.Stale)
		require.Contains(t, h.Reason, "GRANT VIEW DATABASE STATE")
	})
}

// captured serves a model whose table dbo.t is captured by CDC; with
// harvested, one insert into it has been harvested (which records a log
// scan session).
func captured(t *testing.T, opts mssqlmodel.Options, harvested bool) *wireServer {
	t.Helper()
	s := serveCDC(t, opts)
	require.NoError(t, s.Model.CreateTable(wireTable(t)))
	s.Model.EnableCDCDatabase()
	_, err := s.Model.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.t"})
	require.NoError(t, err)
	if harvested {
		wireInsert(t, s.Model, 1)
		require.Equal(t, 1, s.Model.Harvest())
	}
	return s
}

// oldStale is the verdict of the code before D6's fix: the newest log scan
// session's end_time, read as the driver returns it, subtracted from the
// client's UTC clock (now: the instant the server's clock shows).
func oldStale(t *testing.T, db *sql.DB, now time.Time, maxLag time.Duration) bool {
	t.Helper()
	var last sql.NullTime
	var errs int64
	require.NoError(t, db.QueryRowContext(context.Background(), `SELECT
  (SELECT MAX(end_time) FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0),
  (SELECT COUNT(*) FROM sys.dm_cdc_errors)`).Scan(&last, &errs))
	require.True(t, last.Valid)
	return now.Sub(last.Time) > maxLag
}
