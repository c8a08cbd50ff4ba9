package extractortest

import (
	"context"
	"errors"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

func seqValue(a arrow.Array, i int) int64 { return a.(*array.Int64).Value(i) }

func keyOf(r line) string { return r.ID.String() + "|" + strconv.Itoa(r.Line) }

// testInsert: new rows arrive; rows of another practice never do (the
// organization filter is pushed down).
func testInsert(t *testing.T, h *harness) {
	h.seeded()
	require.Len(t, h.store.rows, 25)
	h.src.insertLines(h.table, h.newLines(12, Practice)...)
	h.src.insertLines(h.table, h.newLines(3, OtherPractice)...)
	h.syncAll()
	h.requireConverged()
	require.Len(t, h.store.rows, 37)
}

// testUpdate: updated rows arrive with their new image.
func testUpdate(t *testing.T, h *harness) {
	rows := h.seeded()
	for i := 0; i < len(rows); i += 5 {
		r := rows[i]
		r.Amount, r.Note, r.Stamp = num("-12.34"), "updated", h.clock.tick()
		h.src.updateLine(h.table, r)
	}
	h.syncAll()
	h.requireConverged()
	require.Equal(t, "-12.34", h.store.rows[keyOf(rows[5])]["amount"])
}

// testDelete: an extractor that sees deletes removes the row from the store;
// one that cannot (high-water mark, snapshot: PITFALLS.md P11) leaves it
// there, which this test pins down so that the limitation stays documented.
func testDelete(t *testing.T, h *harness) {
	rows := h.seeded()
	gone := rows[3]
	before := maps.Clone(h.store.rows[keyOf(gone)])
	h.src.deleteLine(h.table, gone)
	h.syncAll()
	if h.sub.SeesDeletes {
		h.requireConverged()
		return
	}
	h.requireConvergedTo(func() map[string]row {
		want := h.src.rows(h.table)
		require.NotContains(t, want, keyOf(gone))
		want[keyOf(gone)] = before // this extractor cannot see deletes
		return want
	})
}

// testEmpty: an empty table syncs to an empty store; an incremental
// extractor hands off to its incremental position all the same, and a
// snapshot ends at a completed pass.
func testEmpty(t *testing.T, h *harness) {
	h.use(linesTable(uniqueName("empty")))
	res := h.sync(0)
	require.Zero(t, res.rows)
	if !h.sub.Snapshot {
		require.True(t, incremental(h.pos), "the first run of an empty table should still hand off, not end at %v", h.pos)
	} else {
		require.Equal(t, watermarks.Position(watermarks.Snapshot{}), h.pos, "the pass over an empty table should end at a completed pass")
	}
	h.syncAll()
	require.Empty(t, h.store.rows)
	h.requireConverged()
}

// testResume: a run stopped after one chunk (a crash after its commit)
// resumes, in a new extractor, from the saved position alone: in the first
// snapshot (PITFALLS.md P8) and in an incremental window.
func testResume(t *testing.T, h *harness) {
	h.use(linesTable(uniqueName("resume")))
	rows := h.newLines(25, Practice)
	h.src.insertLines(h.table, rows...)
	res := h.sync(1)
	require.Equal(t, h.rows, res.rows)
	require.Len(t, h.store.rows, h.rows)
	h.syncAll()
	h.requireConverged()

	for _, r := range rows {
		r.Note, r.Stamp = "second", h.clock.tick()
		h.src.updateLine(h.table, r)
	}
	res = h.sync(1) // (one chunk, or none while the window is held back)
	require.LessOrEqual(t, res.chunks, 1)
	h.chunkByChunk()
	h.requireConverged()
	for _, r := range rows {
		require.Equal(t, "second", h.store.rows[keyOf(r)]["note"])
	}
}

// testTransaction: one transaction writes more rows than a chunk holds;
// every run stops after one chunk, inside the transaction, and the next
// resumes exactly after the last row read (PITFALLS.md P4).
func testTransaction(t *testing.T, h *harness) {
	h.seeded()
	tx := h.src.begin()
	batch := h.newLines(2*h.rows+5, Practice)
	tx.insertLines(h.table, batch...)
	tx.commit()
	h.chunkByChunk()
	h.requireConverged()
	for _, r := range batch {
		require.Contains(t, h.store.rows, keyOf(r))
	}
}

// testExpired: the source cleans its change data up past the saved
// position (PITFALLS.md P1, P2); the next run fails with extractors.ErrExpired
// and the position does not move. Extractors without change data to
// expire (snapshot, high-water mark) and sources that cannot be made to
// clean up (a live database) skip it.
func testExpired(t *testing.T, h *harness) {
	if !h.sub.Expires {
		t.Skip("this subject declares no expiry (its positions do not expire, or the source cannot be made to expire them)")
	}
	rows := h.seeded()
	saved := h.pos
	r := rows[0]
	r.Note, r.Stamp = "lost to cleanup", h.clock.tick()
	h.src.updateLine(h.table, r)
	if !h.src.expire(h.table) {
		t.Skip("this source cannot be made to clean up its change data")
	}
	_, err := h.trySync(0)
	require.ErrorIs(t, err, extractors.ErrExpired)
	require.Equal(t, saved, h.pos, "an expired position never moves")
}

// testIdle: a run over an idle table moves the position to the window's
// bound with a chunk of no rows when the source moved on elsewhere
// (PITFALLS.md P3).
func testIdle(t *testing.T, h *harness) {
	h.seeded()
	before := h.pos
	h.src.bump()
	res := h.sync(0)
	if h.sub.Heartbeat {
		// A run whose window another transaction holds back ends with no
		// chunk; the next one moves.
		for deadline := time.Now().Add(convergeWithin); res.chunks == 0 && time.Now().Before(deadline); {
			res = h.sync(0)
		}
		require.Zero(t, res.rows)
		require.Equal(t, 1, res.heartbeats, "an idle run should move the position once, without rows")
		requireAdvanced(t, before, h.pos)
	}
	h.requireConverged()
}

// typed is one value of the types test: the SQL literal per dialect and the
// value expected in the store (wantMSSQL, when set, from a SQL Server
// source).
type typed struct {
	col       string
	mssql, pg any
	want      string
	wantMSSQL string
}

func same(col string, v any, want string) typed { return typed{col, v, v, want, ""} }

// datetime is a SQL Server datetime literal (a PostgreSQL timestamp): SQL
// Server stores the nearest 1/300 s tick, which the store holds to the
// microsecond (tick), PostgreSQL the value itself (want).
func datetime(col string, v any, want, tick string) typed { return typed{col, v, v, want, tick} }

// testTypes: every supported type arrives exactly, extremes included
// (PITFALLS.md P12 GUIDs, P13 exact decimals, P14 date-times).
func testTypes(t *testing.T, h *harness) {
	h.use(typesTable(uniqueName("types")))
	long := strings.Repeat("x", 5000) + " ünï ✓"
	rows := []struct {
		name string
		vals []typed
	}{
		{"maxima", []typed{
			same("c_bit", true, "true"),
			same("c_tinyint", 255, "255"),
			same("c_smallint", 32767, "32767"),
			same("c_int", 2147483647, "2147483647"),
			same("c_bigint", raw("9223372036854775807"), "9223372036854775807"),
			same("c_num", num("99999999999999999.99"), "99999999999999999.99"),
			same("c_num38", num(strings.Repeat("9", 38)), strings.Repeat("9", 38)),
			same("c_dec", num("99999.9999"), "99999.9999"),
			same("c_money", num("922337203685477.5807"), "922337203685477.5807"),
			same("c_smallmoney", num("214748.3647"), "214748.3647"),
			same("c_float", raw("1.7976931348623157e308"), "1.7976931348623157e+308"),
			same("c_real", raw("3.25e38"), "3.25e+38"),
			same("c_char", "ABCD", "ABCD"),
			same("c_varchar", "20241231", "20241231"),
			same("c_nvarchar", nstr("Zoë – ünïcode ✓"), "Zoë – ünïcode ✓"),
			same("c_nvarcharmax", nstr(long), long),
			same("c_guid", uuid.MustParse("6f9619ff-8b86-d011-b42d-00c04fc964ff"), "6f9619ff-8b86-d011-b42d-00c04fc964ff"),
			same("c_date", "9999-12-31", "9999-12-31"),
			same("c_time", "23:59:59.999999", "23:59:59.999999"),
			datetime("c_datetime", "9999-12-31T23:59:59.997", "9999-12-31T23:59:59.997000", "9999-12-31T23:59:59.996667"),
			{"c_datetime2", "9999-12-31T23:59:59.9999999", "9999-12-31T23:59:59.999999", "9999-12-31T23:59:59.999999", ""},
			same("c_smalldatetime", "2079-06-06T23:59:00", "2079-06-06T23:59:00.000000"),
			{"c_dto", "9999-12-31T23:59:59.9999999+14:00", "9999-12-31 23:59:59.999999+14", "9999-12-31T09:59:59.999999Z", ""},
			same("c_varbinary", []byte{0x00, 0xff, 0x10}, "0x00ff10"),
		}},
		{"minima", []typed{
			same("c_bit", false, "false"),
			same("c_tinyint", 0, "0"),
			same("c_smallint", -32768, "-32768"),
			same("c_int", -2147483648, "-2147483648"),
			same("c_bigint", raw("-9223372036854775808"), "-9223372036854775808"),
			same("c_num", num("-99999999999999999.99"), "-99999999999999999.99"),
			same("c_num38", num("-"+strings.Repeat("9", 38)), "-"+strings.Repeat("9", 38)),
			same("c_dec", num("-99999.9999"), "-99999.9999"),
			same("c_money", num("-922337203685477.5808"), "-922337203685477.5808"),
			same("c_smallmoney", num("-214748.3648"), "-214748.3648"),
			same("c_float", raw("-2.5e-300"), "-2.5e-300"),
			same("c_real", raw("-1.5"), "-1.5"),
			same("c_char", "AB", "AB  "),
			same("c_varchar", "", ""),
			same("c_nvarchar", nstr(""), ""),
			same("c_nvarcharmax", nstr("x"), "x"),
			same("c_guid", uuid.MustParse("00000000-0000-0000-0000-000000000001"), "00000000-0000-0000-0000-000000000001"),
			same("c_date", "0001-01-01", "0001-01-01"),
			same("c_time", "00:00:00", "00:00:00.000000"),
			same("c_datetime", "1753-01-01T00:00:00.000", "1753-01-01T00:00:00.000000"),
			same("c_datetime2", "0001-01-01T00:00:00", "0001-01-01T00:00:00.000000"),
			same("c_smalldatetime", "1900-01-01T00:00:00", "1900-01-01T00:00:00.000000"),
			{"c_dto", "0001-01-01T00:00:00+00:00", "0001-01-01 00:00:00+00", "0001-01-01T00:00:00.000000Z", ""},
			same("c_varbinary", []byte{}, "0x"),
		}},
		{"ticks and scales", []typed{
			same("c_num", num("0.01"), "0.01"),
			same("c_num38", num("0"), "0"),
			same("c_dec", num("-0.5"), "-0.5000"),
			same("c_money", num("-12.34"), "-12.3400"),
			same("c_smallmoney", num("0.0001"), "0.0001"),
			same("c_time", "12:00:00.000001", "12:00:00.000001"),
			datetime("c_datetime", "2024-02-29T12:34:56.003", "2024-02-29T12:34:56.003000", "2024-02-29T12:34:56.003333"),
			{"c_datetime2", "2024-02-29T12:34:56.1234567", "2024-02-29T12:34:56.123456", "2024-02-29T12:34:56.123456", ""},
			{"c_dto", "2024-02-29T12:34:56.5-05:00", "2024-02-29 12:34:56.5-05", "2024-02-29T17:34:56.500000Z", ""},
		}},
		{"datetime tick .007", []typed{
			datetime("c_datetime", "2024-02-29T12:34:56.007", "2024-02-29T12:34:56.007000", "2024-02-29T12:34:56.006667"),
			same("c_datetime2", "2024-02-29T23:59:59.997", "2024-02-29T23:59:59.997000"),
		}},
		{"nulls", nil},
	}
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		ids[i] = uuid.New()
		h.src.insertTypes(h.table, ids[i], h.clock.tick(), r.vals)
	}
	h.syncAll()
	h.requireConverged()
	for i, r := range rows {
		got, ok := h.store.rows[ids[i].String()]
		require.True(t, ok, "row %s missing", r.name)
		set := map[string]bool{}
		for _, v := range r.vals {
			set[v.col] = true
			want := v.want
			if v.wantMSSQL != "" && h.src.dialect() == schemas.SQLServer {
				want = v.wantMSSQL
			}
			require.Equal(t, want, got[v.col], "row %s, column %s", r.name, v.col)
		}
		for _, c := range h.table.Columns {
			if c.Nullable && !set[c.Name] {
				require.Equal(t, "NULL", got[c.Name], "row %s, column %s", r.name, c.Name)
			}
		}
	}
}

