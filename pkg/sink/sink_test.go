package sink

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// claimLines is a small table with the shapes that matter: a GUID key, exact
// money, NextGen's varchar dates, a status, a datetime.
func claimLines(t *testing.T) *schemas.Table {
	t.Helper()
	return table(t, "dbo", "claim_lines", []string{"line_id"},
		"line_id uniqueidentifier NOT NULL", "practice_id char(4)", "paid_amt numeric(19,2)",
		"status char(1)", "begin_date_of_service varchar(8)", "modify_timestamp datetime")
}

// table builds a catalog table from "name type [NOT NULL]" lines.
func table(t *testing.T, schema, name string, key []string, cols ...string) *schemas.Table {
	t.Helper()
	tb := &schemas.Table{Schema: schema, Name: name, Dialect: schemas.SQLServer, Key: key}
	for _, c := range cols {
		notNull := strings.HasSuffix(c, " NOT NULL")
		c = strings.TrimSuffix(c, " NOT NULL")
		colName, typ, _ := strings.Cut(c, " ")
		ty, err := schemas.ParseType(schemas.SQLServer, typ)
		require.NoError(t, err, c)
		tb.Columns = append(tb.Columns, schemas.Column{Name: colName, Type: ty, Nullable: !notNull})
	}
	require.NoError(t, tb.Validate())
	return tb
}

// change is one row of a test batch: its operation and column values by
// name (missing columns are NULL).
type change struct {
	op  schemas.Op
	row map[string]any
	pos []byte // source position, for change-log de-duplication
}

// batch builds a change batch for tb from changes, in source order.
func batch(t *testing.T, mem memory.Allocator, tb *schemas.Table, changes ...change) arrow.RecordBatch {
	t.Helper()
	sc, err := schemas.ChangeSchema(tb)
	require.NoError(t, err)
	b := array.NewRecordBuilder(mem, sc)
	defer b.Release()
	for seq, ch := range changes {
		for i, f := range sc.Fields() {
			var v any
			switch f.Name {
			case schemas.OpColumn:
				v = int8(ch.op)
			case schemas.SeqColumn:
				v = int64(seq + 1)
			case schemas.SourcePosColumn:
				if ch.pos != nil {
					v = ch.pos
				}
			default:
				v = ch.row[f.Name]
			}
			appendValue(t, b.Field(i), v)
		}
	}
	return b.NewRecordBatch()
}

func appendValue(t *testing.T, b array.Builder, v any) {
	t.Helper()
	if v == nil {
		b.AppendNull()
		return
	}
	switch b := b.(type) {
	case *array.BooleanBuilder:
		b.Append(v.(bool))
	case *array.Int8Builder:
		b.Append(v.(int8))
	case *array.Uint8Builder:
		b.Append(uint8(v.(int)))
	case *array.Int16Builder:
		b.Append(int16(v.(int)))
	case *array.Int32Builder:
		b.Append(int32(v.(int)))
	case *array.Int64Builder:
		switch v := v.(type) {
		case int:
			b.Append(int64(v))
		default:
			b.Append(v.(int64))
		}
	case *array.Float32Builder:
		b.Append(float32(v.(float64)))
	case *array.Float64Builder:
		b.Append(v.(float64))
	case *array.StringBuilder:
		b.Append(v.(string))
	case *array.BinaryBuilder:
		b.Append(v.([]byte))
	case *array.FixedSizeBinaryBuilder:
		b.Append(v.([]byte))
	case *extensions.UUIDBuilder:
		b.Append(uuid.MustParse(v.(string)))
	case *array.Decimal128Builder:
		typ := b.Type().(*arrow.Decimal128Type)
		n, err := decimal128.FromString(v.(string), typ.Precision, typ.Scale)
		require.NoError(t, err)
		b.Append(n)
	case *array.Date32Builder:
		b.Append(arrow.Date32FromTime(v.(time.Time)))
	case *array.TimestampBuilder:
		ts, err := arrow.TimestampFromTime(v.(time.Time), b.Type().(*arrow.TimestampType).Unit)
		require.NoError(t, err)
		b.Append(ts)
	case *array.Time64Builder:
		b.Append(arrow.Time64(v.(time.Duration) / b.Type().(*arrow.Time64Type).Unit.Multiplier()))
	default:
		t.Fatalf("test batch: no append for %T", b)
	}
}

type fixture struct {
	pool      *pgxpool.Pool
	sink      *Sink
	positions *watermarks.Store
	mem       *memory.CheckedAllocator
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	positions := watermarks.NewStore(pool)
	mem := memory.NewCheckedAllocator(memory.NewGoAllocator())
	t.Cleanup(func() { mem.AssertSize(t, 0) })
	return &fixture{pool: pool, sink: New(pool, positions), positions: positions, mem: mem}
}

// apply applies changes as one batch moving the position from→to.
func (f *fixture) apply(t *testing.T, tg *Target, from, to watermarks.Position, changes ...change) (Result, error) {
	t.Helper()
	var rec arrow.RecordBatch
	if len(changes) > 0 {
		rec = batch(t, f.mem, tg.table, changes...)
		defer rec.Release()
	}
	return tg.Apply(context.Background(), rec, watermarks.Move{From: from, To: to, Reason: watermarks.ReasonSync, Actor: "test"})
}

