package engine_test

import (
	"context"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/watermarks"
)

// gate counts the table runs reading at once: each run waits (up to a
// second) for all three to be reading, and the gate records the peak.
type gate struct {
	mu       sync.Mutex
	now, max int
}

func (g *gate) Open(context.Context, watermarks.Position) (extractors.Run, error) {
	return &gateRun{g: g}, nil
}

type gateRun struct {
	g    *gate
	done bool
}

func (r *gateRun) Next(context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	r.done = true
	g := r.g
	g.mu.Lock()
	g.now++
	g.max = max(g.max, g.now)
	deadline := time.Now().Add(time.Second)
	for g.now < 3 && time.Now().Before(deadline) {
		g.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
		g.mu.Lock()
	}
	g.now--
	g.mu.Unlock()
	return extractors.Chunk{To: watermarks.Snapshot{}, Reason: watermarks.ReasonSnapshot}, nil
}

func (r *gateRun) Close() error { return nil }

type gatePlanner struct{ g *gate }

func (p gatePlanner) Plan(context.Context, extractors.PlanRequest) (extractors.Plan, error) {
	return extractors.Plan{Strategy: "snapshot", Extractor: p.g}, nil
}

// TestTablesOfAnOrgRunInParallelUpToItsLimit: with parallel_tables 2, two
// of an organization's three tables read at once, never three, and every
// table's result comes back in the configuration's order.
func TestTablesOfAnOrgRunInParallelUpToItsLimit(t *testing.T) {
	f := newFixture(t, "", &fake{table: table(t, "a")}, &fake{table: table(t, "b")}, &fake{table: table(t, "c")})
	g := &gate{}
	f.build(gatePlanner{g})
	f.org.ParallelTables = 2
	res := f.eng.SyncOrg(context.Background(), f.org, nil)
	require.NoError(t, res.Err)
	require.Len(t, res.Tables, 3)
	for i, name := range []string{"dbo.a", "dbo.b", "dbo.c"} {
		require.Equal(t, name, res.Tables[i].Table)
		require.NoError(t, res.Tables[i].Err)
	}
	require.Equal(t, 2, g.max, "tables reading at once")
}
