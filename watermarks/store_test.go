package watermarks_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	org   = "st-mary"
	table = "dbo.claim_lines"
)

func newStore(t *testing.T) (*watermarks.Store, *pgxpool.Pool) {
	t.Helper()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	return watermarks.NewStore(pool), pool
}

// advance runs one Advance in its own transaction, committed when it
// succeeds, as the sink does.
func advance(t *testing.T, s *watermarks.Store, pool *pgxpool.Pool, m watermarks.Move) error {
	t.Helper()
	if m.Org == "" {
		m.Org, m.Table = org, table
	}
	if m.Reason == "" {
		m.Reason = watermarks.ReasonSync
	}
	if m.Actor == "" {
		m.Actor = "test"
	}
	return pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return s.Advance(context.Background(), tx, m) })
}

func historyLen(t *testing.T, s *watermarks.Store) int {
	t.Helper()
	h, err := s.History(context.Background(), org, table, 0)
	require.NoError(t, err)
	return len(h)
}

func TestAdvanceFromNoPosition(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	p, err := s.Load(ctx, org, table)
	require.NoError(t, err)
	require.Nil(t, p, "a table never synced has no position")

	require.NoError(t, advance(t, s, pool, watermarks.Move{To: watermarks.CT{Version: 5}, Actor: "sync", RunID: "run-1", Rows: 12}))
	p, err = s.Load(ctx, org, table)
	require.NoError(t, err)
	require.Equal(t, watermarks.CT{Version: 5}, p)

	entries, err := s.List(ctx, org)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	require.Equal(t, org, entries[0].Org)
	require.Equal(t, table, entries[0].Table)
	require.Equal(t, watermarks.CT{Version: 5}, entries[0].Position)
	require.Equal(t, "sync", entries[0].UpdatedBy)
	require.WithinDuration(t, time.Now(), entries[0].UpdatedAt, time.Minute)

	h, err := s.History(ctx, org, table, 10)
	require.NoError(t, err)
	require.Len(t, h, 1)
	require.Nil(t, h[0].From)
	require.Equal(t, watermarks.CT{Version: 5}, h[0].To)
	require.Equal(t, watermarks.ReasonSync, h[0].Reason)
	require.Equal(t, "sync", h[0].Actor)
	require.Equal(t, "run-1", h[0].RunID)
	require.Equal(t, int64(12), h[0].Rows)
}

func TestAdvanceFromAnotherPositionChangesNothing(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	require.NoError(t, advance(t, s, pool, watermarks.Move{To: watermarks.CT{Version: 5}}))

	for name, from := range map[string]watermarks.Position{
		"an older position":   watermarks.CT{Version: 4},
		"no position":         nil,
		"another kind":        watermarks.Cursor{Column: "v", Value: watermarks.Int64(5)},
		"the same, in window": watermarks.CT{Version: 5, To: 6},
	} {
		t.Run(name, func(t *testing.T) {
			err := advance(t, s, pool, watermarks.Move{From: from, To: watermarks.CT{Version: 9}, Rows: 3})
			require.ErrorIs(t, err, watermarks.ErrPositionMoved)
			var me *watermarks.MovedError
			require.ErrorAs(t, err, &me)
			require.Equal(t, watermarks.MovedError{Org: org, Table: table}, *me)

			p, err := s.Load(ctx, org, table)
			require.NoError(t, err)
			require.Equal(t, watermarks.CT{Version: 5}, p)
			require.Equal(t, 1, historyLen(t, s))
		})
	}
	// From a table that has no position, a move that expects one fails too.
	err := advance(t, s, pool, watermarks.Move{Table: "dbo.other", Org: org, From: watermarks.CT{Version: 5}, To: watermarks.CT{Version: 6}})
	require.ErrorIs(t, err, watermarks.ErrPositionMoved)
	p, err := s.Load(ctx, org, "dbo.other")
	require.NoError(t, err)
	require.Nil(t, p)
}

