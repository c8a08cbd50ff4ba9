package lake

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/lake/laketest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// fixture is a migrated store, a sink and a lake on a warehouse directory.
type fixture struct {
	pool      *pgxpool.Pool
	sink      *sink.Sink
	lake      *Lake
	warehouse string
	mem       *memory.CheckedAllocator
	cols      []string // the source table's columns
	at        int64    // the position the next chunk moves to
	cdc       bool     // positions are CDC's (changes), not a cursor's (observations)
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(ctx, pool))
	dir := t.TempDir()
	lk, err := Open(ctx, pool, Config{Warehouse: "file://" + dir})
	require.NoError(t, err)
	t.Cleanup(func() { lk.Close() })
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return &fixture{pool: pool, sink: sink.New(pool, watermarks.NewStore(pool)), lake: lk, warehouse: dir, mem: mem,
		cols: []string{"line_id uniqueidentifier NOT NULL", "paid_amt numeric(19,2)", "status char(1)", "modify_timestamp datetime2"}}
}

var claims = Table{Org: "st-mary", Schema: "st_mary", Name: "claim_lines"}

func (f *fixture) table(t *testing.T) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: "dbo", Name: "claim_lines", Dialect: schemas.SQLServer, Key: []string{"line_id"}}
	for _, c := range f.cols {
		notNull := strings.HasSuffix(c, " NOT NULL")
		name, typ, _ := strings.Cut(strings.TrimSuffix(c, " NOT NULL"), " ")
		ty, err := schemas.ParseType(schemas.SQLServer, typ)
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: name, Type: ty, Nullable: !notNull})
	}
	require.NoError(t, tb.Validate())
	return tb
}

// row is one change: op, key (a number made into a GUID), paid, status.
type row struct {
	op     schemas.Op
	key    int
	paid   string
	status string
}

func keyOf(n int) uuid.UUID { return uuid.MustParse(fmt.Sprintf("00000000-0000-0000-0000-%012d", n)) }

// target prepares the table in the store, with lake on.
func (f *fixture) target(t *testing.T, opts sink.TableOptions) *sink.Target {
	t.Helper()
	opts.Lake = true
	tg, err := f.sink.Prepare(context.Background(), claims.Org, f.table(t), opts)
	require.NoError(t, err)
	return tg
}

// commit commits rows as one chunk through the sink, with lake on.
func (f *fixture) commit(t *testing.T, rows ...row) {
	t.Helper()
	rec := f.batch(t, rows...)
	defer rec.Release()
	from := f.position()
	f.at++
	_, err := f.target(t, sink.TableOptions{}).Apply(context.Background(), rec,
		watermarks.Move{From: from, To: f.position(), Reason: watermarks.ReasonSync, Actor: "test"})
	require.NoError(t, err)
}

// batch is rows as a change batch of the table.
func (f *fixture) batch(t *testing.T, rows ...row) arrow.RecordBatch {
	t.Helper()
	sc, err := schemas.ChangeSchema(f.table(t))
	require.NoError(t, err)
	b := array.NewRecordBuilder(f.mem, sc)
	defer b.Release()
	for i, r := range rows {
		for j, fd := range sc.Fields() {
			fb := b.Field(j)
			switch fd.Name {
			case "line_id":
				fb.(*extensions.UUIDBuilder).Append(keyOf(r.key))
			case "paid_amt":
				if r.op == schemas.OpDelete {
					fb.AppendNull()
					continue
				}
				dt := fd.Type.(*arrow.Decimal128Type)
				n, err := decimal128.FromString(r.paid, dt.Precision, dt.Scale)
				require.NoError(t, err)
				fb.(*array.Decimal128Builder).Append(n)
			case "status":
				if r.op == schemas.OpDelete {
					fb.AppendNull()
					continue
				}
				fb.(*array.StringBuilder).Append(r.status)
			case "modify_timestamp":
				ts, err := arrow.TimestampFromTime(time.Date(1969, 12, 31, 23, 59, 59, 0, time.UTC).Add(time.Duration(r.key)*time.Hour), fd.Type.(*arrow.TimestampType).Unit)
				require.NoError(t, err)
				fb.(*array.TimestampBuilder).Append(ts)
			case schemas.OpColumn:
				fb.(*array.Int8Builder).Append(int8(r.op))
			case schemas.SeqColumn:
				fb.(*array.Int64Builder).Append(int64(i + 1))
			case schemas.SourcePosColumn:
				fb.AppendNull()
			default:
				fb.AppendNull()
			}
		}
	}
	return b.NewRecordBatch()
}