// dump returns the target's rows as text, ordered by key, data columns only
// plus the soft-delete flag.
func (f *fixture) dump(t *testing.T, ident pgx.Identifier, cols ...string) []string {
	t.Helper()
	exprs := make([]string, len(cols))
	for i, c := range cols {
		exprs[i] = "coalesce(" + pgx.Identifier{c}.Sanitize() + "::text, 'NULL')"
	}
	rows, err := f.pool.Query(context.Background(), "SELECT concat_ws('|', "+strings.Join(exprs, ", ")+") FROM "+ident.Sanitize()+" ORDER BY 1")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// batches returns, for each row of tg's table (by key), the position its
// _ehrsync_batch's history entry moved tg's table to: "key|position", or
// "key|NULL" for a row whose batch names no entry of that table.
func (f *fixture) batches(t *testing.T, tg *Target) []string {
	t.Helper()
	rows, err := f.pool.Query(context.Background(), "SELECT t.line_id::text || '|' || coalesce(h.to_position::text, 'NULL') FROM "+
		tg.Ident().Sanitize()+" t LEFT JOIN ehrsync.position_history h ON h.id = t."+MetaBatch+
		" AND h.org = $1 AND h.table_name = $2 ORDER BY 1", tg.org, tg.table.QualifiedName())
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

func cursorAt(n int64) watermarks.Position {
	return watermarks.Cursor{Column: "row_timestamp", Value: watermarks.Int64(n)}
}

const (
	keyA = "6f9619ff-8b86-d011-b42d-00c04fc964ff"
	keyB = "00000000-0000-0000-0000-000000000001"
	keyC = "ffffffff-ffff-ffff-ffff-fffffffffffe"
)

func line(key, status, paid string) map[string]any {
	return map[string]any{"line_id": key, "practice_id": "0001", "status": status, "paid_amt": paid,
		"begin_date_of_service": "20261101", "modify_timestamp": time.Date(2026, 11, 1, 8, 30, 0, 3_333_000, time.UTC)}
}

func TestApplyingABatchTwiceLeavesTheSameState(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	changes := []change{
		{op: schemas.OpInsert, row: line(keyA, "D", "0.00")},
		{op: schemas.OpInsert, row: line(keyB, "S", "125.40")},
		{op: schemas.OpUpdate, row: line(keyA, "A", "0.00")},
	}
	res, err := f.apply(t, tg, nil, cursorAt(10), changes...)
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 3, Inserted: 2}, res)
	first := f.dump(t, tg.Ident(), "line_id", "status", "paid_amt", "modify_timestamp")
	require.Len(t, first, 2)

	// A replay (the same changes from the saved position onwards) converges.
	res, err = f.apply(t, tg, cursorAt(10), cursorAt(10), changes...)
	require.NoError(t, err)
	require.Equal(t, Result{Rows: 3, Unchanged: 2}, res, "a replay rewrote rows")
	require.Equal(t, first, f.dump(t, tg.Ident(), "line_id", "status", "paid_amt", "modify_timestamp"))
}

func TestDeleteOfAMissingKeyIsANoop(t *testing.T) {
	for _, policy := range []DeletePolicy{DeleteHard, DeleteSoft} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t)
			tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{DeletePolicy: policy})
			require.NoError(t, err)
			_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "S", "10.00")})
			require.NoError(t, err)
			res, err := f.apply(t, tg, cursorAt(1), cursorAt(2), change{op: schemas.OpDelete, row: map[string]any{"line_id": keyC}})
			require.NoError(t, err)
			require.Zero(t, res.Deleted)
			require.Equal(t, []string{keyA + "|S|false"}, f.dump(t, tg.Ident(), "line_id", "status", MetaDeleted))
		})
	}
}

func TestOneKeysChangesInOneBatchEndInTheLastState(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	res, err := f.apply(t, tg, nil, cursorAt(4),
		change{op: schemas.OpInsert, row: line(keyA, "P", "0.00")},
		change{op: schemas.OpUpdate, row: line(keyA, "D", "0.00")},
		change{op: schemas.OpDelete, row: map[string]any{"line_id": keyA}},
		change{op: schemas.OpInsert, row: line(keyA, "S", "99.95")},
		change{op: schemas.OpInsert, row: line(keyB, "P", "1.00")},
		change{op: schemas.OpDelete, row: map[string]any{"line_id": keyB}},
	)
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Inserted)
	require.Equal(t, []string{keyA + "|S|99.95|insert"}, f.dump(t, tg.Ident(), "line_id", "status", "paid_amt", MetaOp))

	// Deleting and re-inserting an existing key in one batch updates it.
	_, err = f.apply(t, tg, cursorAt(4), cursorAt(5),
		change{op: schemas.OpDelete, row: map[string]any{"line_id": keyA}},
		change{op: schemas.OpInsert, row: line(keyA, "R", "12.00")},
	)
	require.NoError(t, err)
	require.Equal(t, []string{keyA + "|R|12.00"}, f.dump(t, tg.Ident(), "line_id", "status", "paid_amt"))
}

func TestSoftDeleteKeepsTheRowFlagged(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{DeletePolicy: DeleteSoft})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1),
		change{op: schemas.OpInsert, row: line(keyA, "S", "10.00")},
		change{op: schemas.OpInsert, row: line(keyB, "S", "20.00")})
	require.NoError(t, err)
	res, err := f.apply(t, tg, cursorAt(1), cursorAt(2), change{op: schemas.OpDelete, row: map[string]any{"line_id": keyA}})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Deleted)
	// Ordered by text: keyB sorts before keyA.
	require.Equal(t, []string{keyB + "|S|false|insert", keyA + "|S|true|delete"},
		f.dump(t, tg.Ident(), "line_id", "status", MetaDeleted, MetaOp))
	// A re-insert of a soft-deleted key revives it.
	_, err = f.apply(t, tg, cursorAt(2), cursorAt(3), change{op: schemas.OpInsert, row: line(keyA, "R", "10.00")})
	require.NoError(t, err)
	require.Equal(t, []string{keyB + "|false", keyA + "|false"}, f.dump(t, tg.Ident(), "line_id", MetaDeleted))
}

