package sink

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// ops returns "key:op" for each row of the target (ordered by key text) or
// each change-log entry (in log order).
func (f *fixture) ops(t *testing.T, tg *Target, changeLog bool) []string {
	t.Helper()
	q := "SELECT line_id::text || ':' || " + MetaOp + " FROM " + tg.Ident().Sanitize() + " ORDER BY line_id::text"
	if changeLog {
		q = "SELECT line_id::text || ':' || " + MetaOp + " FROM " + tg.ChangeLogIdent().Sanitize() + " ORDER BY " + MetaChangeID
	}
	rows, err := f.pool.Query(context.Background(), q)
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	return out
}

// TestStoredOpSaysWhatTheApplyDid: a row's _ehrsync_op and its change-log
// entry say what the apply did to the store, as the run's counts do,
// whatever the source called the change: a high-water mark reads every
// change as an update, so its new rows are inserts; a CDC replay of an
// insert whose key the store holds is an update; a re-insert of a
// soft-deleted key is an insert again.
func TestStoredOpSaysWhatTheApplyDid(t *testing.T) {
	for _, policy := range []DeletePolicy{DeleteHard, DeleteSoft} {
		t.Run(string(policy), func(t *testing.T) {
			f := newFixture(t)
			tg, err := f.sink.Prepare(context.Background(), "st-mary", claimLines(t), TableOptions{DeletePolicy: policy, ChangeLog: true})
			require.NoError(t, err)
			// Sorted by text: keyB, keyA.
			res, err := f.apply(t, tg, nil, cursorAt(1),
				change{op: schemas.OpUpdate, row: line(keyA, "S", "1.00")}, // new keys, read by a high-water mark
				change{op: schemas.OpUpdate, row: line(keyB, "S", "2.00")})
			require.NoError(t, err)
			require.Equal(t, Result{Rows: 2, Inserted: 2, Logged: 2}, res)
			require.Equal(t, []string{keyB + ":insert", keyA + ":insert"}, f.ops(t, tg, false))
			require.Equal(t, []string{keyA + ":insert", keyB + ":insert"}, f.ops(t, tg, true))

			res, err = f.apply(t, tg, cursorAt(1), cursorAt(2),
				change{op: schemas.OpUpdate, row: line(keyA, "D", "0.00")},
				change{op: schemas.OpInsert, row: line(keyB, "R", "2.00")}) // an insert of a key the store holds
			require.NoError(t, err)
			require.Equal(t, Result{Rows: 2, Updated: 2, Logged: 2}, res)
			require.Equal(t, []string{keyB + ":update", keyA + ":update"}, f.ops(t, tg, false))
			require.Equal(t, []string{keyA + ":insert", keyB + ":insert", keyA + ":update", keyB + ":update"}, f.ops(t, tg, true))

			// A key deleted, then written again by a later chunk.
			_, err = f.apply(t, tg, cursorAt(2), cursorAt(3), change{op: schemas.OpDelete, row: map[string]any{"line_id": keyA}})
			require.NoError(t, err)
			res, err = f.apply(t, tg, cursorAt(3), cursorAt(4), change{op: schemas.OpUpdate, row: line(keyA, "A", "5.00")})
			require.NoError(t, err)
			require.Equal(t, Result{Rows: 1, Inserted: 1, Logged: 1}, res)
			require.Equal(t, []string{keyB + ":update", keyA + ":insert"}, f.ops(t, tg, false))
			log := f.ops(t, tg, true)
			require.Equal(t, []string{keyA + ":delete", keyA + ":insert"}, log[len(log)-2:])

			// In one chunk: a new key written twice is an insert, then an
			// update; the row was inserted by the chunk.
			res, err = f.apply(t, tg, cursorAt(4), cursorAt(5),
				change{op: schemas.OpUpdate, row: line(keyC, "P", "1.00")},
				change{op: schemas.OpUpdate, row: line(keyC, "S", "1.00")})
			require.NoError(t, err)
			require.Equal(t, Result{Rows: 2, Inserted: 1, Logged: 2}, res)
			require.Equal(t, []string{keyB + ":update", keyA + ":insert", keyC + ":insert"}, f.ops(t, tg, false))
			log = f.ops(t, tg, true)
			require.Equal(t, []string{keyC + ":insert", keyC + ":update"}, log[len(log)-2:])
		})
	}
}