func (f *fixture) position() watermarks.Position {
	switch {
	case f.at == 0:
		return nil
	case f.cdc:
		return watermarks.CDC{LSN: watermarks.LSN{9: byte(f.at)}, Instance: "dbo_claim_lines"}
	}
	return watermarks.Cursor{Column: "modify_timestamp", Value: watermarks.Int64(f.at)}
}

// lakeRows scans the lake table: one "op|key|paid|status|batch" line per
// row, sorted.
func (f *fixture) lakeRows(t *testing.T) []string {
	t.Helper()
	ctx := context.Background()
	tbl, err := f.lake.Catalog().LoadTable(ctx, claims.Ident())
	require.NoError(t, err)
	scan := tbl.Scan()
	at, err := scan.ToArrowTable(ctx)
	require.NoError(t, err)
	defer at.Release()
	rdr := array.NewTableReader(at, 0)
	defer rdr.Release()
	idx := func(name string) int {
		i := at.Schema().FieldIndices(name)
		require.Len(t, i, 1, name)
		return i[0]
	}
	op, key, paid, status, batch := idx(schemas.OpColumn), idx("line_id"), idx("paid_amt"), idx("status"), idx(BatchColumn)
	var out []string
	for rdr.Next() {
		rec := rdr.RecordBatch()
		for i := range int(rec.NumRows()) {
			out = append(out, strings.Join([]string{
				rec.Column(op).ValueStr(i), rec.Column(key).ValueStr(i), decimalStr(rec.Column(paid), i),
				rec.Column(status).ValueStr(i), rec.Column(batch).ValueStr(i)}, "|"))
		}
	}
	slices.Sort(out)
	return out
}

// decimalStr is a's value i at its scale ("10.50").
func decimalStr(a arrow.Array, i int) string {
	d := a.(*array.Decimal128)
	if d.IsNull(i) {
		return "(null)"
	}
	return d.Value(i).ToString(d.DataType().(*arrow.Decimal128Type).Scale)
}

// historyBatches are the position-history ids of the table's commits, in
// order.
func (f *fixture) historyBatches(t *testing.T) []string {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), "SELECT id::text FROM ehrsync.position_history WHERE org = $1 ORDER BY id", claims.Org)
	require.NoError(t, err)
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return ids
}

func (f *fixture) outbox(t *testing.T) (rows, claimed int) {
	t.Helper()
	require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT count(*), count(claim) FROM "+claims.outbox().Sanitize()).Scan(&rows, &claimed))
	return rows, claimed
}

// holdFlush starts a flush of claims and holds it after it wrote its
// files, before its commit, until release is closed; done has its error.
func (f *fixture) holdFlush(t *testing.T) (release chan struct{}, done chan error) {
	t.Helper()
	held := make(chan struct{})
	release, done = make(chan struct{}), make(chan error)
	f.lake.testHook = func(step string) error {
		if step == "appended" {
			close(held)
			<-release
		}
		return nil
	}
	go func() {
		_, err := f.lake.Flush(context.Background(), claims)
		done <- err
	}()
	<-held
	return release, done
}

