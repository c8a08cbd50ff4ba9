package engine_test

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/internal/logtest"
	"github.com/ehrsync/ehrsync/watermarks"
)

// canceling cancels the run's context with its cause as its table's run
// opens, and fails with the context's error as a source read would.
type canceling struct {
	*fake
	cancel context.CancelCauseFunc
	cause  error
}

func (c *canceling) Open(ctx context.Context, _ watermarks.Position) (extractors.Run, error) {
	c.cancel(c.cause)
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestCanceledRunIsLoggedAsACancel: a run an operator cancels (its
// context canceled with an engine.Cancel cause) is logged at info as
// canceled, by whom and why, and counted as canceled: no error line, no
// failure. The table it kept from starting is reported as such, at info.
func TestCanceledRunIsLoggedAsACancel(t *testing.T) {
	first := &fake{table: table(t, "claims"), n: 2}
	second := &fake{table: table(t, "charges"), n: 2}
	f := newFixture(t, "", first, second)
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	x := &canceling{fake: first, cancel: cancel, cause: &engine.Cancel{By: "admin-api:alice", Why: "an operator canceled the run"}}
	log, logged := logtest.New()
	f.build(swapPlanner{f.planner, "dbo.claims", x}, engine.WithLog(log))
	res := f.eng.RunOrg(ctx, f.org, engine.OrgRun{})
	require.Len(t, res.Tables, 2)
	require.ErrorIs(t, res.Tables[0].Err, context.Canceled)

	require.Empty(t, logged.Level(t, slog.LevelError), "a cancel was logged as an error")
	canceled := logged.Find(t, "table sync canceled")
	require.Len(t, canceled, 1, logged.String())
	require.Equal(t, "INFO", canceled[0]["level"])
	require.Equal(t, "admin-api:alice", canceled[0]["by"])
	require.Equal(t, "an operator canceled the run", canceled[0]["why"])
	require.Equal(t, "dbo.claims", canceled[0]["table"])
	require.Equal(t, res.RunID, canceled[0]["run"])
	require.Len(t, logged.Find(t, "tables not started: the run was canceled"), 1, logged.String())
	require.Equal(t, 1.0, testutil.ToFloat64(f.metrics.TableRuns.WithLabelValues("st-mary", "dbo.claims", "canceled")))
	require.Zero(t, testutil.ToFloat64(f.metrics.TableRuns.WithLabelValues("st-mary", "dbo.claims", "failed")))
}

// TestUnsetSecretIsAConfigurationError: a source password whose
// environment variable is not set fails the run as a configuration error
// naming the variable and the fix, never as an unreachable source.
func TestUnsetSecretIsAConfigurationError(t *testing.T) {
	const name = "EHRSYNC_TEST_UNSET_SOURCE_PASSWORD"
	_, set := os.LookupEnv(name)
	require.False(t, set, "%s is set: the test needs it unset", name)
	f := newFixture(t, "", &fake{table: table(t, "claims"), n: 1})
	f.org.Source.Password = config.NewSecret("env:" + name)
	log, logged := logtest.New()
	f.build(f.planner, engine.WithLog(log))
	res := f.eng.RunOrg(context.Background(), f.org, engine.OrgRun{})
	require.ErrorIs(t, res.Err, config.ErrSecretUnset)
	require.Equal(t, "secret_unavailable", engine.Class(res.Err))

	require.Empty(t, logged.Find(t, "source unreachable"), logged.String())
	errs := logged.Find(t, "source configuration error: the source was not tried")
	require.Len(t, errs, 1, logged.String())
	require.Contains(t, errs[0]["err"], "env:"+name)
	require.Contains(t, errs[0]["fix"], "set the environment variable")
}