func TestPositionMovesOnlyFromWhereTheBatchWasRead(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(5), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
	require.NoError(t, err)

	// A second runner that read from an older position must not commit.
	_, err = f.apply(t, tg, cursorAt(3), cursorAt(9), change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")})
	require.ErrorIs(t, err, watermarks.ErrPositionMoved)
	require.Equal(t, []string{keyA}, f.dump(t, tg.Ident(), "line_id"), "rows of a refused batch were kept")
	got, err := f.positions.Load(context.Background(), "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, cursorAt(5), got)

	// Nor one with no rows: its move is refused as well, and nothing of it
	// commits (the claim and the move go in one batch).
	hist := func() int {
		h, err := f.positions.History(context.Background(), "st-mary", "dbo.claim_lines", 100)
		require.NoError(t, err)
		return len(h)
	}
	before := hist()
	_, err = f.apply(t, tg, cursorAt(3), cursorAt(9))
	require.ErrorIs(t, err, watermarks.ErrPositionMoved)
	got, err = f.positions.Load(context.Background(), "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, cursorAt(5), got, "a refused idle move was committed")
	require.Equal(t, before, hist())

	// An idle table (no rows) still moves its position (PITFALLS P3).
	_, err = f.apply(t, tg, cursorAt(5), cursorAt(7))
	require.NoError(t, err)
	got, err = f.positions.Load(context.Background(), "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, cursorAt(7), got)

	// An operator's reset (the position removed) is not undone by a runner
	// that read before it, with rows or without.
	require.NoError(t, f.positions.Reset(context.Background(), "st-mary", "dbo.claim_lines", nil, "operator", "re-snapshot"))
	_, err = f.apply(t, tg, cursorAt(7), cursorAt(8))
	require.ErrorIs(t, err, watermarks.ErrPositionMoved)
	_, err = f.apply(t, tg, cursorAt(7), cursorAt(8), change{op: schemas.OpInsert, row: line(keyC, "S", "3.00")})
	require.ErrorIs(t, err, watermarks.ErrPositionMoved)
	got, err = f.positions.Load(context.Background(), "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Nil(t, got, "a reset was undone")
	require.Equal(t, []string{keyA}, f.dump(t, tg.Ident(), "line_id"))
}

// TestAFirstMoveThatLosesTheRaceCommitsNothing: two runners both find no
// position; the one whose first move meets the other's commits nothing,
// neither rows nor history.
func TestAFirstMoveThatLosesTheRaceCommitsNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	// The winner: a transaction that saves the first position and holds
	// it uncommitted while the loser runs.
	winner, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	defer winner.Rollback(ctx) //nolint:errcheck // committed below
	require.NoError(t, f.positions.Advance(ctx, winner, watermarks.Move{Org: "st-mary", Table: "dbo.claim_lines",
		To: cursorAt(5), Reason: watermarks.ReasonSync, Actor: "winner"}))
	done := make(chan error, 1)
	go func() {
		_, err := f.apply(t, tg, nil, cursorAt(4), change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")})
		done <- err
	}()
	// The loser blocks on the winner's row, then finds it there.
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, f.pool.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()").Scan(&waiting))
		return waiting > 0
	}, 10*time.Second, 20*time.Millisecond)
	require.NoError(t, winner.Commit(ctx))
	require.ErrorIs(t, <-done, watermarks.ErrPositionMoved)
	require.Empty(t, f.dump(t, tg.Ident(), "line_id"), "the loser's rows were committed")
	h, err := f.positions.History(ctx, "st-mary", "dbo.claim_lines", 10)
	require.NoError(t, err)
	require.Len(t, h, 1, "only the winner's move is in the history")
	got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, cursorAt(5), got)
}

// TestKilledConnectionBeforeCommitLeavesNothing kills the store backend after
// the rows are staged, applied and the position moved, but before COMMIT.
func TestKilledConnectionBeforeCommitLeavesNothing(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{ChangeLog: true})
	require.NoError(t, err)
	killed := false
	tg.testHookBeforeCommit = func(ctx context.Context, tx *pgx.Conn) error {
		var pid int
		require.NoError(t, tx.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid))
		var staged, applied int
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{tg.stage}.Sanitize()).Scan(&staged))
		require.NoError(t, tx.QueryRow(ctx, "SELECT count(*) FROM "+tg.Ident().Sanitize()).Scan(&applied))
		require.Equal(t, 2, staged)
		require.Equal(t, 2, applied, "the hook must run after the rows were applied")
		_, err := f.pool.Exec(ctx, "SELECT pg_terminate_backend($1)", pid)
		require.NoError(t, err)
		killed = true
		return nil
	}
	_, err = f.apply(t, tg, nil, cursorAt(1),
		change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")},
		change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")})
	require.Error(t, err)
	require.True(t, killed)
	require.Empty(t, f.dump(t, tg.Ident(), "line_id"))
	require.Empty(t, f.dump(t, tg.ChangeLogIdent(), "line_id"))
	got, err := f.positions.Load(context.Background(), "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Nil(t, got)
	hist, err := f.positions.History(context.Background(), "st-mary", "dbo.claim_lines", 10)
	require.NoError(t, err)
	require.Empty(t, hist)

	// The same batch applies cleanly afterwards.
	tg.testHookBeforeCommit = nil
	_, err = f.apply(t, tg, nil, cursorAt(1),
		change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")},
		change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")})
	require.NoError(t, err)
	require.Len(t, f.dump(t, tg.Ident(), "line_id"), 2)
}

func TestChangeLogKeepsEveryChangeOnceInSourceOrder(t *testing.T) {
	f := newFixture(t)
	tb := claimLines(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", tb, TableOptions{ChangeLog: true})
	require.NoError(t, err)
	history := []change{
		{op: schemas.OpInsert, row: line(keyA, "P", "0.00"), pos: []byte{1}},
		{op: schemas.OpUpdate, row: line(keyA, "D", "0.00"), pos: []byte{2}},
		{op: schemas.OpUpdate, row: line(keyA, "A", "0.00"), pos: []byte{3}},
	}
	res, err := f.apply(t, tg, nil, cursorAt(3), history...)
	require.NoError(t, err)
	require.Equal(t, int64(3), res.Logged)
	// A replay overlapping the first batch adds only the new change.
	res, err = f.apply(t, tg, cursorAt(3), cursorAt(4), append(history[1:],
		change{op: schemas.OpUpdate, row: line(keyA, "S", "80.00"), pos: []byte{4}})...)
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Logged)

	rows, err := f.pool.Query(context.Background(), "SELECT status || ':' || "+MetaOp+" FROM "+tg.ChangeLogIdent().Sanitize()+" ORDER BY "+MetaChangeID)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{"P:insert", "D:update", "A:update", "S:update"}, got)
}

func TestNotifyArrivesOnlyAfterCommit(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	conn, err := f.pool.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	_, err = conn.Exec(ctx, "LISTEN "+NotifyChannel)
	require.NoError(t, err)

	// A refused batch sends nothing.
	_, err = f.apply(t, tg, cursorAt(99), cursorAt(100), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
	require.Error(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
	require.NoError(t, err)

	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := conn.Conn().WaitForNotification(wctx)
	require.NoError(t, err)
	var got notice
	require.NoError(t, json.Unmarshal([]byte(n.Payload), &got))
	require.Equal(t, "st-mary", got.Org)
	require.Equal(t, "dbo.claim_lines", got.Table)
	require.Equal(t, noticeRows{Insert: 1}, got.Rows)
	require.Equal(t, cursorAt(1).String(), got.Position, "the payload carries the position's summary")
	require.NotContains(t, n.Payload, keyA, "a key value reached the NOTIFY payload, which any store role can read")
}

func TestPrepareAddsNewSourceColumnsAndRefusesLossyChanges(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	v1 := table(t, "dbo", "claims", []string{"claim_id"}, "claim_id uniqueidentifier NOT NULL", "status char(1)", "amt numeric(12,2)")
	tg, err := f.sink.Prepare(ctx, "st-mary", v1, TableOptions{ChangeLog: true})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: map[string]any{"claim_id": keyA, "status": "D", "amt": "10.00"}})
	require.NoError(t, err)

	// The source gains a column and widens one: the store follows.
	v2 := table(t, "dbo", "claims", []string{"claim_id"}, "claim_id uniqueidentifier NOT NULL", "status char(1)",
		"amt numeric(19,2)", "payer_claim_control_nbr varchar(30)")
	tg2, err := f.sink.Prepare(ctx, "st-mary", v2, TableOptions{ChangeLog: true})
	require.NoError(t, err)
	_, err = f.apply(t, tg2, cursorAt(1), cursorAt(2), change{op: schemas.OpUpdate,
		row: map[string]any{"claim_id": keyA, "status": "A", "amt": "99999999999999999.99", "payer_claim_control_nbr": "ICN1"}})
	require.NoError(t, err)
	require.Equal(t, []string{keyA + "|A|99999999999999999.99|ICN1"}, f.dump(t, tg2.Ident(), "claim_id", "status", "amt", "payer_claim_control_nbr"))

	// Narrowing at the source: the wider store column still holds it.
	v3 := table(t, "dbo", "claims", []string{"claim_id"}, "claim_id uniqueidentifier NOT NULL", "status char(1)",
		"amt numeric(10,2)", "payer_claim_control_nbr varchar(30)")
	_, err = f.sink.Prepare(ctx, "st-mary", v3, TableOptions{ChangeLog: true})
	require.NoError(t, err)

	// A type the store column cannot hold is a clear error naming the column.
	v4 := table(t, "dbo", "claims", []string{"claim_id"}, "claim_id uniqueidentifier NOT NULL", "status int",
		"amt numeric(19,2)", "payer_claim_control_nbr varchar(30)")
	_, err = f.sink.Prepare(ctx, "st-mary", v4, TableOptions{})
	var drift *DriftError
	require.ErrorAs(t, err, &drift)
	require.Equal(t, "status", drift.Column)
	require.Contains(t, err.Error(), "ALTER TABLE")
}

// TestEveryMappedTypeRoundTrips writes one row of every SQL Server type the
// catalog maps, with extreme values, and reads it back as PostgreSQL text.
func TestEveryMappedTypeRoundTrips(t *testing.T) {
	f := newFixture(t)
	big := strings.Repeat("é😀x", 1<<20/7)
	cases := []struct {
		name, typ string
		in        any
		want      string
	}{
		{"bit", "bit", true, "true"},
		{"tinyint", "tinyint", 255, "255"},
		{"smallint", "smallint", -32768, "-32768"},
		{"int", "int", 2147483647, "2147483647"},
		{"bigint", "bigint", int64(-9223372036854775808), "-9223372036854775808"},
		{"amount_max", "numeric(19,2)", "99999999999999999.99", "99999999999999999.99"},
		{"amount_min", "numeric(19,2)", "-99999999999999999.99", "-99999999999999999.99"},
		{"zero_scale", "numeric(12,0)", "123456789012", "123456789012"},
		{"wide", "numeric(38,10)", "-1234567890123456789012345678.0123456789", "-1234567890123456789012345678.0123456789"},
		{"money", "money", "-922337203685477.5808", "-922337203685477.5808"},
		{"real", "real", 1.5, "1.5"},
		{"float", "float", 2.5e300, "2.5e+300"},
		{"business_date", "varchar(8)", "99991231", "99991231"},
		{"empty", "varchar(20)", "", ""},
		{"unicode", "nvarchar(100)", "Zoë 😀 𝄞", "Zoë 😀 𝄞"},
		{"megabyte", "nvarchar(max)", big, big},
		{"guid", "uniqueidentifier", keyA, keyA},
		{"date_max", "date", time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC), "9999-12-31"},
		{"dt_max", "datetime", time.Date(9999, 12, 31, 23, 59, 59, 997_000_000, time.UTC), "9999-12-31 23:59:59.997"},
		{"dt_min", "datetime", time.Date(1753, 1, 1, 0, 0, 0, 0, time.UTC), "1753-01-01 00:00:00"},
		{"dt2", "datetime2(6)", time.Date(2026, 11, 23, 1, 2, 3, 123456000, time.UTC), "2026-11-23 01:02:03.123456"},
		{"dto", "datetimeoffset(3)", time.Date(2026, 11, 23, 1, 2, 3, 5_000_000, time.FixedZone("", 5*3600+1800)), "2026-11-22 19:32:03.005+00"},
		{"tod", "time(3)", 13*time.Hour + 5*time.Minute + 250*time.Millisecond, "13:05:00.25"},
		{"bytes", "varbinary(max)", []byte{0, 1, 0xfe, 0xff}, `\x0001feff`},
	}
	cols := []string{"id int NOT NULL"}
	row := map[string]any{"id": 1}
	for _, c := range cases {
		cols = append(cols, c.name+" "+c.typ)
		row[c.name] = c.in
	}
	tb := table(t, "dbo", "every_type", []string{"id"}, cols...)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", tb, TableOptions{})
	require.NoError(t, err)
	nulls := map[string]any{"id": 2}
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: row}, change{op: schemas.OpInsert, row: nulls})
	require.NoError(t, err)

	// Read in UTC so timestamptz renders as an instant.
	tx, err := f.pool.Begin(context.Background())
	require.NoError(t, err)
	defer tx.Rollback(context.Background())
	_, err = tx.Exec(context.Background(), "SET LOCAL TimeZone = 'UTC'")
	require.NoError(t, err)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			q := fmt.Sprintf("SELECT %s::text FROM %s WHERE id = $1", pgx.Identifier{c.name}.Sanitize(), tg.Ident().Sanitize())
			var got *string
			require.NoError(t, tx.QueryRow(context.Background(), q, 1).Scan(&got))
			require.NotNil(t, got)
			if c.name == "megabyte" {
				require.True(t, *got == c.want, "1 MB text did not round-trip (len %d, want %d)", len(*got), len(c.want))
			} else {
				require.Equal(t, c.want, *got)
			}
			require.NoError(t, tx.QueryRow(context.Background(), q, 2).Scan(&got))
			require.Nil(t, got, "NULL did not stay NULL")
		})
	}
}

