package changetracking_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/changetracking"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The conformance cases of package extractortest, run against the model
// (extractortest drives a real *sql.DB source, which Change Tracking has
// only on a live SQL Server: see mssql_live_test.go).

func TestConformanceModelInsert(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	require.NoError(t, h.db.Insert(h.full, raws(h.newLines(12, practice))...))
	require.NoError(t, h.db.Insert(h.full, raws(h.newLines(3, otherPractice))...))
	h.syncAll()
	h.requireConverged()
	require.Len(t, h.store, 37, "rows of another practice must never arrive")
}

func TestConformanceModelUpdate(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	for i := 0; i < len(rows); i += 5 {
		rows[i].amount, rows[i].note = "-12.34", "updated"
		require.NoError(t, h.db.Update(h.full, rows[i].raw()))
	}
	res := h.sync(0)
	require.Equal(t, 5, res.rows)
	h.requireConverged()
	require.Equal(t, "-12.34", h.store[rows[5].key()]["amount"])
}

func TestConformanceModelDelete(t *testing.T) {
	h := newHarness(t, linesTable(t))
	rows := h.seeded()
	require.NoError(t, h.db.Delete(h.full, rows[3].raw()))
	h.syncAll()
	require.NotContains(t, h.store, rows[3].key())
	h.requireConverged()
	require.True(t, h.extractor().SeesDeletes())
}

func TestConformanceModelEmptyTable(t *testing.T) {
	h := newHarness(t, linesTable(t))
	res := h.sync(0)
	require.Zero(t, res.rows)
	require.IsType(t, watermarks.CT{}, h.pos, "the first run of an empty table should still hand off")
	h.syncAll()
	require.Empty(t, h.store)
}

// TestConformanceModelResumeAtEveryChunkBoundary stops a run after each
// possible number of chunks (a crash after that commit), in the first
// snapshot and in an incremental window, and resumes from the saved
// position alone.
func TestConformanceModelResumeAtEveryChunkBoundary(t *testing.T) {
	for stop := 1; stop <= 4; stop++ {
		h := newHarness(t, linesTable(t))
		rows := h.newLines(35, practice)
		require.NoError(t, h.db.Insert(h.full, raws(rows)...))
		res := h.sync(stop)
		require.Equal(t, min(stop*h.rows, 35), res.rows, "stop after %d", stop)
		h.syncAll()
		h.requireConverged()
		for i := range rows {
			rows[i].note = "second"
			require.NoError(t, h.db.Update(h.full, rows[i].raw()))
		}
		h.sync(stop)
		h.syncAll()
		h.requireConverged()
		for _, r := range rows {
			require.Equal(t, "second", h.store[r.key()]["note"], "stop after %d", stop)
		}
	}
}

// TestP3IdleTableAdvancesToWindowBound: an idle table's position moves to
// the window's upper bound (the database's current version) in one chunk
// with no rows, so it does not age out of retention.
func TestP3IdleTableAdvancesToWindowBound(t *testing.T) {
	h := newHarness(t, linesTable(t))
	h.seeded()
	before := h.pos.(watermarks.CT)
	h.db.Bump()
	h.db.Bump()
	res := h.sync(0)
	require.Equal(t, 1, res.heartbeats)
	require.Zero(t, res.rows)
	require.Equal(t, watermarks.CT{Version: h.db.Version()}, h.pos)
	require.Greater(t, h.pos.(watermarks.CT).Version, before.Version)
	// Nothing moved since: no chunk at all.
	res = h.sync(0)
	require.Zero(t, res.chunks)
}

func TestConformanceModelAllowList(t *testing.T) {
	full := linesTable(t)
	h := newHarness(t, full)
	proj, err := full.Project([]string{"amount"})
	require.NoError(t, err)
	h.table = proj
	rows := h.newLines(15, practice)
	require.NoError(t, h.db.Insert(full, raws(rows)...))
	h.syncAll()
	require.NoError(t, h.db.Delete(full, rows[0].raw()))
	rows[1].amount = "1.00"
	require.NoError(t, h.db.Update(full, rows[1].raw()))
	h.syncAll()
	h.requireConverged()
	for _, r := range h.store {
		require.NotContains(t, r, "note")
	}
}

