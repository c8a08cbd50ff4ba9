package engine_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/source"
)

// progressFixture is an engine over a real PostgreSQL source table dbo.t
// of 10 rows, analyzed (its statistics count 10 rows), whose practice
// column is v.
func progressFixture(t *testing.T) (*fixture, *sql.DB) {
	t.Helper()
	tb := table(t, "t")
	tb.Practice = "v"
	f := newFixture(t, "", &fake{table: tb})
	src, err := sql.Open("pgx", f.srcURL)
	require.NoError(t, err)
	t.Cleanup(func() { src.Close() })
	_, err = src.ExecContext(context.Background(), `CREATE SCHEMA dbo; CREATE TABLE dbo.t (id int PRIMARY KEY, v varchar(10));
		INSERT INTO dbo.t SELECT i, 'v' || i FROM generate_series(1, 10) i; ANALYZE dbo.t`)
	require.NoError(t, err)
	return f, src
}

// progressLog collects what OrgRun.Progress hears.
type progressLog struct {
	mu   sync.Mutex
	seen []engine.Progress
}

func (l *progressLog) add(p engine.Progress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seen = append(l.seen, p)
}

func prog(rows, estimate int64) engine.Progress {
	return engine.Progress{Org: "st-mary", Table: "dbo.t", Rows: rows, Estimate: estimate}
}

func done(p engine.Progress) engine.Progress { p.Done = true; return p }

// TestProgressOfASnapshotHasTheSourcesEstimate: a table read from the start
// reports its rows after each committed chunk, with the source's estimate
// of its rows from the source's statistics; its end is reported once.
func TestProgressOfASnapshotHasTheSourcesEstimate(t *testing.T) {
	f, src := progressFixture(t)
	f.build(snapshotPlanner{src})
	var l progressLog
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{Progress: l.add})
	require.NoError(t, res.Err)
	require.NoError(t, res.Tables[0].Err)
	require.Equal(t, []engine.Progress{prog(0, 10), prog(3, 10), prog(6, 10), prog(9, 10), prog(10, 10), done(prog(10, 10))}, l.seen)
}

// TestProgressOfChangesHasNoEstimate: after a snapshot hands off to an
// incremental position in the same attempt, the changes read from there
// have no estimate (the table's size says nothing of them); the rows go on
// counting.
func TestProgressOfChangesHasNoEstimate(t *testing.T) {
	f, _ := progressFixture(t)
	f.build(handoffPlanner{handoff{table(t, "t")}})
	var l progressLog
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{Progress: l.add})
	require.NoError(t, res.Err)
	require.NoError(t, res.Tables[0].Err)
	require.Equal(t, []engine.Progress{prog(0, 10), prog(3, 10), prog(3, 0), prog(4, 0), done(prog(4, 0))}, l.seen)
}

// TestProgressEstimateNeverFailsARun: an estimate that fails, or that does
// not answer before the source's query timeout, leaves the estimate out
// and the table syncs. A run without Progress asks for no estimate, and
// nor does one filtered to practices (the statistics count every
// practice's rows).
func TestProgressEstimateNeverFailsARun(t *testing.T) {
	var unbounded bool
	hang := func(ctx context.Context, _ *sql.DB, _ config.Dialect, _, _ string) (int64, error) {
		if _, ok := ctx.Deadline(); !ok {
			unbounded = true
			return 0, errors.New("no deadline")
		}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	fail := func(context.Context, *sql.DB, config.Dialect, string, string) (int64, error) {
		return 7, errors.New("permission denied for table pg_class")
	}
	for _, c := range []struct {
		name      string
		estimate  engine.RowEstimator
		practices []string
		noReport  bool
		asked     int
	}{
		{name: "hangs", estimate: hang, asked: 1},
		{name: "fails", estimate: fail, asked: 1},
		{name: "no progress wanted", estimate: source.EstimateRows, noReport: true},
		{name: "filtered to practices", estimate: source.EstimateRows, practices: []string{"0001"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			unbounded = false
			f, src := progressFixture(t)
			f.org.Source.QueryTimeout = 50 * time.Millisecond
			f.org.Source.PracticeIDs = c.practices
			asked := 0
			f.build(snapshotPlanner{src}, engine.WithRowEstimator(func(ctx context.Context, db *sql.DB, d config.Dialect, schema, name string) (int64, error) {
				asked++
				return c.estimate(ctx, db, d, schema, name)
			}))
			var l progressLog
			run := engine.OrgRun{Progress: l.add}
			if c.noReport {
				run.Progress = nil
			}
			res := f.eng.RunOrg(context.Background(), f.org, run)
			require.NoError(t, res.Err)
			require.NoError(t, res.Tables[0].Err)
			require.Equal(t, int64(10), res.Tables[0].Totals.Rows)
			require.Equal(t, c.asked, asked, "estimates asked for")
			require.False(t, unbounded, "the estimate is not bounded by the query timeout")
			for _, p := range l.seen {
				require.Zero(t, p.Estimate)
			}
			if !c.noReport {
				require.Equal(t, done(prog(10, 0)), l.seen[len(l.seen)-1])
			}
		})
	}
}