func TestHolds(t *testing.T) {
	cases := []struct {
		store, source string
		want          bool
	}{
		{"bigint", "integer", true},
		{"integer", "bigint", false},
		{"numeric(19,2)", "numeric(12,2)", true},
		{"numeric(19,2)", "numeric(19,4)", false},
		{"numeric(19,4)", "numeric(17,2)", true},
		{"numeric(12,2)", "numeric(19,2)", false},
		{"numeric(20,0)", "bigint", true},
		{"numeric(18,0)", "bigint", false},
		{"numeric", "numeric(38,10)", true},
		{"text", "character varying(8)", true},
		{"character varying(8)", "text", false},
		{"character varying(30)", "character varying(8)", true},
		{"character varying(8)", "character varying(30)", false},
		{"timestamp(6) without time zone", "timestamp(3) without time zone", true},
		{"timestamp(3) without time zone", "timestamp(6) without time zone", false},
		{"timestamp(6) with time zone", "timestamp(6) without time zone", false},
		{"double precision", "real", true},
		{"real", "double precision", false},
		{"uuid", "text", false},
		{"text", "integer", false},
	}
	for _, c := range cases {
		t.Run(c.store+"<-"+c.source, func(t *testing.T) {
			require.Equal(t, c.want, holds(c.store, c.source))
		})
	}
}

