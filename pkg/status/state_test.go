package status

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/watermarks"
)

// TestState: each state from the facts that decide it, including those
// the real-sync tests cannot produce on a PostgreSQL source (an expired
// position, a corrupt one).
func TestState(t *testing.T) {
	key := watermarks.Key{watermarks.Int64(7)}
	cdc := watermarks.CDC{LSN: watermarks.LSN{1}}
	ok := &Run{Outcome: OutcomeOK}
	failed := func(class string) *Run { return &Run{Outcome: OutcomeFailed, ErrorClass: class} }
	for _, c := range []struct {
		name     string
		pos      watermarks.Position
		corrupt  bool
		last     *Run
		failures int
		m        move
		want     State
	}{
		{"nothing happened", nil, false, nil, 0, move{}, StateNeverRun},
		{"a first run canceled before any commit", nil, false, &Run{Outcome: OutcomeCanceled}, 0, move{}, StateNeverRun},
		{"incremental", cdc, false, ok, 0, move{}, StateSynced},
		{"a snapshot pass under way", watermarks.Snapshot{LastKey: key, Resume: cdc}, false, ok, 0, move{}, StateSnapshotting},
		{"a snapshot about to start from its recorded start", watermarks.Snapshot{Resume: cdc}, false, ok, 0, move{}, StateSnapshotting},
		{"a snapshot-only table between passes", watermarks.Snapshot{}, false, ok, 0, move{}, StateSynced},
		{"reset by an operator", nil, false, ok, 0, move{reset: true}, StateReset},
		{"failing", cdc, false, failed("login_failed"), 1, move{}, StateFailing},
		{"failing, then canceled", cdc, false, &Run{Outcome: OutcomeCanceled, ErrorClass: "canceled"}, 2, move{}, StateFailing},
		{"expired under on_expired: fail", cdc, false, failed("position_expired"), 3, move{}, StateExpired},
		{"a corrupt position", nil, true, ok, 0, move{}, StateCorrupt},
		{"failing wins over corrupt", nil, true, failed("store_unavailable"), 1, move{}, StateFailing},
		{"a failed first attempt", nil, false, failed("permission_missing"), 1, move{}, StateFailing},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, state(c.pos, c.corrupt, c.last, c.failures, c.m))
		})
	}
}

// TestNextRun: the schedule's run after the last attempt; overdue only
// when a whole scheduled run was missed since; the daemon's own next run
// when it answers, none while paused.
func TestNextRun(t *testing.T) {
	sched, err := daemon.NewSchedule(config.Schedule{Every: 10 * time.Minute})
	require.NoError(t, err)
	at := time.Date(2026, 3, 4, 10, 7, 0, 0, time.UTC)
	last := func(started time.Time) *Run { return &Run{StartedAt: started} }
	for _, c := range []struct {
		name        string
		last        *Run
		d           *DaemonOrg
		want        time.Time
		wantOverdue bool
	}{
		{"never run: the next tick", nil, nil, time.Date(2026, 3, 4, 10, 10, 0, 0, time.UTC), false},
		{"after the last run", last(at.Add(-3 * time.Minute)), nil, time.Date(2026, 3, 4, 10, 10, 0, 0, time.UTC), false},
		{"due, not yet missed", last(at.Add(-12 * time.Minute)), nil, time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC), false},
		{"a run missed", last(at.Add(-25 * time.Minute)), nil, time.Date(2026, 3, 4, 9, 50, 0, 0, time.UTC), true},
		{"the daemon's", last(at.Add(-25 * time.Minute)), &DaemonOrg{NextRun: at.Add(time.Hour)}, at.Add(time.Hour), false},
		{"paused", nil, &DaemonOrg{Paused: true, NextRun: at.Add(time.Hour)}, time.Time{}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, overdue := nextRun(sched, at, c.last, c.d)
			require.Equal(t, c.want, got)
			require.Equal(t, c.wantOverdue, overdue)
		})
	}
}

// TestSpan: durations for people.
func TestSpan(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second: "0s", 42 * time.Second: "42s", 12*time.Minute + 5*time.Second: "12m",
		5*time.Hour + 7*time.Minute: "5h07m", 50 * time.Hour: "2d02h",
	} {
		require.Equal(t, want, span(d), d.String())
	}
}

// TestFixOfTheEngineClasses: a failure of one of the engine's own classes
// that an operator must act on says what to do, with the table's own
// reset command where one is needed.
func TestFixOfTheEngineClasses(t *testing.T) {
	for _, class := range []string{"position_expired", "store_unavailable", "audit_not_written", "source_schema_changed", "run_timeout", "duplicate_source_keys", "lake_failed"} {
		require.NotEmpty(t, fixOf(class, "st-mary", "dbo.claims"), class)
	}
	fix := fixOf("duplicate_source_keys", "st-mary", "dbo.claims")
	require.Contains(t, fix, "TRUNCATE")
	require.Contains(t, fix, "positions reset --config FILE --org st-mary --table dbo.claims")
}
