package admin_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/watermarks"
)

// auditRows returns the admin audit rows as "actor what org table
// outcome", oldest first.
func auditRows(t *testing.T) []string {
	t.Helper()
	rows, err := lastPool.Query(context.Background(), `SELECT concat_ws(' ', actor, what, coalesce(org, '-'), coalesce(table_name, '-'), outcome)
		FROM ehrsync.audit WHERE action = 'admin' ORDER BY id`)
	require.NoError(t, err)
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		require.NoError(t, rows.Scan(&s))
		out = append(out, s)
	}
	require.NoError(t, rows.Err())
	return out
}

// TestActorIsTheCredential: the audited actor is the operator the token
// names; a header naming someone else (X-Ehrsync-Operator, sent by call
// with every request) changes nothing, in the audit or the history.
func TestActorIsTheCredential(t *testing.T) {
	srv, positions, _ := setup(t, operators(t), nil)
	ctx := context.Background()
	code, body := call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/pause", bobToken, "")
	require.Equal(t, http.StatusOK, code, body)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/resume", aliceToken, "")
	require.Equal(t, http.StatusOK, code, body)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", bobToken,
		`{"confirm": "st-mary/dbo.claims", "position": null}`)
	require.Equal(t, http.StatusOK, code, body)
	require.Equal(t, []string{
		"admin-api:bob pause st-mary - ok",
		"admin-api:alice resume st-mary - ok",
		"admin-api:bob reset st-mary dbo.claims ok",
	}, auditRows(t))
	hist, err := positions.History(ctx, "st-mary", "dbo.claims", 1)
	require.NoError(t, err)
	require.Equal(t, "admin-api:bob", hist[0].Actor)
	var mallory int
	require.NoError(t, lastPool.QueryRow(ctx, `SELECT (SELECT count(*) FROM ehrsync.audit a WHERE a::text LIKE '%mallory%')
		+ (SELECT count(*) FROM ehrsync.position_history h WHERE h::text LIKE '%mallory%')`).Scan(&mallory))
	require.Zero(t, mallory, "a header named the actor")
}

// TestNamesAreCheckedAndCanonical: organization and table names in the
// path and the body are matched against the loaded configuration (any
// case, dbo. by default) and used by their canonical names; a table the
// organization does not sync is 404 even when the catalog knows it; a
// control or bidirectional character is 400 naming the problem, before
// anything is done or audited.
func TestNamesAreCheckedAndCanonical(t *testing.T) {
	srv, positions, _ := setup(t, operators(t), nil)
	ctx := context.Background()
	require.NoError(t, positions.Reset(ctx, "st-mary", "dbo.claims", watermarks.CT{Version: 42}, "setup", "test"))

	code, body := call(t, srv.admin, http.MethodPost, "/admin/orgs/ST-Mary/pause", aliceToken, "")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"org": "st-mary"`)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/sync", aliceToken, `{"tables": ["CLAIMS"]}`)
	require.Equal(t, http.StatusAccepted, code, body)
	require.Contains(t, body, `"dbo.claims"`)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/St-Mary/tables/DBO.Claims/position", aliceToken,
		`{"confirm": "St-Mary/DBO.Claims", "position": {"v": 1, "kind": "ct", "version": 7}}`)
	require.Equal(t, http.StatusOK, code, body)
	p, err := positions.Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.Equal(t, watermarks.CT{Version: 7}, p, "the canonical table's position moved")
	list, err := positions.List(ctx, "")
	require.NoError(t, err)
	require.Len(t, list, 1, "no position under another spelling")
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/claims/position", aliceToken,
		`{"confirm": "st-mary/dbo.claims", "position": null}`)
	require.Equal(t, http.StatusOK, code, "the canonical confirmation is accepted too: %s", body)

	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.charges/position", aliceToken,
		`{"confirm": "st-mary/dbo.charges", "position": null}`)
	require.Equal(t, http.StatusNotFound, code, "a catalog table the organization does not sync: %s", body)
	require.Contains(t, body, "no such table in the organization's configuration")

	before := auditRows(t)
	require.Equal(t, []string{
		"admin-api:alice pause st-mary - ok",
		"admin-api:alice sync st-mary dbo.claims ok",
		"admin-api:alice rewind st-mary dbo.claims ok",
		"admin-api:alice reset st-mary dbo.claims ok",
		"admin-api:alice reset st-mary dbo.charges failed",
	}, before)

	for _, tc := range []struct {
		name, path, body, says string
	}{
		{"bell in org", "/admin/orgs/st%07mary/pause", "", "org name: control character U+0007 at byte 2"},
		{"escape in org", "/admin/orgs/st-mary%1b%5b2J/sync", "", "org name: control character U+001B at byte 7"},
		{"newline in table", "/admin/orgs/st-mary/tables/dbo.claims%0a/position", `{"confirm": "x"}`, "table name: control character U+000A"},
		{"bidi override in table", "/admin/orgs/st-mary/tables/dbo.%E2%80%AEclaims/position", `{"confirm": "x"}`, "table name: control character U+202E"},
		{"escape in body", "/admin/orgs/st-mary/sync", `{"tables": ["dbo.\u001b[31mclaims"]}`, "table name: control character U+001B"},
		{"carriage return in body", "/admin/orgs/st-mary/backfill", `{"tables": ["\rdbo.claims"]}`, "table name: control character U+000D at byte 0"},
		{"invalid utf-8", "/admin/orgs/st%ffmary/pause", "", "org name: not valid UTF-8"},
		{"too long", "/admin/orgs/" + strings.Repeat("a", 300) + "/pause", "", "org name: longer than 256 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, srv.admin, http.MethodPost, tc.path, aliceToken, tc.body)
			require.Equal(t, http.StatusBadRequest, code, body)
			require.Contains(t, body, tc.says)
			require.NotContains(t, body, "\x1b")
			require.NotContains(t, body, "\a")
		})
	}
	require.Equal(t, before, auditRows(t), "a refused name did nothing, and nothing was audited")
}

// TestPositionsOutOfTheAPIAndTheAudit: a position whose key
// holds a sentinel value is answered by GET /admin/orgs and by a rewind as
// its summary, and recorded in the audit as its summary: the sentinel is in
// no response and no audit row, while the position store still holds it.
func TestPositionsOutOfTheAPIAndTheAudit(t *testing.T) {
	const sentinel = "PATIENT-SENTINEL-4471"
	srv, positions, _ := setup(t, operators(t), nil)
	ctx := context.Background()
	key := watermarks.Key{watermarks.String("varchar(40)", sentinel)}
	require.NoError(t, positions.Reset(ctx, "st-mary", "dbo.claims", watermarks.CT{Version: 42, To: 50, LastKey: key}, "setup", "test"))

	code, body := call(t, srv.admin, http.MethodGet, "/admin/orgs", aliceToken, "")
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, sentinel)
	var orgs struct {
		Orgs []struct {
			Tables []struct {
				Name     string
				Position *watermarks.Summary
			}
		}
	}
	require.NoError(t, json.Unmarshal([]byte(body), &orgs))
	require.Equal(t, "dbo.claims", orgs.Orgs[0].Tables[0].Name)
	pos := orgs.Orgs[0].Tables[0].Position
	require.NotNil(t, pos)
	require.Equal(t, watermarks.KindCT, pos.Kind)
	require.Equal(t, int64(42), *pos.Version)
	require.Equal(t, int64(50), pos.WindowTo)
	require.Equal(t, 1, pos.KeyValues)

	// A rewind to another position holding the sentinel, then a reset.
	to, err := watermarks.Encode(watermarks.Cursor{Column: "modify_timestamp", Value: watermarks.String("varchar(40)", sentinel), Key: key})
	require.NoError(t, err)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", aliceToken,
		`{"confirm": "st-mary/dbo.claims", "position": `+string(to)+`}`)
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, sentinel)
	require.Contains(t, body, `"kind": "ct"`, "from, summarized")
	require.Contains(t, body, `"column": "modify_timestamp"`, "to, summarized")
	code, body = call(t, srv.admin, http.MethodGet, "/admin/orgs", aliceToken, "")
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, sentinel)
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", aliceToken,
		`{"confirm": "st-mary/dbo.claims", "position": null}`)
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, sentinel)

	var audited, leaked, kept int
	require.NoError(t, lastPool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE from_position IS NOT NULL OR to_position IS NOT NULL),
		count(*) FILTER (WHERE a::text LIKE '%' || $1 || '%') FROM ehrsync.audit a`, sentinel).Scan(&audited, &leaked))
	require.Equal(t, 2, audited, "the rewind and the reset recorded their positions")
	require.Zero(t, leaked, "an audit row holds the key value")
	require.NoError(t, lastPool.QueryRow(ctx, `SELECT count(*) FROM ehrsync.position_history h WHERE h::text LIKE '%' || $1 || '%'`,
		sentinel).Scan(&kept))
	require.Positive(t, kept, "the position history keeps the full positions (ehrsync positions show reads them)")
}