// testTies: many rows written by one transaction with one modify stamp (one
// cursor value for a row version and a timestamp alike) span chunk
// boundaries, and a run stops in the middle of them; none is lost
// (PITFALLS.md P9).
func testTies(t *testing.T, h *harness) {
	h.seeded()
	tied := h.newLines(25, Practice)
	at := h.clock.tick()
	for i := range tied {
		tied[i].Stamp = at
	}
	h.src.insertLines(h.table, tied...)
	res := h.sync(1) // (one chunk, or none while the window is held back)
	require.LessOrEqual(t, res.chunks, 1)
	h.requireConverged()
	for _, r := range tied {
		require.Contains(t, h.store.rows, keyOf(r))
	}
}

// testOpenTransaction: a transaction open during a run writes a row that is
// stamped before rows committed after it; once it commits, the next run
// brings its row (PITFALLS.md P10).
func testOpenTransaction(t *testing.T, h *harness) {
	if h.src.blockingReads() {
		t.Skip("reads at this source wait for uncommitted rows (READ_COMMITTED_SNAPSHOT is off), so no run can pass an open transaction")
	}
	h.seeded()
	tx := h.src.begin()
	early := h.newLines(1, Practice)[0]
	tx.insertLines(h.table, early)
	late := h.newLines(3, Practice)
	h.src.insertLines(h.table, late...)
	h.sync(0)
	require.NotContains(t, h.store.rows, keyOf(early), "an uncommitted row cannot have been read")
	tx.commit()
	h.syncAll()
	h.requireConverged()
	require.Contains(t, h.store.rows, keyOf(early), "the row of the transaction that was open during the run is lost")
}

