package sink

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestNotifyPerOrganization: each committed batch is notified on its
// organization's channel (ehrsync_<schema>, LISTENed to unquoted) and on
// the shared NotifyChannel kept for older listeners. A listener on one
// organization's channel receives that organization's batches and never
// another's: batches of two organizations interleave, and each listener's
// last notification is one committed after every batch of the other
// organization (PostgreSQL delivers notifications in commit order), so
// anything of the other's sent to it would have arrived before.
func TestNotifyPerOrganization(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	require.Equal(t, "ehrsync_st_mary", OrgChannel("st-mary"))
	targets := map[string]*Target{}
	for _, org := range []string{"st-mary", "north-ridge"} {
		tg, err := f.sink.Prepare(ctx, org, claimLines(t), TableOptions{})
		require.NoError(t, err)
		targets[org] = tg
	}
	listen := func(channel string) *pgxpool.Conn {
		conn, err := f.pool.Acquire(ctx)
		require.NoError(t, err)
		t.Cleanup(conn.Release)
		_, err = conn.Exec(ctx, "LISTEN "+channel)
		require.NoError(t, err)
		return conn
	}
	mary, north, all := listen(OrgChannel("st-mary")), listen(OrgChannel("north-ridge")), listen(NotifyChannel)

	// N1, M1, N2, M2, N3, M3, N4: each organization's listener ends on a
	// batch committed after every batch of the other.
	order := []string{"north-ridge", "st-mary", "north-ridge", "st-mary", "north-ridge", "st-mary", "north-ridge"}
	pos := map[string]watermarks.Position{}
	for i, org := range order {
		to := cursorAt(int64(i + 1))
		_, err := f.apply(t, targets[org], pos[org], to, change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
		require.NoError(t, err)
		pos[org] = to
	}

	receive := func(conn *pgxpool.Conn, n int) []notice {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var got []notice
		for range n {
			msg, err := conn.Conn().WaitForNotification(wctx)
			require.NoError(t, err)
			var nt notice
			require.NoError(t, json.Unmarshal([]byte(msg.Payload), &nt))
			got = append(got, nt)
		}
		return got
	}
	orgs := func(ns []notice) []string {
		out := make([]string, len(ns))
		for i, n := range ns {
			out[i] = n.Org
		}
		return out
	}
	gotMary := receive(mary, 3)
	require.Equal(t, []string{"st-mary", "st-mary", "st-mary"}, orgs(gotMary), "st-mary's listener received another organization's batch")
	require.Equal(t, cursorAt(6).String(), gotMary[2].Position, "st-mary's last batch, committed after every north-ridge batch but the last")
	gotNorth := receive(north, 4)
	require.Equal(t, []string{"north-ridge", "north-ridge", "north-ridge", "north-ridge"}, orgs(gotNorth), "north-ridge's listener received another organization's batch")
	require.Equal(t, cursorAt(7).String(), gotNorth[3].Position)
	require.Equal(t, order, orgs(receive(all, len(order))), "the shared channel carries every batch, in commit order")
}
