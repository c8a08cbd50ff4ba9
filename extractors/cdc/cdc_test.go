package cdc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The tests of what the conformance suite (TestConformanceTDS, in
// tds_test.go) does not drive: the pitfalls in their exact shape (P1, P3,
// P4, P6, P7, P8, P16) and the extractor's own errors, over TDS against
// the model (harness_test.go).

// TestP4ResumeAtEveryChunkBoundary crashes after every chunk: each run reads
// one chunk only, from the position the previous one saved. Transactions of
// 1, 7, 23 and 10 rows with chunks of 10 put boundaries inside and at the
// end of transactions (P4).
func TestP4ResumeAtEveryChunkBoundary(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	rows := h.seeded()
	n := 30
	for _, size := range []int{1, 7, 23, 10} {
		h.commit(func(tx *mssqlmodel.Tx) {
			for range size {
				require.NoError(t, tx.Insert("dbo.claim_lines", h.line(n, practice)))
				n++
			}
			require.NoError(t, tx.Update("dbo.claim_lines", rowWith(rows[size], "note", "in tx")))
		})
	}
	total := 0
	for range 100 {
		res := h.sync(1)
		if res.chunks == 0 {
			break
		}
		total += res.rows
	}
	require.Equal(t, 1+7+23+10+4, total, "every change row once")
	h.requireConverged()
	h.requireExactlyOnce()
}

// TestP3IdleTableAdvancesToWindowBound: other database activity moves the
// highest harvested LSN; an idle table's position follows it in a chunk
// without rows, so it never ages out of retention.
func TestP3IdleTableAdvancesToWindowBound(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	h.seeded()
	before := h.pos.(watermarks.CDC)
	h.m.Touch()
	max := h.maxLSN()
	res := h.sync(0)
	require.Equal(t, 1, res.heartbeats)
	require.Zero(t, res.rows)
	after := h.pos.(watermarks.CDC)
	require.Equal(t, max, after.LSN, "the idle table's position is the window's bound")
	require.Positive(t, after.LSN.Compare(before.LSN))
	require.Zero(t, h.sync(0).chunks, "no activity: no chunk")
}

// TestP1ExpiredPositionPerInstance: cleanup raises one capture instance's
// minimum LSN past the saved position; Open fails with ErrExpired for that
// table only, not for another table whose instance still covers its
// position (the check is per instance, not database-wide).
func TestP1ExpiredPositionPerInstance(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	rows := h.seeded()
	saved := h.pos

	other := mustTable(t, "patients", []string{"id"}, []colSpec{{"id", "int"}, {"practice_id", "char(4)"}})
	require.NoError(t, h.m.CreateTable(other))
	_, err := h.m.EnableCDC(mssqlmodel.CaptureInstance{Table: "dbo.patients", Name: "patients_capture"})
	require.NoError(t, err)
	o := h.on(other)
	o.syncAll()

	h.update(rows[0], "note", "lost")
	h.update(rows[1], "note", "kept")
	require.NoError(t, h.m.CleanupCDC("claims_capture", h.m.MaxLSN())) // the first update is gone
	o.insert(row{"id": int64(1), "practice_id": practice})

	_, err = h.trySync(0)
	require.ErrorIs(t, err, extractors.ErrExpired)
	var ee *extractors.ExpiredError
	require.ErrorAs(t, err, &ee)
	require.Contains(t, ee.Reason, "claims_capture")
	require.Equal(t, saved, h.pos, "an expired position never moves")

	o.sync(0)
	o.requireConverged()
}

// TestP1CleanupDuringRun: cleanup passes the position between two chunks
// of one run; the next chunk fails with ErrExpired instead of skipping.
func TestP1CleanupDuringRun(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	h.seeded()
	for i := range 3 {
		var rows []row
		for j := range 8 {
			rows = append(rows, h.line(100+10*i+j, practice))
		}
		h.insert(rows...)
	}
	run, err := h.extractor().Open(context.Background(), h.pos)
	require.NoError(t, err)
	defer run.Close()
	ch, err := run.Next(context.Background())
	require.NoError(t, err)
	ch.Batch.Release()
	require.NoError(t, h.m.CleanupCDC("claims_capture", h.m.MaxLSN()))
	_, err = run.Next(context.Background())
	require.ErrorIs(t, err, extractors.ErrExpired)
}

// TestP4TransactionSpanningChunkResumesExactly: one transaction of 25 rows
// read in chunks of 10. The first two chunks end inside the transaction at
// the exact (lsn, seqval, op) of their last row; a new run resumes after
// exactly that row; the third ends at the transaction's boundary.
func TestP4TransactionSpanningChunkResumesExactly(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	h.seeded()
	var rows []row
	for i := range 25 {
		rows = append(rows, h.line(100+i, practice))
	}
	commit := h.insert(rows...)

	for i, want := range []int{10, 10, 5} {
		res := h.sync(1)
		require.Equal(t, want, res.rows, "chunk %d", i)
		p := h.pos.(watermarks.CDC)
		require.Equal(t, commit, p.LSN)
		require.Equal(t, i < 2, p.InTransaction(), "chunk %d: a position inside the transaction is exact", i)
		if i < 2 {
			require.Equal(t, int8(2), p.Op)
		}
	}
	h.requireConverged()
	h.requireExactlyOnce()
	require.Zero(t, h.sync(0).rows)
}

// TestP6StoppedAgentLosesNothing: with the capture agent stopped, commits
// are not harvested; the window's bound stays, so runs see nothing and the
// position does not move past them. CheckAgent reports the agent stale once
// it has finished no log scan for longer than the allowed lag. Once the
// agent restarts, every change arrives.
func TestP6StoppedAgentLosesNothing(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	rows := h.seeded()
	ctx := context.Background()
	src := &cdc.SQLServer{DB: h.db}
	health, err := cdc.CheckAgent(ctx, src, time.Minute)
	require.NoError(t, err)
	require.False(t, health.Stale, health.Reason)

	saved := h.pos
	h.m.SetAutoHarvest(false) // the capture agent stops
	h.update(rows[0], "note", "while stopped")
	h.delete(rows[1])
	h.insert(h.line(50, practice))
	h.m.Touch()
	h.m.Advance(2 * time.Minute)

	res := h.sync(0)
	require.Zero(t, res.chunks, "nothing harvested: the run sees nothing")
	require.Equal(t, saved, h.pos, "the position does not move past unharvested commits")
	health, err = cdc.CheckAgent(ctx, src, time.Minute)
	require.NoError(t, err)
	require.True(t, health.Stale, health.Reason)
	require.Contains(t, health.Reason, "no log scan")

	h.m.SetAutoHarvest(true)
	h.m.Harvest()
	h.sync(0)
	h.requireConverged()
	h.requireExactlyOnce()
}

// TestP7SecondCaptureInstanceAfterSchemaChange: a column is added and a
// second capture instance (with it) is enabled while the first still
// captures. The run reads the first instance up to the second's start LSN,
// then switches; rows from the second carry the new column. Neither
// instance is named <schema>_<table>.
func TestP7SecondCaptureInstanceAfterSchemaChange(t *testing.T) {
	base := linesTable(t)
	h := newHarness(t, base, "claims_v1")
	rows := h.seeded()
	h.update(rows[0], "note", "before the change")

	status, err := schemas.ParseType(schemas.SQLServer, "varchar(8)")
	require.NoError(t, err)
	require.NoError(t, h.m.AddColumn("dbo.claim_lines", schemas.Column{Name: "status", Type: status, Nullable: true}))
	start := h.enableCDC("claims_v2")
	wide := mustTable(t, "claim_lines", base.Key, []colSpec{
		{"id", "uniqueidentifier"}, {"line", "int"}, {"practice_id", "char(4)"},
		{"amount", "numeric(19,2)"}, {"note", "varchar(40)"}, {"modify_timestamp", "datetime"},
		{"status", "varchar(8)"},
	})
	h.table = wide
	// The store gains the column (ALTER TABLE ADD COLUMN): existing rows NULL.
	for _, r := range h.store {
		r["status"] = "NULL"
	}
	h.update(rowWith(rows[1], "status", "PAID"), "note", "after the change")
	ins := h.line(60, practice)
	ins["status"] = "NEW"
	h.insert(ins)

	res := h.sync(0)
	require.Equal(t, 3, res.rows)
	p := h.pos.(watermarks.CDC)
	require.Equal(t, "claims_v2", p.Instance, "the run switched to the newer instance")
	require.Positive(t, p.LSN.Compare(start))
	h.requireConverged()
	h.requireExactlyOnce()

	// The old instance is dropped: the position's instance is chosen by LSN.
	h.m.DisableCDC("claims_v1")
	h.update(rows[2], "note", "v2 only")
	h.sync(0)
	h.requireConverged()
}

// TestP7SwitchAtInstanceStart: a position saved exactly at the newer
// instance's start LSN reads from that instance.
func TestP7SwitchAtInstanceStart(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_v1")
	h.seeded()
	start := h.enableCDC("claims_v2")
	h.m.DisableCDC("claims_v1")
	h.pos = watermarks.CDC{LSN: start, Instance: "claims_v1"}
	h.insert(h.line(70, practice))
	res := h.sync(0)
	require.Equal(t, 1, res.rows)
	require.Equal(t, "claims_v2", h.pos.(watermarks.CDC).Instance)
	h.requireConverged()
}

// TestP8FirstRunRecordsMaxLSNBeforeSnapshot: the first run records the
// highest harvested LSN before its first snapshot read; changes committed
// during the snapshot (to rows already copied, rows not yet copied, new
// rows) are replayed from there and the store converges.
func TestP8FirstRunRecordsMaxLSNBeforeSnapshot(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	var rows []row
	for i := range 30 {
		rows = append(rows, h.line(i, practice))
	}
	max := h.insert(rows...)

	res := h.sync(1)
	require.Equal(t, 10, res.rows)
	snap := h.pos.(watermarks.Snapshot)
	require.Equal(t, max, snap.Resume.(watermarks.CDC).LSN, "the resume position is the max LSN before the snapshot")
	// Concurrent changes: every row, copied or not.
	for i, r := range rows {
		switch i % 3 {
		case 0:
			h.update(r, "note", "during the snapshot")
		case 1:
			h.delete(r)
		}
	}
	h.insert(h.line(40, practice))
	h.sync(0)
	require.IsType(t, watermarks.CDC{}, h.pos)
	h.sync(0)
	h.requireConverged()
}

// TestP8InstanceEnabledAfterLastHarvest: CDC enabled on the table after the
// agent's last harvest; the first run's resume position is the instance's
// start, not an LSN the instance cannot serve (which would read as expired).
func TestP8InstanceEnabledAfterLastHarvest(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_v1")
	h.m.Touch()
	h.m.SetAutoHarvest(false) // the capture agent's last harvest is behind
	h.m.DisableCDC("claims_v1")
	h.m.Touch()
	start := h.enableCDC("claims_capture")
	require.Positive(t, start.Compare(h.maxLSN()), "the instance starts after the last harvest")
	h.sync(0)
	require.Equal(t, start, h.pos.(watermarks.CDC).LSN, "resume at the instance's start")
	h.m.SetAutoHarvest(true)
	h.insert(h.line(1, practice))
	res := h.sync(0)
	require.Equal(t, 1, res.rows)
	h.requireConverged()
}

// TestP16DeleteImageWithNullPractice: computed columns are NULL in every
// change row, and a delete image whose practice column is NULL passes the
// practice filter (P16: the practice of a deleted row may be unknown) and
// is applied by key.
func TestP16DeleteImageWithNullPractice(t *testing.T) {
	table := mustTable(t, "claims", []string{"id"}, []colSpec{
		{"id", "int"}, {"practice_id", "char(4)"}, {"paid", "bit"}, {"memo", "nvarchar(max)"}, {"total", "numeric(19,2)"},
	})
	table.Columns[2].Nullable = false // bit NOT NULL
	h := newHarness(t, table, "claims_capture", mssqlmodel.Computed{Column: "total", Func: func(map[string]any) any { return "1.00" }})
	h.syncAll()
	mk := func(id int64, prac any) row {
		return row{"id": id, "practice_id": prac, "paid": false, "memo": "m"}
	}
	h.insert(mk(1, practice), mk(2, practice), mk(3, otherPractice))
	h.sync(0)
	require.Equal(t, "NULL", h.store["1"]["total"], "computed columns are NULL in change rows")
	h.delete(mk(1, practice))
	res := h.sync(0)
	require.Equal(t, 1, res.rows)
	_, ok := h.store["1"]
	require.False(t, ok, "the delete is applied by key")
	require.Contains(t, h.store, "2")

	h.update(mk(2, practice), "practice_id", nil) // the row leaves every practice
	h.delete(mk(2, nil))
	h.delete(mk(3, otherPractice))
	res = h.sync(0)
	_, ok = h.store["2"]
	require.False(t, ok, "the delete image without a practice passes the filter")
}

func TestNotTracked(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	h.m.DisableCDC("claims_capture")
	_, err := h.trySync(0)
	require.ErrorIs(t, err, cdc.ErrNotTracked)
	require.False(t, errors.Is(err, extractors.ErrExpired))
}

func TestNewRejects(t *testing.T) {
	db := newHarness(t, linesTable(t), "claims_capture").db
	pg := &schemas.Table{Schema: "public", Name: "x", Dialect: schemas.Postgres, Key: []string{"id"},
		Columns: []schemas.Column{{Name: "id", Type: schemas.Type{Name: "integer"}}}}
	_, err := cdc.New(nil, linesTable(t), cdc.Options{})
	require.Error(t, err)
	_, err = cdc.New(db, pg, cdc.Options{})
	require.Error(t, err)
	_, err = cdc.New(db, linesTable(t), cdc.Options{Bounds: extractors.Bounds{ChunkRows: -1}})
	require.Error(t, err)
}

func rowWith(r row, col string, v any) row {
	c := row{}
	for k, x := range r {
		c[k] = x
	}
	c[col] = v
	return c
}

// TestP4ByteBoundInsideTransaction: a chunk cut by the byte bound inside
// a transaction records the exact row and resumes after it.
func TestP4ByteBoundInsideTransaction(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	h.seeded()
	var rows []row
	for i := range 12 {
		rows = append(rows, h.line(200+i, practice))
	}
	h.insert(rows...)
	h.bytes = 1
	res := h.sync(1)
	require.Equal(t, 1, res.rows, "the byte bound cuts after one row")
	require.True(t, h.pos.(watermarks.CDC).InTransaction())
	for h.sync(1).chunks > 0 {
	}
	h.requireConverged()
	h.requireExactlyOnce()
}

// TestP4OrderByCommandIDNotSeqval: within a transaction __$command_id, not
// __$seqval, is the order of the changes; Microsoft documents that seqval
// "should not be used for ordering", and KB 3030352 shows the delete and
// insert of one key out of seqval order. One transaction deletes a key and
// inserts it again (a key update) with the seqvals reversed: the store must
// end with the inserted row, whether the transaction is read in one chunk or
// resumed after every row (positions inside it then carry the command id).
func TestP4OrderByCommandIDNotSeqval(t *testing.T) {
	for _, tc := range []struct {
		name      string
		chunkRows int
		maxChunks int
	}{
		{"one chunk", 10, 0},
		{"resume after every row", 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, linesTable(t), "claims_capture")
			rows := h.seeded()
			h.rows = tc.chunkRows
			moved := rowWith(rows[3], "note", "key updated")
			commit := h.commit(func(tx *mssqlmodel.Tx) {
				require.NoError(t, tx.Insert("dbo.claim_lines", h.line(300, practice)))
				require.NoError(t, tx.Delete("dbo.claim_lines", rows[3]))
				require.NoError(t, tx.Insert("dbo.claim_lines", moved))
				tx.ReverseSeqvals() // the insert of the key now has the lowest seqval
			})

			inTx := 0
			for range 20 {
				res := h.sync(tc.maxChunks)
				if p := h.pos.(watermarks.CDC); p.InTransaction() {
					require.Equal(t, commit, p.LSN)
					require.Positive(t, p.CommandID, "a position inside a transaction carries its command id")
					inTx++
				}
				if res.chunks == 0 {
					break
				}
			}
			if tc.chunkRows == 1 {
				require.Equal(t, 2, inTx, "resumed between the transaction's rows")
			}
			n := 0
			for _, r := range h.store {
				if r["note"] == "key updated" {
					n++
				}
			}
			require.Equal(t, 1, n, "the store holds the re-inserted row")
			h.requireConverged()
			h.requireExactlyOnce()
		})
	}
}
