package cdcmodel_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/cdc/cdcmodel"
	"github.com/ehrsync/ehrsync/watermarks"
)

// The double must behave as SQL Server does where the extractor's tests
// rely on it.
func TestModel(t *testing.T) {
	ctx := context.Background()
	m := cdcmodel.New()
	m.CreateTable(cdcmodel.TableDef{Schema: "dbo", Name: "t", Columns: []string{"id", "v"}, Key: []string{"id"}})
	start := m.EnableCDC("dbo", "t", "t_ci")
	all := func() []cdc.Change {
		max, err := m.MaxLSN(ctx)
		require.NoError(t, err)
		ch, err := m.Changes(ctx, cdc.Query{Instance: "t_ci", After: watermarks.CDC{LSN: start}, To: max, Limit: 100, Columns: []string{"id", "v"}})
		require.NoError(t, err)
		return ch
	}

	tx := m.Begin()
	tx.Insert("dbo", "t", cdcmodel.Row{"id": int64(1), "v": "a"})
	require.Empty(t, m.Rows("dbo", "t"), "an open transaction is invisible")
	c1 := tx.Commit()
	tx = m.Begin()
	tx.Update("dbo", "t", cdcmodel.Row{"id": int64(1), "v": "b"})
	tx.Commit()
	ch := all()
	require.Len(t, ch, 2, "the update's before-image is left out")
	require.Equal(t, []int8{2, 4}, []int8{ch[0].Op, ch[1].Op})
	require.Equal(t, c1, ch[0].LSN)

	m.StopAgent()
	before, _ := m.MaxLSN(ctx)
	tx = m.Begin()
	tx.Delete("dbo", "t", cdcmodel.Row{"id": int64(1)})
	tx.Commit()
	after, _ := m.MaxLSN(ctx)
	require.Equal(t, before, after, "a stopped agent harvests nothing")
	require.Len(t, all(), 2)
	st, err := m.Agent(ctx)
	require.NoError(t, err)
	require.True(t, st.Behind)
	m.StartAgent()
	require.Len(t, all(), 3)

	m.Cleanup("t_ci", ch[1].LSN)
	min, err := m.MinLSN(ctx, "t_ci")
	require.NoError(t, err)
	require.Equal(t, ch[1].LSN, min)
	ins, err := m.Instances(ctx, "dbo", "t")
	require.NoError(t, err)
	require.Equal(t, min, ins[0].StartLSN, "cleanup raises the instance's start LSN")
}

// Within a transaction the statements take command ids 1, 2, ... in the
// order they run; ReverseSeqvals makes seqval order contradict it, and
// Changes still returns the rows in command order, resuming after a row by
// (lsn, command id, seqval, op).
func TestModelCommandOrderNotSeqval(t *testing.T) {
	ctx := context.Background()
	m := cdcmodel.New()
	m.CreateTable(cdcmodel.TableDef{Schema: "dbo", Name: "t", Columns: []string{"id", "v"}, Key: []string{"id"}})
	start := m.EnableCDC("dbo", "t", "t_ci")
	tx := m.Begin()
	tx.Insert("dbo", "t", cdcmodel.Row{"id": int64(1), "v": "a"})
	tx.Delete("dbo", "t", cdcmodel.Row{"id": int64(1)})
	tx.Insert("dbo", "t", cdcmodel.Row{"id": int64(1), "v": "b"})
	tx.ReverseSeqvals()
	commit := tx.Commit()
	q := cdc.Query{Instance: "t_ci", After: watermarks.CDC{LSN: start}, To: commit, Limit: 100, Columns: []string{"id", "v"}}
	ch, err := m.Changes(ctx, q)
	require.NoError(t, err)
	require.Len(t, ch, 3)
	for i, c := range ch {
		require.Equal(t, int32(i+1), c.CommandID)
		require.Equal(t, commit, c.LSN)
	}
	require.Equal(t, []int8{2, 1, 2}, []int8{ch[0].Op, ch[1].Op, ch[2].Op})
	require.Positive(t, ch[0].Seqval.Compare(ch[2].Seqval), "seqval order contradicts command order")

	q.After = watermarks.CDC{LSN: commit, CommandID: ch[0].CommandID, Seqval: ch[0].Seqval, Op: ch[0].Op}
	rest, err := m.Changes(ctx, q)
	require.NoError(t, err)
	require.Equal(t, ch[1:], rest, "resumes after exactly the first row")
}