func TestAdvanceRolledBackLeavesNothing(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	for _, from := range []watermarks.Position{nil, watermarks.CT{Version: 1}} {
		tx, err := pool.Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, s.Advance(ctx, tx, watermarks.Move{Org: org, Table: table, From: from, To: watermarks.CT{Version: 2},
			Reason: watermarks.ReasonSync, Actor: "test", Rows: 1}))
		require.NoError(t, tx.Rollback(ctx))

		p, err := s.Load(ctx, org, table)
		require.NoError(t, err)
		require.Equal(t, from, p, "a rolled back move saved its position")
		if from == nil {
			require.Zero(t, historyLen(t, s))
			require.NoError(t, advance(t, s, pool, watermarks.Move{To: watermarks.CT{Version: 1}}))
		} else {
			require.Equal(t, 1, historyLen(t, s))
		}
	}
}

// Two runners that read the same position: the second to lock waits for the
// first to commit and then fails, whichever of "no position" or a saved one
// they started from.
func TestConcurrentAdvanceFromTheSamePosition(t *testing.T) {
	for name, from := range map[string]watermarks.Position{
		"from no position":    nil,
		"from a saved one":    watermarks.CT{Version: 5},
		"from a cursor":       watermarks.Cursor{Column: "rv", Value: watermarks.RowVersion([8]byte{7: 1})},
		"inside a cdc window": watermarks.CDC{LSN: lsnA, Seqval: lsnB, Op: 2},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			s, pool := newStore(t)
			if from != nil {
				require.NoError(t, s.Reset(ctx, org, table, from, "setup", ""))
			}
			first, err := pool.Begin(ctx)
			require.NoError(t, err)
			defer first.Rollback(ctx)
			require.NoError(t, s.Advance(ctx, first, watermarks.Move{Org: org, Table: table, From: from,
				To: watermarks.CT{Version: 6}, Reason: watermarks.ReasonSync, Actor: "runner-1", Rows: 1}))

			second := make(chan error, 1)
			go func() {
				second <- advance(t, s, pool, watermarks.Move{From: from, To: watermarks.CT{Version: 7}, Actor: "runner-2", Rows: 1})
			}()
			require.Eventually(t, func() bool { return waitingOnLock(t, pool) }, 10*time.Second, 10*time.Millisecond,
				"the second runner does not wait for the first")
			require.NoError(t, first.Commit(ctx))
			require.ErrorIs(t, <-second, watermarks.ErrPositionMoved)

			p, err := s.Load(ctx, org, table)
			require.NoError(t, err)
			require.Equal(t, watermarks.CT{Version: 6}, p)
			h, err := s.History(ctx, org, table, 1)
			require.NoError(t, err)
			require.Equal(t, "runner-1", h[0].Actor)
		})
	}
}

// waitingOnLock reports whether a session of pool's database waits for a lock.
func waitingOnLock(t *testing.T, pool *pgxpool.Pool) bool {
	var n int
	require.NoError(t, pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'").Scan(&n))
	return n > 0
}

// Many runners race from one position: exactly one commits.
func TestRacingRunnersOneWins(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	for round, from := range []watermarks.Position{nil, watermarks.CT{Version: 100}} {
		to := watermarks.CT{Version: int64(100 + round)}
		const n = 8
		errs := make([]error, n)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				<-start
				errs[i] = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
					return s.Advance(ctx, tx, watermarks.Move{Org: org, Table: table, From: from,
						To: to, Reason: watermarks.ReasonSync, Actor: "runner", Rows: int64(i + 1)})
				})
			})
		}
		close(start)
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
				continue
			}
			require.ErrorIs(t, err, watermarks.ErrPositionMoved)
		}
		require.Equal(t, 1, won, "from %v", from)
		if from == nil {
			require.Equal(t, 1, historyLen(t, s))
		}
	}
}

