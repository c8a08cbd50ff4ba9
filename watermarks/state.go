package watermarks

// State is what a table's saved position and its history say of its sync,
// in words an operator reads (the admin API's table state).
type State string

// The states a position tells.
const (
	// StateNeverSynced: no position and no recorded move.
	StateNeverSynced State = "never synced"
	// StateReset: an operator, a backfill or an expired position's
	// policy removed the position, and no run has saved one since.
	StateReset State = "reset: full re-sync next run"
	// StateSnapshotting: a snapshot pass is part way, or about to begin
	// before the table's incremental reads.
	StateSnapshotting State = "snapshotting"
	// StateSynced: the table's incremental position, or a table
	// snapshotted every run between two complete passes.
	StateSynced State = "synced"
)

// StateOf is the state that p, a table's saved position (nil: none), and
// last, its newest recorded move (nil: none), tell.
func StateOf(p Position, last *HistoryEntry) State {
	switch p := p.(type) {
	case nil:
		// Only Reset removes a position: a table with a history and none
		// was reset since its last run.
		if last != nil {
			return StateReset
		}
		return StateNeverSynced
	case Snapshot:
		if len(p.LastKey) == 0 && p.Resume == nil {
			return StateSynced
		}
		return StateSnapshotting
	}
	return StateSynced
}