// parquetFiles counts the data files under the table's directory.
func (f *fixture) parquetFiles(t *testing.T) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(f.warehouse, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".parquet") {
			n++
		}
		return err
	})
	require.NoError(t, err)
	return n
}

func TestFlushAppendsEveryCommittedChunkOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"}, row{schemas.OpInsert, 2, "-3.25", "P"})
	f.commit(t, row{schemas.OpUpdate, 1, "11.00", "A"})
	f.commit(t, row{schemas.OpDelete, 2, "", ""})
	n, _ := f.outbox(t)
	require.Equal(t, 3, n, "one outbox row per chunk committed")

	res, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, 1, res.Commits)
	require.Equal(t, 3, res.Batches)
	require.EqualValues(t, 4, res.Rows)
	require.Equal(t, int64(1), res.State.Claim)
	ids := f.historyBatches(t)
	require.Len(t, ids, 3)
	require.Equal(t, []string{
		"1|" + keyOf(1).String() + "|10.50|D|" + ids[0],
		"1|" + keyOf(2).String() + "|-3.25|P|" + ids[0],
		"2|" + keyOf(1).String() + "|11.00|A|" + ids[1],
		"3|" + keyOf(2).String() + "|(null)|(null)|" + ids[2],
	}, f.lakeRows(t))
	n, _ = f.outbox(t)
	require.Zero(t, n, "the outbox is empty once the lake holds its rows")

	// Nothing waiting: no commit.
	res, err = f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Zero(t, res.Commits)

	// A small bound: one commit per chunk.
	f.lake.cfg.FlushBytes = 1
	f.commit(t, row{schemas.OpInsert, 3, "1.00", "D"})
	f.commit(t, row{schemas.OpInsert, 4, "2.00", "D"})
	res, err = f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, 2, res.Commits)
	require.Equal(t, int64(3), res.State.Claim)
	require.Len(t, f.lakeRows(t), 6)

	var lt struct {
		claim int64
		rows  int64
		pos   []byte
	}
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT claim, rows, position FROM ehrsync.lake_tables WHERE org = $1 AND table_name = $2",
		claims.Org, "st_mary.claim_lines").Scan(&lt.claim, &lt.rows, &lt.pos))
	require.Equal(t, int64(3), lt.claim)
	require.Equal(t, int64(6), lt.rows)
	pos, err := watermarks.Decode(lt.pos)
	require.NoError(t, err)
	require.Equal(t, "cursor modify_timestamp 5", pos.String(), "the position of the last chunk committed")
}

// A flush stopped after writing its files, before the commit, leaves the
// claim to the next flush, which appends it once; the files of the first
// attempt are orphans.
func TestAFlushStoppedBeforeItsCommitIsRedoneOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	f.commit(t, row{schemas.OpInsert, 2, "20.50", "D"})
	stop := errors.New("killed")
	f.lake.testHook = func(step string) error {
		if step == "appended" {
			return stop
		}
		return nil
	}
	_, err := f.lake.Flush(ctx, claims)
	require.ErrorIs(t, err, stop)
	rows, claimed := f.outbox(t)
	require.Equal(t, 2, rows)
	require.Equal(t, 2, claimed)
	orphans := f.parquetFiles(t)
	require.Equal(t, 1, orphans, "the stopped flush wrote its file")

	f.commit(t, row{schemas.OpInsert, 3, "30.50", "D"}) // committed after the claim
	f.lake.testHook = nil
	res, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, 2, res.Commits, "the stopped claim, then the row committed since")
	require.Len(t, f.lakeRows(t), 3)
	rows, _ = f.outbox(t)
	require.Zero(t, rows)
}