func TestConformanceModelForeignPosition(t *testing.T) {
	h := newHarness(t, linesTable(t))
	ext := h.extractor()
	for _, pos := range []watermarks.Position{
		watermarks.Cursor{Column: "row_timestamp", Value: watermarks.Int64(1)},
		watermarks.CDC{},
		watermarks.Snapshot{Resume: watermarks.Cursor{Column: "x", Value: watermarks.Int64(1)}},
		watermarks.CT{Version: 1, To: 5, LastKey: watermarks.Key{watermarks.Int64(1)}},
	} {
		run, err := ext.Open(context.Background(), pos)
		require.Error(t, err, "open from %s", pos)
		require.Nil(t, run)
		require.ErrorIs(t, err, changetracking.ErrPosition, "open from %s", pos)
	}
}

// TestConformanceModelEveryKeyType: keys of each supported kind page in
// the server's order (GUIDs by SQL Server byte groups, PITFALLS.md P12)
// across chunk boundaries, and resume by typed key.
func TestConformanceModelEveryKeyType(t *testing.T) {
	for _, tc := range []struct {
		typ  string
		vals func(i int) any
	}{
		{"uniqueidentifier", func(int) any { return wireGUID(uuid.New()) }},
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

// TestConformanceModelEveryValueType: values of every type the catalog
// carries arrive through the change query's full images.
func TestConformanceModelEveryValueType(t *testing.T) {
	tb := mustTable(t, "types", []string{"id"}, []colSpec{
		{"id", "uniqueidentifier", false},
		{"practice_id", "char(4)", false},
		{"c_bit", "bit", true},
		{"c_int", "int", true},
		{"c_bigint", "bigint", true},
		{"c_num", "numeric(19,2)", true},
		{"c_money", "money", true},
		{"c_float", "float", true},
		{"c_nvarchar", "nvarchar(40)", true},
		{"c_guid", "uniqueidentifier", true},
		{"c_datetime", "datetime", true},
		{"c_datetime2", "datetime2(7)", true},
		{"c_varbinary", "varbinary(max)", true},
		{"modify_timestamp", "datetime", false},
	})
	h := newHarness(t, tb)
	h.syncAll()
	guid := uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff")
	id := uuid.New()
	row := []any{wireGUID(id), practice, true, int64(2147483647), int64(-9223372036854775808),
		[]byte("99999999999999999.99"), []byte("-922337203685477.5808"), 1.7976931348623157e308,
		"Zoë ✓", wireGUID(guid), timeAt("9999-12-31T23:59:59.997"), timeAt("0001-01-01T00:00:00"),
		[]byte{0, 0xff}, timeAt("2026-01-05T08:00:00")}
	require.NoError(t, h.db.Insert(tb, row))
	nulls := []any{wireGUID(uuid.New()), practice, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, nil, timeAt("2026-01-05T08:00:00")}
	require.NoError(t, h.db.Insert(tb, nulls))
	h.syncAll()
	h.requireConverged()
	got := h.store[id.String()]
	require.Equal(t, "99999999999999999.99", got["c_num"])
	require.Equal(t, "-922337203685477.5808", got["c_money"])
	require.Equal(t, guid.String(), got["c_guid"], "GUIDs arrive in RFC 4122 order (PITFALLS.md P12)")
	require.Equal(t, "0x00ff", got["c_varbinary"])
}

func TestNewRejectsBadInput(t *testing.T) {
	h := newHarness(t, linesTable(t))
	snap := h.db.Snapshotter(h.table, nil, 10, h.mem)
	_, err := changetracking.New(h.db, snap, nil, changetracking.Options{})
	require.Error(t, err)
	_, err = changetracking.New(h.db, snap, h.table, changetracking.Options{ChunkRows: -1})
	require.Error(t, err)
	pg := *h.table
	pg.Dialect = schemas.Postgres
	_, err = changetracking.New(h.db, snap, &pg, changetracking.Options{})
	require.Error(t, err)
}

func requireExpired(t *testing.T, err error) {
	t.Helper()
	require.ErrorIs(t, err, engine.ErrExpired)
	var ee *engine.ExpiredError
	require.True(t, errors.As(err, &ee))
	require.Contains(t, ee.Reason, "minimum valid version")
}