func TestHistoryNewestFirst(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	resume := watermarks.CDC{LSN: lsnA, Instance: "dbo_claim_lines"}
	snap1 := watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(100)}, Resume: resume}
	snap2 := watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(200)}, Resume: resume}
	moves := []watermarks.Move{
		{To: watermarks.Snapshot{Resume: resume}, Reason: watermarks.ReasonSnapshot, Actor: "engine", RunID: "r1"},
		{From: watermarks.Snapshot{Resume: resume}, To: snap1, Reason: watermarks.ReasonSnapshot, Actor: "engine", RunID: "r1", Rows: 100},
		{From: snap1, To: snap2, Reason: watermarks.ReasonSnapshot, Actor: "engine", RunID: "r1", Rows: 100},
		{From: snap2, To: resume, Reason: watermarks.ReasonSnapshot, Actor: "engine", RunID: "r1"},
		{From: resume, To: watermarks.CDC{LSN: lsnA, Seqval: lsnB, Op: 2, Instance: "dbo_claim_lines"}, Reason: watermarks.ReasonSync, Actor: "engine", RunID: "r2", Rows: 7},
	}
	for _, m := range moves {
		require.NoError(t, advance(t, s, pool, m))
	}
	h, err := s.History(ctx, org, table, 0)
	require.NoError(t, err)
	require.Len(t, h, len(moves))
	for i, m := range moves {
		got := h[len(h)-1-i]
		require.Equal(t, m.From, got.From, "move %d", i)
		require.Equal(t, m.To, got.To, "move %d", i)
		require.Equal(t, m.Reason, got.Reason)
		require.Equal(t, m.Actor, got.Actor)
		require.Equal(t, m.RunID, got.RunID)
		require.Equal(t, m.Rows, got.Rows)
		if i > 0 {
			require.Greater(t, got.ID, h[len(h)-i].ID)
		}
	}
	last2, err := s.History(ctx, org, table, 2)
	require.NoError(t, err)
	require.Equal(t, h[:2], last2)
	other, err := s.History(ctx, org, "dbo.other", 0)
	require.NoError(t, err)
	require.Empty(t, other)
}

func TestIdleAdvanceRefreshesWithoutHistory(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	require.NoError(t, advance(t, s, pool, watermarks.Move{To: watermarks.CT{Version: 5}, Actor: "a"}))
	require.NoError(t, advance(t, s, pool, watermarks.Move{From: watermarks.CT{Version: 5}, To: watermarks.CT{Version: 5}, Actor: "b"}))
	require.Equal(t, 1, historyLen(t, s), "a move that moved nothing is not history")
	entries, err := s.List(ctx, org)
	require.NoError(t, err)
	require.Equal(t, "b", entries[0].UpdatedBy)
	// Covering rows makes it history even at the same position.
	require.NoError(t, advance(t, s, pool, watermarks.Move{From: watermarks.CT{Version: 5}, To: watermarks.CT{Version: 5}, Rows: 1}))
	require.Equal(t, 2, historyLen(t, s))
}

func TestResetAndRewind(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	cur := watermarks.Cursor{Column: "modify_timestamp", Value: watermarks.Int64(50), Key: watermarks.Key{watermarks.Int64(9)}}
	require.NoError(t, advance(t, s, pool, watermarks.Move{To: cur}))

	back := watermarks.Cursor{Column: "modify_timestamp", Value: watermarks.Int64(10)}
	require.NoError(t, s.Reset(ctx, org, table, back, "alice@ops", "re-read last week after the payer fix"))
	p, err := s.Load(ctx, org, table)
	require.NoError(t, err)
	require.Equal(t, back, p)

	// The runner still working from the old position cannot commit.
	err = advance(t, s, pool, watermarks.Move{From: cur, To: watermarks.Cursor{Column: "modify_timestamp", Value: watermarks.Int64(60)}})
	require.ErrorIs(t, err, watermarks.ErrPositionMoved)
	// One that reads from the rewound position can.
	require.NoError(t, advance(t, s, pool, watermarks.Move{From: back, To: cur, Rows: 40}))

	require.NoError(t, s.Reset(ctx, org, table, nil, "bob@ops", "full re-sync"))
	p, err = s.Load(ctx, org, table)
	require.NoError(t, err)
	require.Nil(t, p)
	entries, err := s.List(ctx, "")
	require.NoError(t, err)
	require.Empty(t, entries)

	h, err := s.History(ctx, org, table, 3)
	require.NoError(t, err)
	require.Len(t, h, 3)
	require.Equal(t, watermarks.ReasonReset, h[0].Reason)
	require.Equal(t, "bob@ops", h[0].Actor)
	require.Equal(t, "full re-sync", h[0].Note)
	require.Equal(t, cur, h[0].From)
	require.Nil(t, h[0].To)
	require.Zero(t, h[0].Rows)
	require.Equal(t, watermarks.ReasonSync, h[1].Reason)
	require.Equal(t, watermarks.ReasonRewind, h[2].Reason)
	require.Equal(t, "alice@ops", h[2].Actor)
	require.Equal(t, "re-read last week after the payer fix", h[2].Note)
	require.Equal(t, cur, h[2].From)
	require.Equal(t, back, h[2].To)

	// After a reset the next run starts from no position.
	require.NoError(t, advance(t, s, pool, watermarks.Move{To: back}))
	require.ErrorContains(t, s.Reset(ctx, org, table, nil, "", ""), "no actor")
}