// A flush stopped after the Iceberg commit, before the outbox is cleared,
// leaves rows the next flush deletes without appending them again.
func TestAFlushStoppedAfterItsCommitIsNotRepeated(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	stop := errors.New("killed")
	f.lake.testHook = func(step string) error {
		if step == "committed" {
			return stop
		}
		return nil
	}
	_, err := f.lake.Flush(ctx, claims)
	require.ErrorIs(t, err, stop)
	rows, _ := f.outbox(t)
	require.Equal(t, 1, rows, "the commit landed; the outbox was not cleared")
	require.Len(t, f.lakeRows(t), 1)

	f.lake.testHook = nil
	res, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Cleared)
	require.Zero(t, res.Commits)
	require.Len(t, f.lakeRows(t), 1, "appended once")
	var claim, noted int64
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT claim, rows FROM ehrsync.lake_tables WHERE org = $1", claims.Org).Scan(&claim, &noted))
	require.Equal(t, [2]int64{1, 1}, [2]int64{claim, noted}, "the commit the stopped flush made is noted by the one that cleared it")
}

// A chunk whose store transaction does not commit leaves no outbox row.
func TestOnlyCommittedChunksReachTheOutbox(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	tb := f.table(t)
	tg, err := f.sink.Prepare(ctx, claims.Org, tb, sink.TableOptions{Lake: true})
	require.NoError(t, err)
	// A chunk read from a position the table is no longer at: its
	// transaction fails at the claim, after its rows were written.
	sc, err := schemas.ChangeSchema(tb)
	require.NoError(t, err)
	b := array.NewRecordBuilder(f.mem, sc)
	defer b.Release()
	b.Field(0).(*extensions.UUIDBuilder).Append(keyOf(9))
	for j := 1; j < len(sc.Fields()); j++ {
		switch sc.Field(j).Name {
		case schemas.OpColumn:
			b.Field(j).(*array.Int8Builder).Append(int8(schemas.OpInsert))
		case schemas.SeqColumn:
			b.Field(j).(*array.Int64Builder).Append(1)
		default:
			b.Field(j).AppendNull()
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	_, err = tg.Apply(ctx, rec, watermarks.Move{From: nil, To: watermarks.Cursor{Column: "modify_timestamp", Value: watermarks.Int64(99)},
		Reason: watermarks.ReasonSync, Actor: "test"})
	require.Error(t, err)
	rows, _ := f.outbox(t)
	require.Equal(t, 1, rows, "the failed chunk left no outbox row")
}

// Two flushes of one table at once: one works, the other says busy.
func TestOneFlushPerTableAtATime(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	release, done := f.holdFlush(t)
	other, err := Open(ctx, f.pool, f.lake.cfg)
	require.NoError(t, err)
	defer other.Close()
	res, err := other.Flush(ctx, claims)
	require.NoError(t, err)
	require.True(t, res.Busy)
	close(release)
	require.NoError(t, <-done)
	require.Len(t, f.lakeRows(t), 1)
}

// A column the source gains is added to the lake table; rows before it
// read NULL there.
func TestTheLakeTableGainsTheSourcesNewColumns(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	_, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	f.cols = append(f.cols, "payer_name varchar(40)")
	f.commit(t, row{schemas.OpInsert, 2, "20.50", "D"})
	_, err = f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	tbl, err := f.lake.Catalog().LoadTable(ctx, claims.Ident())
	require.NoError(t, err)
	_, ok := tbl.Schema().FindFieldByName("payer_name")
	require.True(t, ok)
	require.Len(t, f.lakeRows(t), 2)
}

// The outbox and the Iceberg table out of step (the table replaced by
// hand) stop the flush with the fix, and lose nothing.
func TestClaimsOutOfStepStopWithTheFix(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	_, err := f.pool.Exec(ctx, "UPDATE "+claims.outbox().Sanitize()+" SET claim = 7")
	require.NoError(t, err)
	_, err = f.lake.Flush(ctx, claims)
	require.ErrorIs(t, err, ErrClaimOrder)
	require.Contains(t, err.Error(), PropClaim)
	rows, _ := f.outbox(t)
	require.Equal(t, 1, rows)
}

// The rows a reconciliation deletes reach the lake as deletes of their
// keys, under the reconciliation's batch.
func TestReconciledDeletesReachTheLake(t *testing.T) {
	for _, policy := range []sink.DeletePolicy{sink.DeleteHard, sink.DeleteSoft} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"}, row{schemas.OpInsert, 2, "20.50", "D"}, row{schemas.OpInsert, 3, "30.50", "D"})
			tg := f.target(t, sink.TableOptions{DeletePolicy: policy, ChangeLog: true})
			source := f.batch(t, row{schemas.OpInsert, 2, "20.50", "D"}) // keys 1 and 3 are gone
			sent := false
			res, err := tg.Reconcile(ctx, func(context.Context) (arrow.RecordBatch, error) {
				if sent {
					return nil, io.EOF
				}
				sent = true
				source.Retain()
				return source, nil
			}, "test")
			source.Release()
			require.NoError(t, err)
			require.EqualValues(t, 2, res.Deleted)
			_, err = f.lake.Flush(ctx, claims)
			require.NoError(t, err)
			ids := f.historyBatches(t)
			require.Len(t, ids, 2, "the chunk's and the reconciliation's")
			require.Equal(t, []string{
				"1|" + keyOf(1).String() + "|10.50|D|" + ids[0],
				"1|" + keyOf(2).String() + "|20.50|D|" + ids[0],
				"1|" + keyOf(3).String() + "|30.50|D|" + ids[0],
				"3|" + keyOf(1).String() + "|(null)|(null)|" + ids[1],
				"3|" + keyOf(3).String() + "|(null)|(null)|" + ids[1],
			}, f.lakeRows(t))
			st, err := f.lake.State(ctx, claims)
			require.NoError(t, err)
			var stored []byte
			require.NoError(t, f.pool.QueryRow(ctx, "SELECT position FROM ehrsync.lake_tables WHERE org = $1", claims.Org).Scan(&stored))
			pos, err := watermarks.Decode(stored)
			require.NoError(t, err)
			require.Equal(t, "cursor modify_timestamp 1", pos.String(), "a reconciliation leaves the position where it was")
			require.Equal(t, watermarks.Summarize(pos).Text, st.PositionSummary, "the lake's metadata holds the position's summary")
		})
	}
}