// testHandoff: rows change while the first snapshot runs (between its
// chunks): rows already copied, rows not yet copied, new rows. The position
// recorded before the snapshot's first read replays them (PITFALLS.md P8).
func testHandoff(t *testing.T, h *harness) {
	h.use(linesTable(uniqueName("handoff")))
	rows := h.newLines(25, Practice)
	h.src.insertLines(h.table, rows...)
	h.sync(1)
	require.Len(t, h.store.rows, h.rows)
	var copied, pending []line
	for _, r := range rows {
		if _, ok := h.store.rows[keyOf(r)]; ok {
			copied = append(copied, r)
		} else {
			pending = append(pending, r)
		}
	}
	for _, r := range []line{copied[0], copied[len(copied)-1], pending[0]} {
		r.Note, r.Stamp = "changed during the snapshot", h.clock.tick()
		h.src.updateLine(h.table, r)
	}
	h.src.insertLines(h.table, h.newLines(4, Practice)...)
	h.sync(0) // finish the snapshot
	h.syncAll()
	h.requireConverged()
	require.Equal(t, "changed during the snapshot", h.store.rows[keyOf(copied[0])]["note"])
}

// testAllowList: a projected table carries only its columns (plus the key,
// row version, modified-at and practice columns the extractors need).
func testAllowList(t *testing.T, h *harness) {
	full := linesTable(uniqueName("allow"))
	h.src.create(full)
	proj, err := full.Project([]string{"amount"})
	require.NoError(t, err)
	h.table, h.store = proj, newStore(proj)
	_, hasNote := proj.Column("note")
	require.False(t, hasNote)
	h.src.insertLines(full, h.newLines(15, Practice)...)
	h.syncAll()
	h.requireConverged()
	for _, r := range h.store.rows {
		require.NotContains(t, r, "note")
	}
}