func TestMoveIsChecked(t *testing.T) {
	s, pool := newStore(t)
	tests := []struct {
		name string
		m    watermarks.Move
	}{
		{"no position", watermarks.Move{Org: org, Table: table, Reason: watermarks.ReasonSync, Actor: "a"}},
		{"no actor", watermarks.Move{Org: org, Table: table, To: watermarks.CT{}, Reason: watermarks.ReasonSync}},
		{"no org", watermarks.Move{Table: table, To: watermarks.CT{}, Reason: watermarks.ReasonSync, Actor: "a"}},
		{"unknown reason", watermarks.Move{Org: org, Table: table, To: watermarks.CT{}, Reason: "whim", Actor: "a"}},
		{"negative rows", watermarks.Move{Org: org, Table: table, To: watermarks.CT{}, Reason: watermarks.ReasonSync, Actor: "a", Rows: -1}},
		{"invalid position", watermarks.Move{Org: org, Table: table, To: watermarks.CT{Version: -1}, Reason: watermarks.ReasonSync, Actor: "a"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error { return s.Advance(context.Background(), tx, tc.m) })
			require.Error(t, err)
			require.NotErrorIs(t, err, watermarks.ErrPositionMoved)
		})
	}
	require.Zero(t, historyLen(t, s))
}

func TestCorruptPosition(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	require.NoError(t, advance(t, s, pool, watermarks.Move{Table: "dbo.good", Org: org, To: watermarks.CT{Version: 1}}))
	_, err := pool.Exec(ctx, `INSERT INTO ehrsync.positions (org, table_name, kind, position, updated_by)
		VALUES ($1, $2, 'cursor', '{"v":1,"kind":"cursor","column":"c","value":{"type":"uuid","v":"MRN-SECRET"}}', 'hand')`, org, table)
	require.NoError(t, err)

	check := func(err error) {
		t.Helper()
		require.ErrorIs(t, err, watermarks.ErrCorruptPosition)
		var ce *watermarks.CorruptError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, org, ce.Org)
		require.Equal(t, table, ce.Table)
		require.ErrorIs(t, err, watermarks.ErrInvalidPosition, "the decode error is kept")
		require.Contains(t, err.Error(), org+" "+table)
		require.NotContains(t, err.Error(), "SECRET", "errors never quote stored values")
	}
	_, err = s.Load(ctx, org, table)
	check(err)
	check(advance(t, s, pool, watermarks.Move{From: nil, To: watermarks.CT{Version: 2}}))

	entries, err := s.List(ctx, org)
	check(err)
	require.Len(t, entries, 1, "List keeps the rows that decode")
	require.Equal(t, "dbo.good", entries[0].Table)

	// An operator's reset repairs it, keeping the stored bytes in the history.
	require.NoError(t, s.Reset(ctx, org, table, nil, "alice@ops", "corrupt"))
	p, err := s.Load(ctx, org, table)
	require.NoError(t, err)
	require.Nil(t, p)
	var from string
	require.NoError(t, pool.QueryRow(ctx, "SELECT from_position->'value'->>'v' FROM ehrsync.position_history WHERE table_name = $1 AND reason = 'reset'", table).Scan(&from))
	require.Equal(t, "MRN-SECRET", from)
	_, err = s.History(ctx, org, table, 0)
	check(err)
}