// A high-water mark's or a snapshot's chunk reads rows as they are: the
// lake takes only those the store changed, each with the store's
// operation (a high-water mark calls every row an update).
func TestObservationsReachTheLakeOnlyWhenTheyChange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"}, row{schemas.OpInsert, 2, "20.50", "D"})
	f.commit(t, row{schemas.OpUpdate, 1, "10.50", "D"}, row{schemas.OpUpdate, 2, "21.00", "D"}, row{schemas.OpUpdate, 3, "30.50", "D"})
	f.commit(t, row{schemas.OpUpdate, 1, "10.50", "D"}) // nothing changed: no outbox row
	rows, _ := f.outbox(t)
	require.Equal(t, 2, rows)
	_, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	ids := f.historyBatches(t)
	require.Len(t, ids, 3)
	require.Equal(t, []string{
		"1|" + keyOf(1).String() + "|10.50|D|" + ids[0],
		"1|" + keyOf(2).String() + "|20.50|D|" + ids[0],
		"1|" + keyOf(3).String() + "|30.50|D|" + ids[1], // new to the store: an insert
		"2|" + keyOf(2).String() + "|21.00|D|" + ids[1],
	}, f.lakeRows(t))
}

// A CDC chunk holds changes: every row reaches the lake as the source
// reported it, even one the store already held so.
func TestChangesReachTheLakeAsTheSourceReportedThem(t *testing.T) {
	f := newFixture(t)
	f.cdc = true
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	f.commit(t, row{schemas.OpUpdate, 1, "10.50", "D"}) // an update that changed no column ehrsync reads
	f.commit(t, row{schemas.OpUpdate, 1, "11.00", "D"}, row{schemas.OpDelete, 4, "", ""})
	_, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	ids := f.historyBatches(t)
	require.Equal(t, []string{
		"1|" + keyOf(1).String() + "|10.50|D|" + ids[0],
		"2|" + keyOf(1).String() + "|10.50|D|" + ids[1],
		"2|" + keyOf(1).String() + "|11.00|D|" + ids[2],
		"3|" + keyOf(4).String() + "|(null)|(null)|" + ids[2],
	}, f.lakeRows(t))
}

