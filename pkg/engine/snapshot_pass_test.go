package engine_test

import (
	"context"
	"database/sql"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	_ "github.com/jackc/pgx/v5/stdlib"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// snapshotPlanner plans every table as a real keyset snapshot of db.
type snapshotPlanner struct{ db *sql.DB }

func (p snapshotPlanner) Plan(_ context.Context, req extractors.PlanRequest) (extractors.Plan, error) {
	x, err := snapshot.New(p.db, req.Dialect, req.Table, snapshot.Options{Bounds: extractors.Bounds{ChunkRows: 3}})
	return extractors.Plan{Strategy: "snapshot", Extractor: x}, err
}

// TestResumedSnapshotPassStillSeesRowsAddedBehindIt: a snapshot-strategy
// table whose pass was interrupted (position saved between chunks) gains a
// row behind that pass's cursor. The next sync finishes the old pass and
// reads the table once more, so the row that existed when it began is in
// the store when it ends (found by the reliability suite's kills during a
// workload).
func TestResumedSnapshotPassStillSeesRowsAddedBehindIt(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", &fake{table: table(t, "t")})
	src, err := sql.Open("pgx", f.srcURL)
	require.NoError(t, err)
	defer src.Close()
	_, err = src.ExecContext(ctx, `CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY, v varchar(10));
		INSERT INTO dbo.t SELECT i * 10, 'v' || i FROM generate_series(1, 10) i`)
	require.NoError(t, err)
	f.build(snapshotPlanner{src})

	// An interrupted pass: keys up to 50 were read by an earlier run.
	require.NoError(t, f.eng.Positions().Reset(ctx, f.org.Name, "dbo.t",
		watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(50)}}, "test", "an interrupted pass"))
	_, err = src.ExecContext(ctx, `INSERT INTO dbo.t VALUES (5, 'behind')`)
	require.NoError(t, err)

	res := f.eng.SyncOrg(ctx, f.org, nil)
	require.NoError(t, res.Err)
	require.Len(t, res.Tables, 1)
	require.NoError(t, res.Tables[0].Err)
	var n int
	require.NoError(t, f.store.QueryRow(ctx, `SELECT count(*) FROM st_mary.t WHERE id = 5`).Scan(&n))
	require.Equal(t, 1, n, "a row that existed when the sync began is missing from the store")
	require.NoError(t, f.store.QueryRow(ctx, `SELECT count(*) FROM st_mary.t`).Scan(&n))
	require.Equal(t, 11, n)
}

// handoff is an extractor whose snapshot (from no position) ends at an
// incremental cursor 3, from which one more change (row 4) is waiting.
type handoff struct{ table *schemas.Table }

func (h handoff) Open(_ context.Context, pos watermarks.Position) (extractors.Run, error) {
	var from int64
	if c, ok := pos.(watermarks.Cursor); ok {
		from, _ = c.Value.AsInt64()
	}
	return &handoffRun{h: h, from: from, snapshot: pos == nil}, nil
}

type handoffRun struct {
	h        handoff
	from     int64
	snapshot bool
	done     bool
}

func (r *handoffRun) Next(context.Context) (extractors.Chunk, error) {
	if r.done || r.from >= 4 {
		return extractors.Chunk{}, io.EOF
	}
	r.done = true
	ids, reason := []int32{4}, watermarks.ReasonSync
	if r.snapshot {
		ids, reason = []int32{1, 2, 3}, watermarks.ReasonSnapshot
	}
	sc, err := schemas.ChangeSchema(r.h.table)
	if err != nil {
		return extractors.Chunk{}, err
	}
	b := array.NewRecordBuilder(memory.DefaultAllocator, sc)
	defer b.Release()
	for _, id := range ids {
		b.Field(0).(*array.Int32Builder).Append(id)
		b.Field(1).(*array.StringBuilder).Append("v")
		b.Field(2).(*array.Int8Builder).Append(int8(schemas.OpInsert))
		b.Field(3).(*array.Int64Builder).Append(int64(id))
		b.Field(4).AppendNull()
	}
	return extractors.Chunk{Batch: b.NewRecordBatch(), Reason: reason,
		To: watermarks.Cursor{Column: "id", Value: watermarks.Int64(int64(ids[len(ids)-1]))}}, nil
}

func (r *handoffRun) Close() error { return nil }

type handoffPlanner struct{ h handoff }

func (p handoffPlanner) Plan(context.Context, extractors.PlanRequest) (extractors.Plan, error) {
	return extractors.Plan{Strategy: "hwm", Extractor: p.h}, nil
}

// TestSnapshotHandOffCatchesUpInTheSameRun: a run whose snapshot ends at its
// incremental start goes on to read the changes made since, so the store is
// current when the sync ends (found by the reliability suite: a final sync
// that finished a snapshot begun before several kills left the changes made
// meanwhile for the next run).
func TestSnapshotHandOffCatchesUpInTheSameRun(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, "", &fake{table: table(t, "t")})
	f.build(handoffPlanner{handoff{table(t, "t")}})
	res := f.eng.SyncOrg(ctx, f.org, nil)
	require.NoError(t, res.Err)
	require.NoError(t, res.Tables[0].Err)
	var n int
	require.NoError(t, f.store.QueryRow(ctx, `SELECT count(*) FROM st_mary.t`).Scan(&n))
	require.Equal(t, 4, n, "the change waiting after the snapshot's hand-off was not read in the same run")
	require.Equal(t, 2, res.Tables[0].Chunks)
	require.Nil(t, res.Tables[0].From)
	pos, err := f.eng.Positions().Load(ctx, f.org.Name, "dbo.t")
	require.NoError(t, err)
	v, _ := pos.(watermarks.Cursor).Value.AsInt64()
	require.Equal(t, int64(4), v)
}
