package daemon

import (
	"context"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/internal/logtest"
)

// blockingReads plans dbo.a with a read that signals reading, then waits
// for its run's end; dbo.b reads nothing.
func blockingReads(reading chan<- struct{}) planFunc {
	var once sync.Once
	return planFunc(func(table string) extractors.Extractor {
		if table != "dbo.a" {
			return oneChunk{}
		}
		return oneChunk{read: func(ctx context.Context) error {
			once.Do(func() { close(reading) })
			<-ctx.Done()
			return ctx.Err()
		}}
	})
}

// canceledTable is the one "table sync canceled" record of table (dbo.b,
// which reads nothing, may be canceled too on a busy machine).
func canceledTable(t *testing.T, logged *logtest.Log, table string) map[string]any {
	t.Helper()
	var out []map[string]any
	for _, r := range logged.Find(t, "table sync canceled") {
		if r["table"] == table {
			out = append(out, r)
		}
	}
	require.Len(t, out, 1, logged.String())
	return out[0]
}

// TestOperatorCancelIsLoggedAsACancel: an operator's cancel names the run
// it canceled (its request id is the run id in the logs), and the table it
// stopped is logged at info as canceled by that operator, not as a failed
// sync; its status says canceled, and no error is counted.
func TestOperatorCancelIsLoggedAsACancel(t *testing.T) {
	log, logged := logtest.New()
	reading := make(chan struct{})
	f := newLoggedOrgRunFixture(t, blockingReads(reading), Options{}, log)
	asked, err := f.d.Trigger("st-mary", nil, false, "admin-api:alice")
	require.NoError(t, err)
	<-reading
	canceled, queued, err := f.d.Cancel("st-mary", "admin-api:bob")
	require.NoError(t, err)
	require.Nil(t, queued)
	require.Equal(t, asked.ID, canceled.ID)
	require.Equal(t, "sync", canceled.Kind)
	require.Equal(t, "running", canceled.State)
	require.Equal(t, "admin-api:alice", canceled.Actor)
	require.Eventually(t, func() bool { return testutil.ToFloat64(f.metrics.Runs.WithLabelValues("st-mary", "canceled")) == 1 },
		time.Minute, 5*time.Millisecond)

	require.Empty(t, logged.Level(t, slog.LevelError), "a cancel was logged as an error")
	line := canceledTable(t, logged, "dbo.a")
	require.Equal(t, "INFO", line["level"])
	require.Equal(t, "admin-api:bob", line["by"])
	require.Equal(t, "an operator canceled the run", line["why"])
	require.Equal(t, canceled.ID, line["run"])
	require.Equal(t, "canceled", f.d.Status()[0].Tables["dbo.a"].Outcome)
	require.Zero(t, testutil.CollectAndCount(f.metrics.Errors), "a cancel was counted as an error")

	_, _, err = f.d.Cancel("st-mary", "admin-api:bob")
	require.ErrorIs(t, err, ErrNotRunning)
	require.ErrorContains(t, err, "nothing was running")
}

// TestShutdownCancelIsLoggedAsACancel: the runs a shutdown cancels when
// its grace period ends are logged at info as canceled by the daemon's
// shutdown, not as failed syncs.
func TestShutdownCancelIsLoggedAsACancel(t *testing.T) {
	log, logged := logtest.New()
	reading := make(chan struct{})
	f := newLoggedOrgRunFixture(t, blockingReads(reading), Options{Grace: time.Millisecond}, log)
	_, err := f.d.Trigger("st-mary", nil, false, "tester")
	require.NoError(t, err)
	<-reading
	require.NoError(t, f.stop())

	require.Empty(t, logged.Level(t, slog.LevelError), "a cancel was logged as an error")
	line := canceledTable(t, logged, "dbo.a")
	require.Equal(t, "daemon", line["by"])
	require.Equal(t, "shutdown: the grace period ended", line["why"])
	require.Equal(t, "canceled", f.d.Status()[0].LastRun.Outcome)
}