// Every position and value type survives the store: jsonb reorders keys and
// re-spaces, and numbers must stay exact.
func TestStoreRoundTrip(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	var positions []watermarks.Position
	for _, tc := range positionCases(t) {
		positions = append(positions, tc.p)
	}
	for _, tc := range valueCases(t) {
		p := watermarks.Cursor{Column: "c", Value: tc.v}
		if !tc.v.IsNull() {
			p.Key = watermarks.Key{tc.v}
		}
		positions = append(positions, p)
	}
	var from watermarks.Position
	for i, p := range positions {
		require.NoError(t, advance(t, s, pool, watermarks.Move{From: from, To: p}), "position %d", i)
		got, err := s.Load(ctx, org, table)
		require.NoError(t, err)
		require.Equal(t, p, got, "position %d", i)
		from = got // the next move compares against what came back from jsonb
	}
}

func TestListByOrg(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	for _, ot := range [][2]string{{"b", "t2"}, {"a", "t9"}, {"b", "t1"}} {
		require.NoError(t, advance(t, s, pool, watermarks.Move{Org: ot[0], Table: ot[1], To: watermarks.CT{Version: 1}}))
	}
	names := func(es []watermarks.Entry) (out []string) {
		for _, e := range es {
			out = append(out, e.Org+"/"+e.Table)
		}
		return out
	}
	all, err := s.List(ctx, "")
	require.NoError(t, err)
	require.Equal(t, []string{"a/t9", "b/t1", "b/t2"}, names(all))
	b, err := s.List(ctx, "b")
	require.NoError(t, err)
	require.Equal(t, []string{"b/t1", "b/t2"}, names(b))
	none, err := s.List(ctx, "zz")
	require.NoError(t, err)
	require.Empty(t, none)
}

func TestErrorsMatch(t *testing.T) {
	var err error = &watermarks.MovedError{Org: "o", Table: "t"}
	require.True(t, errors.Is(err, watermarks.ErrPositionMoved))
	require.False(t, errors.Is(err, watermarks.ErrCorruptPosition))
	require.Equal(t, "position of o t moved since it was read", err.Error())
}

func TestClaimChecksAndLocksThePosition(t *testing.T) {
	ctx := context.Background()
	s, pool := newStore(t)
	claim := func(table string, from watermarks.Position) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error { return s.Claim(ctx, tx, org, table, from) })
	}
	require.NoError(t, claim(table, nil), "a table without a position is claimed from nil")
	require.ErrorIs(t, claim(table, watermarks.CT{Version: 5}), watermarks.ErrPositionMoved)
	require.NoError(t, advance(t, s, pool, watermarks.Move{To: watermarks.CT{Version: 5}}))
	require.NoError(t, claim(table, watermarks.CT{Version: 5}))
	require.ErrorIs(t, claim(table, watermarks.CT{Version: 4}), watermarks.ErrPositionMoved)
	require.ErrorIs(t, claim(table, nil), watermarks.ErrPositionMoved)

	// A claim holds the row: a second claimer waits until the first ends.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, s.Claim(ctx, tx, org, table, watermarks.CT{Version: 5}))
	waited := make(chan error, 1)
	go func() {
		waited <- pgx.BeginFunc(ctx, pool, func(tx2 pgx.Tx) error {
			_, err := tx2.Exec(ctx, "SET LOCAL lock_timeout = '200ms'")
			if err != nil {
				return err
			}
			return s.Claim(ctx, tx2, org, table, watermarks.CT{Version: 5})
		})
	}()
	err = <-waited
	require.ErrorContains(t, err, "lock timeout", "a second claim did not wait for the first")
	require.NoError(t, tx.Rollback(ctx))
}
