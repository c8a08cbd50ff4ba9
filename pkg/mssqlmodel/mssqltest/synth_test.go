package mssqltest

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/schemas"
)

// The writer loads a simulation into the model, continues it from the
// state it stored, and each batch is one transaction.
func TestSynthWriter(t *testing.T) {
	ctx := context.Background()
	m := mssqlmodel.New(mssqlmodel.Options{AutoHarvest: true})
	cat := schemas.NextGen()
	require.NoError(t, CreateSynth(m, cat, synth.SQLServerOptions{}))
	w := NewSynthWriter(m, "dbo")
	rec := &recordingWriter{SynthWriter: w}
	_, ok, err := w.State(ctx)
	require.NoError(t, err)
	require.False(t, ok, "an empty source holds no simulation")

	// Every update and delete of 20 days finds its row (the writer is
	// strict), through the ERA deletes.
	opts := synth.Options{Preset: synth.Small, Seed: 7, Catalog: cat}
	stats, err := synth.Populate(ctx, rec, opts, 20)
	require.NoError(t, err)
	require.Positive(t, stats.Total().Deletes)
	st, ok, err := w.State(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 20, st.Day)
	require.Equal(t, 0, st.Batch)

	// The model holds what the generator wrote, the keys in the wire order
	// of uniqueidentifier.
	rows, err := m.Rows("dbo.patient_encounter")
	require.NoError(t, err)
	require.EqualValues(t, stats.Tables["patient_encounter"].Inserts, len(rows))
	keys := map[string]bool{}
	for _, r := range rows {
		keys[string(r["enc_id"].([]byte))] = true
		require.Len(t, r["row_timestamp"], 8, "the model assigns the rowversion")
		require.IsType(t, time.Time{}, r["enc_timestamp"])
	}
	found := 0
	for _, id := range rec.encounters {
		require.True(t, keys[string(mssqlmodel.GUIDWire(uuid.UUID(id)))], "encounter %s not in the model", id)
		found++
	}
	require.Equal(t, len(rows), found)

	// Simulate continues from the stored state.
	_, st, err = synth.Simulate(ctx, w, synth.Options{Catalog: cat}, 1)
	require.NoError(t, err)
	require.Equal(t, 21, st.Day)

	// A batch that fails leaves nothing behind, its progress included.
	before, err := m.Rows("dbo.claims")
	require.NoError(t, err)
	claims, ok := cat.Table("claims")
	require.True(t, ok)
	// The first claim's key, back from wire order (GUIDWire's inverse).
	wire := before[0]["claim_id"].([]byte)
	var id synth.UUID
	copy(id[:], wire)
	id[0], id[1], id[2], id[3] = wire[3], wire[2], wire[1], wire[0]
	id[4], id[5], id[6], id[7] = wire[5], wire[4], wire[7], wire[6]
	require.Equal(t, wire, ModelValue(id))
	bad := &synth.Batch{Progress: synth.State{Options: st.Options, Day: 99}, Ops: []synth.Op{
		{Kind: schemas.OpUpdate, Table: claims, Columns: []string{"status"}, Rows: [][]any{{"never", id}}},
		{Kind: schemas.OpDelete, Table: claims, Rows: [][]any{{synth.UUID{1}}}}, // no such claim
	}}
	err = w.Apply(ctx, bad)
	require.ErrorIs(t, err, mssqlmodel.ErrNoRow)
	after, err := m.Rows("dbo.claims")
	require.NoError(t, err)
	require.Equal(t, before, after, "the failed batch's update was rolled back")
	st2, _, err := w.State(ctx)
	require.NoError(t, err)
	require.Equal(t, 21, st2.Day, "the failed batch's progress was not saved")
}

// recordingWriter records the encounters inserted.
type recordingWriter struct {
	*SynthWriter
	encounters []synth.UUID
}

func (r *recordingWriter) Apply(ctx context.Context, b *synth.Batch) error {
	if err := r.SynthWriter.Apply(ctx, b); err != nil {
		return err
	}
	for _, op := range b.Ops {
		if op.Table.Name == "patient_encounter" && op.Kind == schemas.OpInsert {
			for _, row := range op.Rows {
				r.encounters = append(r.encounters, row[0].(synth.UUID))
			}
		}
	}
	return nil
}
