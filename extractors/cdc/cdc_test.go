package cdc_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/cdc/cdcmodel"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The model tests of what the conformance suite (TestConformanceModel, in
// conformance_test.go) does not drive: the pitfalls in their exact shape
// (P1, P3, P4, P6, P7, P8, P16) and the extractor's own errors.

// TestP4ResumeAtEveryChunkBoundary crashes after every chunk: each run reads
// one chunk only, from the position the previous one saved. Transactions of
// 1, 7, 23 and 10 rows with chunks of 10 put boundaries inside and at the
// end of transactions (P4).
func TestP4ResumeAtEveryChunkBoundary(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	rows := h.seeded()
	n := 30
	for _, size := range []int{1, 7, 23, 10} {
		tx := h.m.Begin()
		for range size {
			tx.Insert("dbo", "claim_lines", h.line(n, practice))
			n++
		}
		tx.Update("dbo", "claim_lines", rowWith(rows[size], "note", "in tx"))
		tx.Commit()
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
	max := h.m.Touch()
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
	h.m.CreateTable(cdcmodel.TableDef{Schema: "dbo", Name: "patients", Columns: []string{"id", "practice_id"}, Key: []string{"id"}})
	h.m.EnableCDC("dbo", "patients", "patients_capture")
	o := &harness{t: t, m: h.m, table: other, mem: h.mem, rows: 10, store: map[string]map[string]string{}, emitted: map[string]int{}}
	o.syncAll()

	h.update(rows[0], "note", "lost")
	h.update(rows[1], "note", "kept")
	max, err := h.m.MaxLSN(context.Background())
	require.NoError(t, err)
	h.m.Cleanup("claims_capture", max) // the first update is gone
	tx := h.m.Begin()
	tx.Insert("dbo", "patients", cdcmodel.Row{"id": int64(1), "practice_id": practice})
	tx.Commit()

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
		var rows []cdcmodel.Row
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
	max, err := h.m.MaxLSN(context.Background())
	require.NoError(t, err)
	h.m.Cleanup("claims_capture", max)
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
	var rows []cdcmodel.Row
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
// position does not move past them. CheckAgent reports the agent stale.
// Once the agent restarts, every change arrives.
func TestP6StoppedAgentLosesNothing(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	rows := h.seeded()
	ctx := context.Background()
	health, err := cdc.CheckAgent(ctx, h.m, time.Minute)
	require.NoError(t, err)
	require.False(t, health.Stale, health.Reason)

	saved := h.pos
	h.m.StopAgent()
	h.update(rows[0], "note", "while stopped")
	h.delete(rows[1])
	h.insert(h.line(50, practice))
	h.m.Touch()

	res := h.sync(0)
	require.Zero(t, res.chunks, "nothing harvested: the run sees nothing")
	require.Equal(t, saved, h.pos, "the position does not move past unharvested commits")
	health, err = cdc.CheckAgent(ctx, h.m, time.Minute)
	require.NoError(t, err)
	require.True(t, health.Stale)
	require.Contains(t, health.Reason, "not harvested")

	h.m.StartAgent()
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

	h.m.AddColumn("dbo", "claim_lines", "status")
	start := h.m.EnableCDC("dbo", "claim_lines", "claims_v2")
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
	start := h.m.EnableCDC("dbo", "claim_lines", "claims_v2")
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
	var rows []cdcmodel.Row
	for i := range 30 {
		rows = append(rows, h.line(i, practice))
	}
	h.insert(rows...)
	max, err := h.m.MaxLSN(context.Background())
	require.NoError(t, err)

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
	m := cdcmodel.New()
	m.Touch()
	m.StopAgent()
	table := linesTable(t)
	h := newHarness(t, table, "unused")
	h.m = m
	m.CreateTable(h.def)
	start := m.EnableCDC("dbo", "claim_lines", "claims_capture")
	h.sync(0)
	require.Equal(t, start, h.pos.(watermarks.CDC).LSN, "resume at the instance's start")
	h.insert(h.line(1, practice))
	m.StartAgent()
	res := h.sync(0)
	require.Equal(t, 1, res.rows)
	h.requireConverged()
}

// TestP16DeleteImageWithNullNotNullColumns: delete images with NULL in NOT
// NULL columns and computed columns NULL in every change row are applied,
// not rejected.
func TestP16DeleteImageWithNullNotNullColumns(t *testing.T) {
	table := mustTable(t, "claims", []string{"id"}, []colSpec{
		{"id", "int"}, {"practice_id", "char(4)"}, {"paid", "bit"}, {"memo", "nvarchar(max)"}, {"total", "numeric(19,2)"},
	})
	table.Columns[2].Nullable = false // bit NOT NULL
	h := newHarness(t, table, "claims_capture")
	m := cdcmodel.New()
	h.m = m
	m.CreateTable(cdcmodel.TableDef{Schema: "dbo", Name: "claims", Columns: []string{"id", "practice_id", "paid", "memo", "total"},
		Key: []string{"id"}, Computed: []string{"total"}, NullOnDelete: []string{"practice_id", "paid", "memo"}})
	m.EnableCDC("dbo", "claims", "claims_capture")
	h.syncAll()
	mk := func(id int64) cdcmodel.Row {
		return cdcmodel.Row{"id": id, "practice_id": practice, "paid": false, "memo": "m", "total": []byte("1.00")}
	}
	h.insert(mk(1), mk(2))
	h.sync(0)
	require.Equal(t, "NULL", h.store["1"]["total"], "computed columns are NULL in change rows")
	h.delete(mk(1))
	res := h.sync(0)
	require.Equal(t, 1, res.rows, "the delete passes the practice filter with a NULL practice")
	_, ok := h.store["1"]
	require.False(t, ok, "the delete is applied by key")
	require.Contains(t, h.store, "2")
}

func TestNotTracked(t *testing.T) {
	h := newHarness(t, linesTable(t), "claims_capture")
	h.m.DisableCDC("claims_capture")
	_, err := h.trySync(0)
	require.ErrorIs(t, err, cdc.ErrNotTracked)
	require.False(t, errors.Is(err, extractors.ErrExpired))
}

func TestNewRejects(t *testing.T) {
	m := cdcmodel.New()
	pg := &schemas.Table{Schema: "public", Name: "x", Dialect: schemas.Postgres}
	_, err := cdc.NewFrom(m, nil, linesTable(t), cdc.Options{})
	require.Error(t, err)
	_, err = cdc.NewFrom(m, noSnap{}, pg, cdc.Options{})
	require.Error(t, err)
	_, err = cdc.NewFrom(m, noSnap{}, linesTable(t), cdc.Options{Bounds: extractors.Bounds{ChunkRows: -1}})
	require.Error(t, err)
}

type noSnap struct{}

func (noSnap) Open(context.Context, watermarks.Position) (extractors.Run, error) {
	return nil, errors.New("no snapshot")
}

func rowWith(r cdcmodel.Row, col string, v any) cdcmodel.Row {
	c := cdcmodel.Row{}
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
	var rows []cdcmodel.Row
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
			tx := h.m.Begin()
			tx.Insert("dbo", "claim_lines", h.line(300, practice))
			tx.Delete("dbo", "claim_lines", rows[3])
			tx.Insert("dbo", "claim_lines", moved)
			tx.ReverseSeqvals() // the insert of the key now has the lowest seqval
			commit := tx.Commit()

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