// keyFeed yields batches as KeyBatches does.
func keyFeed(batches ...arrow.RecordBatch) KeyBatches {
	return func(context.Context) (arrow.RecordBatch, error) {
		if len(batches) == 0 {
			return nil, io.EOF
		}
		b := batches[0]
		batches = batches[1:]
		return b, nil
	}
}

// TestReconcileRemovesRowsGoneAtTheSource: rows whose key the source no
// longer has are deleted by the table's policy, logged, and the
// reconciliation names the commit that deleted them.
func TestReconcileRemovesRowsGoneAtTheSource(t *testing.T) {
	for _, policy := range []DeletePolicy{DeleteHard, DeleteSoft} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t)
			ctx := context.Background()
			tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{DeletePolicy: policy, ChangeLog: true})
			require.NoError(t, err)
			_, err = f.apply(t, tg, nil, cursorAt(1),
				change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")},
				change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")},
				change{op: schemas.OpInsert, row: line(keyC, "S", "3.00")})
			require.NoError(t, err)
			never, err := tg.LastReconciled(ctx)
			require.NoError(t, err)
			require.True(t, never.IsZero())

			// The source still has A and C, in two batches; B is gone.
			sourceKeys := func() KeyBatches {
				return keyFeed(
					batch(t, f.mem, tg.table, change{op: schemas.OpInsert, row: map[string]any{"line_id": keyA}}),
					batch(t, f.mem, tg.table, change{op: schemas.OpInsert, row: map[string]any{"line_id": keyC}}))
			}
			res, err := tg.Reconcile(ctx, sourceKeys(), "test")
			require.NoError(t, err)
			require.Equal(t, ReconcileResult{SourceKeys: 2, Deleted: 1}, res)
			want := []string{keyA + "|false", keyC + "|false"}
			if policy == DeleteSoft {
				want = []string{keyB + "|true", keyA + "|false", keyC + "|false"}
			}
			require.Equal(t, want, f.dump(t, tg.Ident(), "line_id", MetaDeleted))
			// The deletion is in the change log, with B's last image.
			var logged []string
			rows, err := f.pool.Query(ctx, "SELECT line_id::text || ':' || status || ':' || _ehrsync_op FROM "+tg.ChangeLogIdent().Sanitize()+" WHERE _ehrsync_op = 'delete'")
			require.NoError(t, err)
			logged, err = pgx.CollectRows(rows, pgx.RowTo[string])
			require.NoError(t, err)
			require.Equal(t, []string{keyB + ":S:delete"}, logged)
			last, err := tg.LastReconciled(ctx)
			require.NoError(t, err)
			require.False(t, last.IsZero())
			// The position did not move.
			got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
			require.NoError(t, err)
			require.Equal(t, cursorAt(1), got)

			// The reconciliation is in the position history (the position
			// as it was, the rows deleted, the actor), and the rows it
			// soft-deleted and its change-log entries name that entry in
			// _ehrsync_batch, as every other write does.
			hist, err := f.positions.History(ctx, "st-mary", "dbo.claim_lines", 1)
			require.NoError(t, err)
			h := hist[0]
			require.Equal(t, watermarks.ReasonReconcile, h.Reason)
			require.Equal(t, "test", h.Actor)
			require.Equal(t, int64(1), h.Rows)
			require.Equal(t, cursorAt(1), h.From)
			require.Equal(t, cursorAt(1), h.To)
			var logBatch int64
			require.NoError(t, f.pool.QueryRow(ctx, "SELECT "+MetaBatch+" FROM "+tg.ChangeLogIdent().Sanitize()+
				" WHERE "+MetaOp+" = 'delete'").Scan(&logBatch))
			require.Equal(t, h.ID, logBatch, "the change-log entry of the deletion names another commit")
			if policy == DeleteSoft {
				var rowBatch int64
				require.NoError(t, f.pool.QueryRow(ctx, "SELECT "+MetaBatch+" FROM "+tg.Ident().Sanitize()+
					" WHERE line_id = $1 AND "+MetaOp+" = 'delete'", keyB).Scan(&rowBatch))
				require.Equal(t, h.ID, rowBatch, "the soft-deleted row names another commit")
			}
			// One that deletes nothing records nothing.
			res, err = tg.Reconcile(ctx, sourceKeys(), "test")
			require.NoError(t, err)
			require.Zero(t, res.Deleted)
			again, err := f.positions.History(ctx, "st-mary", "dbo.claim_lines", 1)
			require.NoError(t, err)
			require.Equal(t, h.ID, again[0].ID)
		})
	}
}

