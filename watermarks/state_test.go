package watermarks_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// TestStateOf: a table's state follows from its position and history: no
// position and no history is never synced, no position after a history is
// a reset; a snapshot part way (or about to begin before the incremental
// reads) is snapshotting; an incremental position, or a table snapshotted
// every run between passes, is synced.
func TestStateOf(t *testing.T) {
	key := watermarks.Key{watermarks.Int64(7)}
	moved := &watermarks.HistoryEntry{Reason: watermarks.ReasonSync}
	reset := &watermarks.HistoryEntry{Reason: watermarks.ReasonReset}
	tests := []struct {
		name string
		p    watermarks.Position
		last *watermarks.HistoryEntry
		want watermarks.State
	}{
		{"never synced", nil, nil, watermarks.StateNeverSynced},
		{"reset", nil, reset, watermarks.StateReset},
		{"reset, then a reconciliation of a key range", nil, &watermarks.HistoryEntry{Reason: watermarks.ReasonReconcile}, watermarks.StateReset},
		{"snapshot every run, between passes", watermarks.Snapshot{}, moved, watermarks.StateSynced},
		{"snapshot every run, part way", watermarks.Snapshot{LastKey: key}, moved, watermarks.StateSnapshotting},
		{"first snapshot, part way", watermarks.Snapshot{LastKey: key, Resume: watermarks.CT{Version: 3}}, moved, watermarks.StateSnapshotting},
		{"first snapshot, not started", watermarks.Snapshot{Resume: watermarks.CT{Version: 3}}, moved, watermarks.StateSnapshotting},
		{"incremental", watermarks.CT{Version: 3}, moved, watermarks.StateSynced},
		{"rewound", watermarks.CDC{LSN: lsnA}, &watermarks.HistoryEntry{Reason: watermarks.ReasonRewind}, watermarks.StateSynced},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, watermarks.StateOf(tc.p, tc.last))
		})
	}
}
