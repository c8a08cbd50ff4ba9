package extractortest

import (
	"context"
	"errors"
	"io"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// SyncRun runs ext from *pos as the engine would, at most maxChunks chunks
// (0: to the end), and returns how many chunks arrived, or the error of
// Open or Next (*pos then stays at the last chunk that arrived).
//
// Every chunk must say where it leaves the position and carry the reason
// for *pos (ReasonSnapshot from nil or a Snapshot, ReasonSync otherwise).
// visit sees each chunk's batch (nil: a heartbeat) with that reason; a batch
// reaches visit only once it validates against table and has rows
// (emptyBatch: the error otherwise), and is released after. An error of
// the batch or of visit fails the test. Each chunk's position is then saved
// to *pos through an encode and decode, as the position store does.
func SyncRun(t *testing.T, ext extractors.Extractor, table *schemas.Table, pos *watermarks.Position, maxChunks int,
	emptyBatch string, visit func(batch arrow.RecordBatch, reason watermarks.Reason) error) (int, error) {
	t.Helper()
	ctx := context.Background()
	run, err := ext.Open(ctx, *pos)
	if err != nil {
		return 0, err
	}
	defer func() { require.NoError(t, run.Close()) }()
	chunks := 0
	for maxChunks == 0 || chunks < maxChunks {
		ch, err := run.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return chunks, err
		}
		require.NotNil(t, ch.To)
		want := watermarks.ReasonSync
		if _, ok := (*pos).(watermarks.Snapshot); ok || *pos == nil {
			want = watermarks.ReasonSnapshot
		}
		require.Equal(t, want, ch.Reason)
		if ch.Batch == nil {
			require.NoError(t, visit(nil, want))
		} else {
			err := schemas.ValidateChangeBatch(table, ch.Batch)
			if err == nil && ch.Batch.NumRows() == 0 {
				err = errors.New(emptyBatch)
			}
			if err == nil {
				err = visit(ch.Batch, want)
			}
			ch.Batch.Release()
			require.NoError(t, err)
		}
		chunks++
		*pos = roundTrip(t, ch.To)
	}
	return chunks, nil
}