// The lake on Azure Blob Storage (Azurite) and on S3 (s3rver), both npm
// emulators on loopback: flushes append, a stopped flush is redone once,
// the table reads back, and maintenance finds the stopped flush's files.
func TestFlushToObjectStorage(t *testing.T) {
	for _, c := range []struct {
		name, scheme string
		start        func(t *testing.T) (warehouse string, props map[string]string)
	}{
		{"azure", "abfs://", func(t *testing.T) (string, map[string]string) {
			az := laketest.StartAzurite(t)
			return az.Warehouse, az.Props
		}},
		{"s3", "s3://", func(t *testing.T) (string, map[string]string) {
			s3 := laketest.StartS3(t)
			return s3.Warehouse, s3.Props
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			warehouse, props := c.start(t)
			f := newFixture(t)
			ctx := context.Background()
			lk, err := Open(ctx, f.pool, Config{Warehouse: warehouse, Props: props})
			require.NoError(t, err)
			t.Cleanup(func() { lk.Close() })
			f.lake = lk
			require.NoError(t, ProbeWarehouse(ctx, warehouse, props))
			f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"}, row{schemas.OpInsert, 2, "20.50", "D"})
			stop := errors.New("killed")
			lk.testHook = func(step string) error {
				if step == "appended" {
					return stop
				}
				return nil
			}
			_, err = lk.Flush(ctx, claims)
			require.ErrorIs(t, err, stop)
			lk.testHook = nil
			f.commit(t, row{schemas.OpUpdate, 1, "11.00", "A"})
			res, err := lk.Flush(ctx, claims)
			require.NoError(t, err)
			require.Equal(t, 2, res.Commits)
			require.Len(t, f.lakeRows(t), 3)
			st, err := lk.State(ctx, claims)
			require.NoError(t, err)
			require.True(t, strings.HasPrefix(st.MetadataLocation, c.scheme), "the table lives in the bucket")
			require.Equal(t, int64(2), st.Claim)
			m, err := lk.Maintain(ctx, claims, MaintainOptions{OrphanAge: -1, DryRun: true})
			require.NoError(t, err)
			require.NotEmpty(t, m.Orphans, "the stopped flush's files, listed in the bucket")
		})
	}
}

// A type the source widened widens the lake table's column; one it
// narrowed keeps the table's, the new rows cast to it; a change whose
// values do not fit stops the flush, naming the column but no value, and
// keeps the rows waiting.
func TestTheLakeTableFollowsTheSourcesTypes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	paidType := func() string {
		tbl, err := f.lake.Catalog().LoadTable(ctx, claims.Ident())
		require.NoError(t, err)
		fd, ok := tbl.Schema().FindFieldByName("paid_amt")
		require.True(t, ok)
		return fd.Type.String()
	}
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	_, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, "decimal(19, 2)", paidType())

	f.cols[1] = "paid_amt numeric(28,2)" // widened at the source
	f.commit(t, row{schemas.OpInsert, 2, "123456789012345678901.25", "D"})
	_, err = f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, "decimal(28, 2)", paidType())

	f.cols[1] = "paid_amt numeric(19,2)" // narrowed again: the lake keeps 28
	f.commit(t, row{schemas.OpInsert, 3, "30.50", "D"})
	_, err = f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Equal(t, "decimal(28, 2)", paidType())
	require.Len(t, f.lakeRows(t), 3)

	// A scale change Iceberg cannot take, once an operator let the store
	// take it.
	_, err = f.pool.Exec(ctx, "ALTER TABLE st_mary.claim_lines ALTER COLUMN paid_amt TYPE numeric(28,4)")
	require.NoError(t, err)
	f.cols[1] = "paid_amt numeric(28,4)"
	f.commit(t, row{schemas.OpInsert, 4, "40.1234", "D"})
	_, err = f.lake.Flush(ctx, claims)
	require.ErrorContains(t, err, "column paid_amt")
	require.NotContains(t, err.Error(), "40.1234")
	require.NotContains(t, err.Error(), "401234")
	rows, claimed := f.outbox(t)
	require.Equal(t, [2]int{1, 1}, [2]int{rows, claimed}, "the chunk waits in the outbox")
}

