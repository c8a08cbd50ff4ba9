package sink

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

func uuidKey(t *testing.T, text string) watermarks.Key {
	t.Helper()
	v, err := watermarks.ParseValue(watermarks.TypeUUID, "uniqueidentifier", text)
	require.NoError(t, err)
	return watermarks.Key{v}
}

// TestReconcileRangeTouchesOnlyTheRange: the source's keys of [A, C] lack
// A; B (outside the range, in the store's uuid order B < A < C) is gone
// at the source too but must stay, since the range's keys say nothing of
// it. A range reconciliation is no full one: LastReconciled stays zero.
func TestReconcileRangeTouchesOnlyTheRange(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1),
		change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")},
		change{op: schemas.OpInsert, row: line(keyB, "S", "2.00")},
		change{op: schemas.OpInsert, row: line(keyC, "S", "3.00")})
	require.NoError(t, err)
	res, err := tg.ReconcileRange(ctx, keyFeed(
		batch(t, f.mem, tg.table, change{op: schemas.OpInsert, row: map[string]any{"line_id": keyC}}),
	), "test", uuidKey(t, keyA), uuidKey(t, keyC))
	require.NoError(t, err)
	require.Equal(t, ReconcileResult{SourceKeys: 1, Deleted: 1}, res)
	require.Equal(t, []string{keyB, keyC}, f.dump(t, tg.Ident(), "line_id"))
	last, err := tg.LastReconciled(ctx)
	require.NoError(t, err)
	require.True(t, last.IsZero())
}

// TestWithPositionTableKeepsTheTablesPosition: a target whose position is
// kept under another name commits its rows with that position, and records
// its reconciliations under that name, leaving the table's own position and
// history where they were.
func TestWithPositionTableKeepsTheTablesPosition(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	tg, err := f.sink.Prepare(ctx, "st-mary", claimLines(t), TableOptions{})
	require.NoError(t, err)
	_, err = f.apply(t, tg, nil, cursorAt(1), change{op: schemas.OpInsert, row: line(keyA, "S", "1.00")})
	require.NoError(t, err)
	bf := tg.WithPositionTable("dbo.claim_lines#backfill")
	to := watermarks.Snapshot{LastKey: uuidKey(t, keyB)}
	_, err = f.apply(t, bf, nil, to, change{op: schemas.OpInsert, row: line(keyB, "R", "2.00")})
	require.NoError(t, err)
	got, err := f.positions.Load(ctx, "st-mary", "dbo.claim_lines")
	require.NoError(t, err)
	require.Equal(t, cursorAt(1), got)
	got, err = f.positions.Load(ctx, "st-mary", "dbo.claim_lines#backfill")
	require.NoError(t, err)
	require.Equal(t, watermarks.Position(to), got)
	require.Equal(t, []string{keyB + "|R", keyA + "|S"}, f.dump(t, tg.Ident(), "line_id", "status"))

	// Its reconciliation is recorded under its own name too: the table's
	// history does not move.
	res, err := bf.ReconcileRange(ctx, keyFeed(
		batch(t, f.mem, tg.table, change{op: schemas.OpInsert, row: map[string]any{"line_id": keyC}}),
	), "test", uuidKey(t, keyA), uuidKey(t, keyC))
	require.NoError(t, err)
	require.Equal(t, int64(1), res.Deleted)
	hist, err := f.positions.History(ctx, "st-mary", "dbo.claim_lines#backfill", 1)
	require.NoError(t, err)
	require.Equal(t, watermarks.ReasonReconcile, hist[0].Reason)
	hist, err = f.positions.History(ctx, "st-mary", "dbo.claim_lines", 0)
	require.NoError(t, err)
	require.Len(t, hist, 1, "a ranged reconciliation moved the table's history")
}