// TestReconcileSparesRowsAppliedMeanwhile commits a batch while the
// reconciliation is still reading source keys: the new row is not among
// them, and must survive.
func TestReconcileSparesRowsAppliedMeanwhile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
	require.NoError(t, err)
	fed := false
	keys := func(ctx context.Context) (arrow.RecordBatch, error) {
		if fed {
			return nil, io.EOF
		}
		fed = true
		// Meanwhile a sync commits key B.
		_, err := f.apply(t, tg, cursorAt(1), cursorAt(2), change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")})
		require.NoError(t, err)
		return batch(t, f.mem, tg.table, change{op: schemas.OpInsert, row: map[string]any{"line_id": keyA}}), nil
	}
	res, err := tg.Reconcile(ctx, keys, "test")
	require.NoError(t, err)
	require.Zero(t, res.Deleted)
	require.Equal(t, []string{keyB, keyA}, f.dump(t, tg.Ident(), "line_id"))
}

func TestReconcileRefusesToEmptyTheStoreOnNoSourceKeys(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
	require.NoError(t, err)
	_, err = tg.Reconcile(ctx, keyFeed(), "test")
	require.ErrorContains(t, err, "refusing to delete them all")
	require.Equal(t, []string{keyA}, f.dump(t, tg.Ident(), "line_id"))
}