// A lake table another store writes is refused, with the fix, before
// anything is appended or cleared.
func TestALakeTableOfAnotherStoreIsRefused(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"})
	_, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	tbl, err := f.lake.Catalog().LoadTable(ctx, claims.Ident())
	require.NoError(t, err)
	require.Equal(t, f.lake.store, tbl.Properties()[PropStore])

	// Another store, the same catalog and warehouse.
	_, err = f.pool.Exec(ctx, "UPDATE ehrsync.store_identity SET id = gen_random_uuid()")
	require.NoError(t, err)
	other, err := Open(ctx, f.pool, f.lake.cfg)
	require.NoError(t, err)
	defer other.Close()
	f.commit(t, row{schemas.OpInsert, 2, "20.50", "D"})
	_, err = other.Flush(ctx, claims)
	require.ErrorIs(t, err, ErrOtherStore)
	require.ErrorContains(t, err, "a warehouse and catalog of its own")
	rows, _ := f.outbox(t)
	require.Equal(t, 1, rows, "nothing appended or cleared")
	_, err = other.Maintain(ctx, claims, MaintainOptions{})
	require.ErrorIs(t, err, ErrOtherStore)
}

// A flush's or maintenance's error carries no secret: not the storage's
// key, not a catalog token, not a URL's query (a SAS token).
func TestLakeErrorsAreCleanedOfSecrets(t *testing.T) {
	l := &Lake{cfg: Config{Props: map[string]string{"adls.auth.shared-key.account.key": "account-key-sentinel"},
		REST: &RESTCatalog{Token: "token-sentinel", Credential: "client-id:cred/secret"}}}
	base := errors.New(`Put "https://acct.blob.core.windows.net/c/x.parquet?sv=2024&sig=sas-sentinel": dial tcp: refused; key account-key-sentinel; token-sentinel; ` +
		`client_secret=cred%2Fsecret; secret cred/secret`)
	err := l.safe(fmt.Errorf("append to lake table st_mary.claims: %w", base))
	for _, secret := range []string{"sas-sentinel", "account-key-sentinel", "token-sentinel", "cred/secret", "cred%2Fsecret"} {
		require.NotContains(t, err.Error(), secret)
	}
	require.Contains(t, err.Error(), "https://acct.blob.core.windows.net/c/x.parquet?[redacted]")
	require.ErrorIs(t, err, base)
	clean := errors.New("lake table st_mary.claims: nothing secret")
	require.Equal(t, clean, l.safe(clean))
}

