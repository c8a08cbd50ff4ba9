package synth

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func catalogTable(t *testing.T, name string) *schemas.Table {
	t.Helper()
	tb, ok := schemas.NextGen().Table(name)
	require.True(t, ok)
	return tb
}

func TestSQLServerBatch(t *testing.T) {
	links := catalogTable(t, tReasonLinks)
	claims := catalogTable(t, tClaims)
	id := UUID{0xde, 0xad, 0xbe, 0xef, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1}
	at := time.Date(2025, 1, 6, 9, 30, 0, 3_000_000, time.UTC)
	b := &Batch{
		Progress: State{Day: 3, Batch: 2},
		Ops: []Op{
			{Kind: schemas.OpInsert, Table: links, Columns: []string{"trans_id", "charge_id", "reason_code_id", "seq_nbr", "practice_id", "group_code", "adj_amt", "created_by", "create_timestamp"},
				Rows: [][]any{
					{id, id, id, int64(1), "0001", "CO", Amount(-1250), int64(7), at},
					{id, id, id, int64(2), "0001", "PR", nil, int64(7), at},
				}},
			{Kind: schemas.OpUpdate, Table: claims, Columns: []string{"status", "modify_timestamp"},
				Rows: [][]any{{claimSent, at, id}}},
			{Kind: schemas.OpDelete, Table: links,
				Rows: [][]any{{id, id, id, int64(1)}}},
		},
	}
	stmts, err := SQLServerBatch(b, "dbo")
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		sql  string
		args []any
	}{
		{
			name: "insert",
			sql: "INSERT INTO [dbo].[reason_code_links] ([trans_id], [charge_id], [reason_code_id], [seq_nbr], [practice_id], [group_code], [adj_amt], [created_by], [create_timestamp]) " +
				"VALUES (@p1, @p2, @p3, @p4, @p5, @p6, @p7, @p8, @p9), (@p10, @p11, @p12, @p13, @p14, @p15, @p16, @p17, @p18)",
			args: []any{
				"DEADBEEF-0000-4000-8000-000000000001", "DEADBEEF-0000-4000-8000-000000000001", "DEADBEEF-0000-4000-8000-000000000001", int64(1), "0001", "CO", "-12.50", int64(7), at,
				"DEADBEEF-0000-4000-8000-000000000001", "DEADBEEF-0000-4000-8000-000000000001", "DEADBEEF-0000-4000-8000-000000000001", int64(2), "0001", "PR", nil, int64(7), at,
			},
		},
		{
			name: "update",
			sql:  "UPDATE [dbo].[claims] SET [status] = @p1, [modify_timestamp] = @p2 WHERE [claim_id] = @p3",
			args: []any{"sent", at, "DEADBEEF-0000-4000-8000-000000000001"},
		},
		{
			name: "delete",
			sql:  "DELETE FROM [dbo].[reason_code_links] WHERE [trans_id] = @p1 AND [charge_id] = @p2 AND [reason_code_id] = @p3 AND [seq_nbr] = @p4",
			args: []any{"DEADBEEF-0000-4000-8000-000000000001", "DEADBEEF-0000-4000-8000-000000000001", "DEADBEEF-0000-4000-8000-000000000001", int64(1)},
		},
		{
			name: "progress",
			sql: "UPDATE [dbo].[synth_state] SET [state] = @p1, [updated_at] = SYSUTCDATETIME() WHERE [id] = 1;\n" +
				"IF @@ROWCOUNT = 0 INSERT INTO [dbo].[synth_state] ([id], [state], [updated_at]) VALUES (1, @p1, SYSUTCDATETIME())",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.NotEmpty(t, stmts)
			s := stmts[0]
			stmts = stmts[1:]
			require.Equal(t, tc.sql, s.SQL)
			if tc.args != nil {
				require.Equal(t, tc.args, s.Args)
			}
		})
	}
	require.Empty(t, stmts)
}

func TestSQLServerBatchSplitsLargeInserts(t *testing.T) {
	tb := catalogTable(t, tTransDetail)
	g, err := NewGenerator(Options{Seed: 1})
	require.NoError(t, err)
	tr := g.tables[tTransDetail]
	op := Op{Kind: schemas.OpInsert, Table: tb, Columns: tr.cols}
	for range 250 {
		op.Rows = append(op.Rows, tr.row(DefaultStart, 1))
	}
	stmts, err := SQLServerBatch(&Batch{Ops: []Op{op}}, "dbo")
	require.NoError(t, err)
	perStmt := msMaxParams / len(tr.cols)
	require.Len(t, stmts, (250+perStmt-1)/perStmt+1)
	for _, s := range stmts[:len(stmts)-1] {
		require.LessOrEqual(t, len(s.Args), msMaxParams)
	}
}

// TestRowTimestampIsTheBatchXid: every row a batch writes carries the id of
// the transaction that wrote it, one value per batch, between the ids
// before and after it.
func TestRowTimestampIsTheBatchXid(t *testing.T) {
	ctx := context.Background()
	pool, _ := populated(t, Options{Seed: 5, EncountersPerDay: 40}, 20)
	g, err := NewGenerator(Options{Seed: 5, EncountersPerDay: 40})
	require.NoError(t, err)
	w := NewPostgresWriter(pool, "dbo")
	xid := func() int64 {
		var x int64
		require.NoError(t, pool.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&x))
		return x
	}
	batches := g.Batches(20)
	require.Greater(t, len(batches), 3)
	for _, b := range batches {
		before := xid()
		require.NoError(t, w.Apply(ctx, b))
		after := xid()
		tables := map[string]bool{}
		for _, op := range b.Ops {
			if op.Kind != schemas.OpDelete && op.Table.RowVersion != "" {
				tables[op.Table.Name] = true
			}
		}
		for name := range tables {
			var values []int64
			rows, err := pool.Query(ctx, "SELECT DISTINCT row_timestamp FROM "+pgIdent("dbo", name)+" WHERE modify_timestamp = $1", b.At)
			require.NoError(t, err)
			for rows.Next() {
				var v int64
				require.NoError(t, rows.Scan(&v))
				values = append(values, v)
			}
			require.NoError(t, rows.Err())
			require.Len(t, values, 1, "batch %d (%s) table %s", b.Seq, b.Kind, name)
			require.Greater(t, values[0], before)
			require.Less(t, values[0], after)
		}
	}
}
