package changetracking_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Tests beyond the conformance suite (TestConformanceTDS, in
// tds_test.go): P3 in its exact shape, every key type, bad input.

// TestP3IdleTableAdvancesToWindowBound: an idle table's position moves to
// the window's upper bound (the database's current version) in one chunk
// with no rows, so it does not age out of retention.
func TestP3IdleTableAdvancesToWindowBound(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	before := h.pos.(watermarks.CT)
	h.db.m.Touch()
	h.db.m.Touch()
	res := h.sync(0)
	require.Equal(t, 1, res.heartbeats)
	require.Zero(t, res.rows)
	require.Equal(t, watermarks.CT{Version: h.db.Version()}, h.pos)
	require.Greater(t, h.pos.(watermarks.CT).Version, before.Version)
	// Nothing moved since: no chunk at all.
	res = h.sync(0)
	require.Zero(t, res.chunks)
}

// TestConformanceModelEveryKeyType: keys of each supported kind page in
// the server's order (GUIDs by SQL Server byte groups, PITFALLS.md P12)
// across chunk boundaries, and resume by typed key.
func TestEveryKeyTypePagesInServerOrder(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		vals func(i int) any
	}{
		{"uniqueidentifier", func(int) any { return mssqlmodel.GUIDWire(uuid.New()) }},
		{"int", func(i int) any { return int64(i * 7 % 23) }},
		{"bigint", func(i int) any { return int64(i%2*2-1) * (int64(1) << 40) * int64(i+1) }},
		{"varchar(10)", func(i int) any { return string(rune('a'+i%23)) + "k" }},
	} {
		t.Run(tc.typ, func(t *testing.T) {
			tb := mustTable(t, "keys", []string{"k"}, []colSpec{{"k", tc.typ, false}, {"practice_id", "char(4)", false}, {"modify_timestamp", "datetime", false}})
			h := newHarness(t, tb)
			h.rows = 4
			seen := map[string]bool{}
			var rows [][]any
			for i := 0; len(rows) < 15; i++ {
				v := tc.vals(i)
				if seen[canonAny(v)] {
					continue
				}
				seen[canonAny(v)] = true
				rows = append(rows, []any{v, practice, h.clock})
			}
			require.NoError(t, h.db.Insert(tb, rows[:7]...))
			h.syncAll()
			require.NoError(t, h.db.Insert(tb, rows[7:]...))
			require.NoError(t, h.db.Delete(tb, rows[0]))
			h.sync(1)
			require.True(t, h.pos.(watermarks.CT).InWindow())
			h.syncAll()
			h.requireConverged()
			require.Len(t, h.store, 14)
		})
	}
}

func canonAny(v any) string { return fmt.Sprintf("%T:%v", v, v) }

func TestNewRejectsBadInput(t *testing.T) {
	h := newHarness(t, linesTable(t))
	_, err := changetracking.NewSQLServer(h.db.db, nil, changetracking.Options{})
	require.Error(t, err)
	_, err = changetracking.NewSQLServer(h.db.db, h.table, changetracking.Options{Bounds: extractors.Bounds{ChunkRows: -1}})
	require.Error(t, err)
	pg := *h.table
	pg.Dialect = schemas.Postgres
	_, err = changetracking.NewSQLServer(h.db.db, &pg, changetracking.Options{})
	require.Error(t, err)
}

func requireExpired(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, extractors.ErrExpired)
	var ee *extractors.ExpiredError
	require.True(t, errors.As(err, &ee))
	require.Contains(t, ee.Reason, "minimum valid version")
}