// TestChangeLogLogsReReadImagesOnce re-applies the same row images without
// source positions, as a look-back window, a snapshot every run or the first
// run's handoff do: each image is logged once.
func TestChangeLogLogsReReadImagesOnce(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{ChangeLog: true})
	require.NoError(t, err)
	res, err := f.apply(t, tg, nil, cursorAt(1),
		change{op: schemas.OpInsert, row: line(keyA, "D", "0.00")},
		change{op: schemas.OpInsert, row: line(keyB, "S", "1.00")})
	require.NoError(t, err)
	require.Equal(t, int64(2), res.Logged)
	// The handoff re-reads A as an update with the same image; B changed.
	res, err = f.apply(t, tg, cursorAt(1), cursorAt(2),
		change{op: schemas.OpUpdate, row: line(keyA, "D", "0.00")},
		change{op: schemas.OpUpdate, row: line(keyB, "A", "1.00")})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Logged)
	// Deletes of one key in two chunks are two entries.
	for i, pos := range []int64{3, 4} {
		if i == 1 {
			_, err = f.apply(t, tg, cursorAt(3), cursorAt(3), change{op: schemas.OpInsert, row: line(keyA, "R", "0.00")})
			require.NoError(t, err)
		}
		res, err = f.apply(t, tg, cursorAt(pos-1), cursorAt(pos), change{op: schemas.OpDelete, row: map[string]any{"line_id": keyA}})
		require.NoError(t, err)
		require.Equal(t, int64(1), res.Logged, "delete %d", i+1)
	}
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+tg.ChangeLogIdent().Sanitize()).Scan(&n))
	require.Equal(t, 6, n)
}

func TestTextWithNULIsAClearErrorWithoutTheValue(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	bad := line(keyA, "S", "1.00")
	bad["begin_date_of_service"] = "2026\x00secret"
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyB, "S", "1.00")}, change{op: schemas.OpInsert, row: bad})
	var te *TextError
	require.ErrorAs(t, err, &te)
	require.Equal(t, TextError{Column: "begin_date_of_service", Row: 1}, *te)
	require.NotContains(t, err.Error(), "secret")
	require.Empty(t, f.dump(t, tg.Ident(), "line_id"))
}

func TestJSONColumnsCompareAsText(t *testing.T) {
	f := newFixture(t)
	tb := &schemas.Table{Schema: "dbo", Name: "docs", Dialect: schemas.Postgres, Key: []string{"id"}}
	for _, c := range []struct{ name, typ string }{{"id", "integer"}, {"doc", "json"}} {
		ty, err := schemas.ParseType(schemas.Postgres, c.typ)
		require.NoError(t, err)
		tb.Columns = append(tb.Columns, schemas.Column{Name: c.name, Type: ty, Nullable: c.name != "id"})
	}
	tg, err := f.sink.Prepare(context.Background(), "st-mary", tb, TableOptions{})
	require.NoError(t, err)
	doc := map[string]any{"id": 1, "doc": `{"carc": "CO-197"}`}
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: doc})
	require.NoError(t, err)
	res, err := f.apply(t, tg, cursorAt(1), cursorAt(2), change{op: schemas.OpUpdate, row: doc})
	require.NoError(t, err, "a json column broke the upsert")
	require.Equal(t, int64(1), res.Unchanged)
}

// TestConcurrentPreparesOfOneSchema prepares several tables of a new
// organization at once, as replicas and manual syncs do.
func TestConcurrentPreparesOfOneSchema(t *testing.T) {
	f := newFixture(t)
	errs := make(chan error, 6)
	for i := 0; i < cap(errs); i++ {
		go func() {
			tb := table(t, "dbo", fmt.Sprintf("t%d", i), []string{"id"}, "id int NOT NULL", "v varchar(10)")
			_, err := f.sink.Prepare(context.Background(), "north-ridge", tb, TableOptions{ChangeLog: i%2 == 0})
			errs <- err
		}()
	}
	for i := 0; i < cap(errs); i++ {
		require.NoError(t, <-errs)
	}
}

// TestSchemaForAgreesWithConfigValidation: config refuses org names whose
// store schemas collide using config.StoreSchema; the sink must name
// schemas the same way or that check protects nothing.
func TestSchemaForAgreesWithConfigValidation(t *testing.T) {
	for _, org := range []string{"st-mary", "st_mary", "north-ridge-2", "demo", "a-b_c-d"} {
		require.Equal(t, config.StoreSchema(org), SchemaFor(org), org)
	}
}

// TestRowsNameTheCommitThatLastWroteThem: a row's _ehrsync_batch is the
// position-history entry of the commit that last changed it, with that
// commit's position; a replay that changes nothing leaves it.
func TestRowsNameTheCommitThatLastWroteThem(t *testing.T) {
	for _, policy := range []DeletePolicy{DeleteHard, DeleteSoft} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t)
			tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{DeletePolicy: policy, ChangeLog: true})
			require.NoError(t, err)
			at := func(n int64) string {
				b, err := watermarks.Encode(cursorAt(n))
				require.NoError(t, err)
				var canon string // jsonb's own spelling, as the join prints it
				require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT $1::jsonb::text", string(b)).Scan(&canon))
				return canon
			}
			_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")},
				change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")})
			require.NoError(t, err)
			_, err = f.apply(t, tg, cursorAt(1), cursorAt(2), change{op: schemas.OpUpdate, row: line(keyA, "D", "0.00")},
				change{op: schemas.OpUpdate, row: line(keyB, "S", "2.00")}) // no change to B
			require.NoError(t, err)
			require.Equal(t, []string{keyB + "|" + at(1), keyA + "|" + at(2)}, f.batches(t, tg))
			_, err = f.apply(t, tg, cursorAt(2), cursorAt(3), change{op: schemas.OpDelete, row: map[string]any{"line_id": keyB}})
			require.NoError(t, err)
			want := []string{keyA + "|" + at(2)}
			if policy == DeleteSoft {
				want = []string{keyB + "|" + at(3), keyA + "|" + at(2)}
			}
			require.Equal(t, want, f.batches(t, tg))
			// Every change-log entry names its commit too.
			var unnamed int
			require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+tg.ChangeLogIdent().Sanitize()+
				" c LEFT JOIN ehrsync.position_history h ON h.id = c."+MetaBatch+" WHERE h.id IS NULL").Scan(&unnamed))
			require.Zero(t, unnamed)
		})
	}
}