// Identifiers, amounts, times and 64-bit numbers are written without a
// Parquet dictionary, even where one would pay (every row's amount alike);
// strings keep theirs. A column the source adds later follows the rule.
func TestMostlyDistinctColumnsAreWrittenWithoutADictionary(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	var rows []row
	for k := range 200 {
		rows = append(rows, row{schemas.OpInsert, k + 1, "10.50", "D"})
	}
	f.commit(t, rows...)
	_, err := f.lake.Flush(ctx, claims)
	require.NoError(t, err)

	dict := map[string][]bool{} // column: whether each row group's chunk has a dictionary
	err = filepath.WalkDir(f.warehouse, func(p string, d os.DirEntry, err error) error {
		if err != nil || !strings.HasSuffix(p, ".parquet") {
			return err
		}
		rdr, err := file.OpenParquetFile(p, false)
		if err != nil {
			return err
		}
		defer rdr.Close()
		md := rdr.MetaData()
		for rg := range md.NumRowGroups() {
			for c := range md.Schema.NumColumns() {
				cc, err := md.RowGroup(rg).ColumnChunk(c)
				if err != nil {
					return err
				}
				name := md.Schema.Column(c).Name()
				dict[name] = append(dict[name], cc.HasDictionaryPage())
			}
		}
		return nil
	})
	require.NoError(t, err)
	for _, c := range []string{"line_id", "paid_amt", "modify_timestamp", schemas.SeqColumn, BatchColumn} {
		require.NotEmpty(t, dict[c], c)
		require.NotContains(t, dict[c], true, "column %s has a dictionary", c)
	}
	require.NotEmpty(t, dict["status"])
	require.NotContains(t, dict["status"], false, "column status lost its dictionary")

	// A name Avro does not allow is written to Parquet made valid
	// ("payer-id" as "payer_x2Did"), and the setting names it so.
	f.cols = append(f.cols, "payer-id bigint", "payer_name varchar(40)")
	f.commit(t, row{schemas.OpInsert, 300, "30.50", "P"})
	_, err = f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	tbl, err := f.lake.Catalog().LoadTable(ctx, claims.Ident())
	require.NoError(t, err)
	require.Equal(t, "false", tbl.Properties()[dictionaryKey+"payer_x2Did"])
	require.NotContains(t, tbl.Properties(), dictionaryKey+"payer_name")
}

// The outbox keeps a chunk's data compressed with lz4 (the test server has
// it): half the pages and WAL of the data written whole.
func TestTheOutboxKeepsItsDataCompressed(t *testing.T) {
	f := newFixture(t)
	var rows []row
	for k := range 500 {
		rows = append(rows, row{schemas.OpInsert, k + 1, "10.50", "D"})
	}
	f.commit(t, rows...)
	var method string
	var stored, whole int64
	require.NoError(t, f.pool.QueryRow(context.Background(),
		"SELECT pg_column_compression(data), pg_column_size(data), octet_length(data) FROM "+claims.outbox().Sanitize()).Scan(&method, &stored, &whole))
	require.Equal(t, "lz4", method)
	require.Less(t, stored, whole)
}

// On a server that refuses lz4 (built without it), the outbox is created
// all the same, its data uncompressed, and the lake takes the chunks.
func TestAnOutboxOnAServerWithoutLZ4StaysUncompressed(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.pool.Exec(ctx, `CREATE FUNCTION no_lz4() RETURNS event_trigger LANGUAGE plpgsql AS $$
BEGIN
	IF current_query() LIKE '%COMPRESSION lz4%' THEN
		RAISE EXCEPTION 'compression method lz4 not supported' USING ERRCODE = 'feature_not_supported';
	END IF;
END $$;
CREATE EVENT TRIGGER no_lz4 ON ddl_command_end EXECUTE FUNCTION no_lz4()`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = f.pool.Exec(context.Background(), "DROP EVENT TRIGGER no_lz4") })
	f.commit(t, row{schemas.OpInsert, 1, "10.50", "D"}, row{schemas.OpInsert, 2, "20.50", "D"})
	var storage string
	require.NoError(t, f.pool.QueryRow(ctx, "SELECT attstorage::text FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'data'",
		claims.outbox().Sanitize()).Scan(&storage))
	require.Equal(t, "e", storage, "data stored out of line, uncompressed")
	_, err = f.lake.Flush(ctx, claims)
	require.NoError(t, err)
	require.Len(t, f.lakeRows(t), 2)
}
