package status_test

import (
	"bytes"
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/status"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestLakeStatus: through real syncs into a directory warehouse, each
// table with lake on shows the lake's last commit, its rows, its claim and
// the position it holds to as a summary (the visits table's cursor holds
// keySentinel as its tie-break key: neither text nor JSON shows it); what
// waits in the outbox is counted, a chunk waiting longer than the
// staleness threshold puts the lake behind (attention), and a table
// without an outbox has nothing waiting.
func TestLakeStatus(t *testing.T) {
	ctx := context.Background()
	f := newFixtureLake(t, "", "file://"+t.TempDir())
	require.NotNil(t, f.svc.Lake, "the service opens the lake")

	rep := f.gather(t, status.Options{})
	visits := table(t, rep, "app.visits")
	require.NotNil(t, visits.Lake, "lake is on for the org's tables")
	require.True(t, visits.Lake.CommittedAt.IsZero(), "no lake commit before the first sync")
	require.Zero(t, visits.Lake.Waiting.Chunks, "no outbox before the first sync: nothing waits")
	require.Nil(t, visits.Lake.Position)

	f.sync(t)
	rep = f.gather(t, status.Options{})
	visits, codes := table(t, rep, "app.visits"), table(t, rep, "app.codes")
	for _, tb := range []status.Table{visits, codes} {
		require.NotNil(t, tb.Lake, tb.Name)
		require.False(t, tb.Lake.CommittedAt.IsZero(), tb.Name)
		require.GreaterOrEqual(t, tb.Lake.Claim, int64(1), tb.Name)
		require.NotZero(t, tb.Lake.SnapshotID, tb.Name)
		require.Zero(t, tb.Lake.Waiting, "the run flushed the outbox: "+tb.Name)
		require.False(t, tb.Lake.Behind, tb.Name)
	}
	require.GreaterOrEqual(t, visits.Lake.Rows, int64(2), "change rows appended (a catch-up may read one again)")
	require.Equal(t, int64(5), codes.Lake.Rows)
	cat, ok := f.svc.Engine.Catalog().Table("app.visits")
	require.True(t, ok)
	lt := engine.LakeTable(org, cat)
	require.Equal(t, lt.StateName(), visits.Lake.Table, "the lake table's name in ehrsync.lake_tables")
	require.Equal(t, watermarks.KindCursor, visits.Lake.Position.Kind)
	require.Equal(t, visits.Position.Text, visits.Lake.Position.Text, "the lake holds the store's changes up to its position")
	require.Empty(t, rep.Attention())

	// The lake's position as a cursor tie-break leaves it: after the key
	// keySentinel.
	var raw []byte
	require.NoError(t, f.svc.Store.QueryRow(ctx, "SELECT position FROM ehrsync.lake_tables WHERE table_name = $1", lt.StateName()).Scan(&raw))
	p, err := watermarks.Decode(raw)
	require.NoError(t, err)
	cur := p.(watermarks.Cursor)
	cur.Key = watermarks.Key{watermarks.String("text", keySentinel)}
	raw, err = watermarks.Encode(cur)
	require.NoError(t, err)
	_, err = f.svc.Store.Exec(ctx, "UPDATE ehrsync.lake_tables SET position = $1 WHERE table_name = $2", raw, lt.StateName())
	require.NoError(t, err)
	var stored string
	require.NoError(t, f.svc.Store.QueryRow(ctx, "SELECT string_agg(encode(position, 'escape'), ' ') FROM ehrsync.lake_tables").Scan(&stored))
	require.Contains(t, stored, keySentinel, "the test needs a lake position that holds the key value")
	rep = f.gather(t, status.Options{})
	visits = table(t, rep, "app.visits")
	require.Equal(t, 1, visits.Lake.Position.KeyValues, "the summary counts the key's values")

	var text, js bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.NoError(t, rep.WriteJSON(&js))
	t.Log("\n" + text.String())
	require.NotContains(t, text.String(), keySentinel)
	require.NotContains(t, js.String(), keySentinel)
	require.Contains(t, text.String(), "LAKE COMMIT")
	require.Contains(t, js.String(), `"committed_at"`)
	var back status.Report
	require.NoError(t, json.Unmarshal(js.Bytes(), &back))
	require.Equal(t, *visits.Lake, *back.Orgs[0].Tables[0].Lake, "the JSON reads back as the report (the CLI reads a daemon's so)")

	// Chunks waiting: one committed two hours ago, one now.
	outbox := lt.Outbox().Sanitize()
	_, err = f.svc.Store.Exec(ctx, `INSERT INTO `+outbox+` (batch, committed_at, rows, bytes, schema, data)
		VALUES (9001, now() - interval '2 hours', 3, 1000, '\x00', '\x00'), (9002, now(), 4, 2000, '\x00', '\x00')`)
	require.NoError(t, err)
	rep = f.gather(t, status.Options{})
	visits = table(t, rep, "app.visits")
	require.Equal(t, int64(2), visits.Lake.Waiting.Chunks)
	require.Equal(t, int64(7), visits.Lake.Waiting.Rows)
	require.Equal(t, int64(3000), visits.Lake.Waiting.Bytes)
	require.InDelta(t, (2 * time.Hour).Seconds(), rep.At.Sub(visits.Lake.Waiting.Since).Seconds(), 60)
	require.True(t, visits.Lake.Behind, "waiting two hours, longer than three 10m intervals")
	require.False(t, table(t, rep, "app.codes").Lake.Behind)
	problems := rep.Attention()
	require.Len(t, problems, 1)
	require.Equal(t, "lake behind", problems[0].What)
	require.Contains(t, problems[0].Detail, "2 chunks (7 rows, 2.9 KiB) committed to the store have waited for the change lake since")
	require.Contains(t, problems[0].Detail, "ehrsync lake flush --config FILE")
	text.Reset()
	require.NoError(t, rep.WriteText(&text))
	t.Log("\n" + text.String())
	require.Contains(t, text.String(), "2 chunks, 7 rows, 2.9 KiB, oldest 2h00m ago (behind)")
	require.Contains(t, text.String(), "1 need attention")

	// Under a threshold longer than the wait, the lake is not behind.
	require.False(t, table(t, f.gather(t, status.Options{StaleAfter: 3 * time.Hour}), "app.visits").Lake.Behind)

	// No outbox: nothing waits.
	_, err = f.svc.Store.Exec(ctx, "DROP TABLE "+outbox)
	require.NoError(t, err)
	visits = table(t, f.gather(t, status.Options{}), "app.visits")
	require.Zero(t, visits.Lake.Waiting)
	require.False(t, visits.Lake.Behind)
	require.False(t, visits.Lake.CommittedAt.IsZero(), "the last commit stays")
}

// TestLakeOffHasNoLakeStatus: tables without lake have no lake fields.
func TestLakeOffHasNoLakeStatus(t *testing.T) {
	f := newFixture(t, "")
	f.sync(t)
	rep := f.gather(t, status.Options{})
	require.Nil(t, table(t, rep, "app.visits").Lake)
	var text, js bytes.Buffer
	require.NoError(t, rep.WriteText(&text))
	require.NoError(t, rep.WriteJSON(&js))
	require.NotContains(t, text.String(), "LAKE")
	require.NotContains(t, js.String(), `"lake"`)
}