// TestPrepareReplacesTheLegacyPositionColumn: a table created when rows
// carried a jsonb copy of their position gets _ehrsync_batch instead, keeps
// its rows, and takes batches.
func TestPrepareReplacesTheLegacyPositionColumn(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{ChangeLog: true})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
	require.NoError(t, err)
	for _, ident := range []pgx.Identifier{tg.Ident(), tg.ChangeLogIdent()} {
		_, err = f.pool.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" DROP COLUMN "+MetaBatch+", ADD COLUMN "+legacyPosition+" jsonb")
		require.NoError(t, err)
	}
	tg, err = f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{ChangeLog: true})
	require.NoError(t, err)
	for _, ident := range []pgx.Identifier{tg.Ident(), tg.ChangeLogIdent()} {
		var cols []string
		rows, err := f.pool.Query(ctx, "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attname LIKE '\\_ehrsync\\_%' ORDER BY 1", ident.Sanitize())
		require.NoError(t, err)
		cols, err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		require.Contains(t, cols, MetaBatch, ident.Sanitize())
		require.NotContains(t, cols, legacyPosition, ident.Sanitize())
	}
	require.Equal(t, []string{keyA + "|S"}, f.dump(t, tg.Ident(), "line_id", "status"))
	_, err = f.apply(t, tg, cursorAt(1), cursorAt(2), change{op: schemas.OpUpdate, row: line(keyA, "D", "0.00")})
	require.NoError(t, err)
	b, err := watermarks.Encode(cursorAt(2))
	require.NoError(t, err)
	got := f.batches(t, tg)
	require.Len(t, got, 1)
	require.JSONEq(t, string(b), strings.TrimPrefix(got[0], keyA+"|"))
}

// TestChangeLogSkipsDeletesOfKeysNeverHeld: a delete of a key the store
// never held (another practice's row, which CDC reads as a key-only delete)
// writes no change-log row; a delete of a held key does, and so does the
// delete of a key the same chunk inserted first.
func TestChangeLogSkipsDeletesOfKeysNeverHeld(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{ChangeLog: true})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "P", "1.00"), pos: []byte{1}})
	require.NoError(t, err)
	res, err := f.apply(t, tg, cursorAt(1), cursorAt(2),
		change{op: schemas.OpDelete, row: line(keyB, "X", "9.00"), pos: []byte{2}}, // never held
		change{op: schemas.OpDelete, row: line(keyA, "P", "1.00"), pos: []byte{3}}, // held
		change{op: schemas.OpInsert, row: line(keyC, "N", "3.00"), pos: []byte{4}}, // written by this chunk,
		change{op: schemas.OpDelete, row: line(keyC, "N", "3.00"), pos: []byte{5}}) // then deleted
	require.NoError(t, err)
	require.Equal(t, int64(3), res.Logged)
	rows, err := f.pool.Query(context.Background(), "SELECT line_id::text || ':' || "+MetaOp+" FROM "+tg.ChangeLogIdent().Sanitize()+" ORDER BY "+MetaChangeID)
	require.NoError(t, err)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Equal(t, []string{keyA + ":insert", keyA + ":delete", keyC + ":insert", keyC + ":delete"}, got)
	require.Empty(t, f.dump(t, tg.Ident(), "line_id"))

	// A key deleted twice in one chunk (a row moved out, then another
	// practice's update of it read as a key-only delete) is logged once.
	_, err = f.apply(t, tg, cursorAt(2), cursorAt(3), change{op: schemas.OpInsert, row: line(keyA, "P", "1.00"), pos: []byte{6}})
	require.NoError(t, err)
	res, err = f.apply(t, tg, cursorAt(3), cursorAt(4),
		change{op: schemas.OpDelete, row: line(keyA, "P", "1.00"), pos: []byte{7}},
		change{op: schemas.OpDelete, row: line(keyA, "X", "9.00"), pos: []byte{8}})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Logged)
}

// TestChangeLogSkipsDeletesOfTombstones: under the soft delete policy a
// tombstone is not held: another delete of its key (another practice's
// update of a row that moved out) is not logged.
func TestChangeLogSkipsDeletesOfTombstones(t *testing.T) {
	f := newFixture(t)
	tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{ChangeLog: true, DeletePolicy: DeleteSoft})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "P", "1.00"), pos: []byte{1}})
	require.NoError(t, err)
	res, err := f.apply(t, tg, cursorAt(1), cursorAt(2), change{op: schemas.OpDelete, row: line(keyA, "P", "1.00"), pos: []byte{2}})
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Logged)
	res, err = f.apply(t, tg, cursorAt(2), cursorAt(3), change{op: schemas.OpDelete, row: line(keyA, "X", "9.00"), pos: []byte{3}})
	require.NoError(t, err)
	require.Zero(t, res.Logged, "a delete of a tombstone was logged")
}