// testForeignPosition: a position of another strategy, or (for an
// incremental extractor) a first-run snapshot handing off to one, is a
// loud error, never a silent restart.
func testForeignPosition(t *testing.T, h *harness) {
	h.use(linesTable(uniqueName("foreign")))
	ext, err := h.src.extractor(h.table, Config{Practices: []string{Practice}, Allocator: h.mem})
	require.NoError(t, err)
	for _, pos := range []watermarks.Position{
		watermarks.CT{Version: 42},
		watermarks.CDC{LSN: watermarks.LSN{9: 42}, Instance: "no_such_instance"},
		watermarks.Cursor{Column: "no_such_column", Value: watermarks.Int64(1)},
	} {
		if h.sub.Native != nil && reflect.TypeOf(pos) == reflect.TypeOf(h.sub.Native) {
			continue // the extractor's own kind: not foreign
		}
		opens := []watermarks.Position{pos}
		if h.sub.Native != nil {
			opens = append(opens, watermarks.Snapshot{Resume: pos})
		}
		for _, pos := range opens {
			run, err := ext.Open(context.Background(), pos)
			require.Error(t, err, "open from %s", pos)
			require.Nil(t, run)
			if h.sub.ErrPosition != nil {
				require.True(t, errors.Is(err, h.sub.ErrPosition), "open from %s: %v", pos, err)
			}
		}
	}
}