// TestResetTakesTheLease: a reset through the admin API waits for the
// table's lease, as `ehrsync positions reset` does (one daemon.Resetter):
// while a run holds it the position does not move and the request answers
// 409 when the wait ends; once released the reset goes through. The
// Resetter says it is waiting.
func TestResetTakesTheLease(t *testing.T) {
	srv, positions, s := setup(t, operators(t), nil)
	ctx := context.Background()
	require.NoError(t, positions.Reset(ctx, "st-mary", "dbo.claims", watermarks.CT{Version: 42}, "setup", "test"))
	leases := lease.NewManager(lastPool.Config().ConnConfig, nil)
	unlock, ok, err := leases.TryLock(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.True(t, ok)

	code, body := call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", aliceToken,
		`{"confirm": "st-mary/dbo.claims", "position": null}`)
	require.Equal(t, http.StatusConflict, code, body)
	require.Contains(t, body, "holds its lease")
	p, err := positions.Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.Equal(t, watermarks.CT{Version: 42}, p, "the position moved under a run")

	org, err := s.Daemon.Org("st-mary")
	require.NoError(t, err)
	waited := 0
	_, err = s.Resetter.Reset(ctx, daemon.ResetRequest{Org: &org, Table: "claims", Actor: "carol", Via: "a test",
		Waiting: func() { waited++ }})
	require.ErrorIs(t, err, lease.ErrBusy)
	require.Equal(t, 1, waited)

	unlock()
	code, body = call(t, srv.admin, http.MethodPost, "/admin/orgs/st-mary/tables/dbo.claims/position", aliceToken,
		`{"confirm": "st-mary/dbo.claims", "position": null}`)
	require.Equal(t, http.StatusOK, code, body)
	p, err = positions.Load(ctx, "st-mary", "dbo.claims")
	require.NoError(t, err)
	require.Nil(t, p)
	require.Equal(t, []string{
		"admin-api:alice reset st-mary dbo.claims failed",
		"carol reset st-mary dbo.claims failed",
		"admin-api:alice reset st-mary dbo.claims ok",
	}, auditRows(t))
}
