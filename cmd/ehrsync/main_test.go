package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/engine"
)

// elapsed is a LogValuer that resolves to a duration.
type elapsed struct{ d time.Duration }

func (e elapsed) LogValue() slog.Value { return slog.DurationValue(e.d) }

// TestLoggerPrintsDurationsAsStrings: in JSON and text logs a duration is
// a Go duration string ("1.5s"), at the top level, in a group and from a
// LogValuer, never nanoseconds.
func TestLoggerPrintsDurationsAsStrings(t *testing.T) {
	var buf bytes.Buffer
	log, err := newLogger(&buf, false, "json", "info")
	require.NoError(t, err)
	log.With("run", elapsed{2 * time.Minute}).Info("table synced", "duration", 1500*time.Millisecond,
		slog.Group("phase", "read", 250*time.Microsecond), "rows", 42)
	var rec struct {
		Duration any
		Run      any
		Phase    struct{ Read any }
		Rows     any
	}
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	require.Equal(t, "1.5s", rec.Duration)
	require.Equal(t, "2m0s", rec.Run)
	require.Equal(t, "250µs", rec.Phase.Read)
	require.Equal(t, float64(42), rec.Rows, "other values keep their type")

	buf.Reset()
	log, err = newLogger(&buf, false, "text", "info")
	require.NoError(t, err)
	log.Info("table synced", "duration", 1500*time.Millisecond)
	require.True(t, strings.Contains(buf.String(), "duration=1.5s"), buf.String())
}

// TestInterruptedTableIsCanceledNotFailed: a table whose run was
// interrupted reads canceled in sync's report and --json summary, a table
// that failed reads failed.
func TestInterruptedTableIsCanceledNotFailed(t *testing.T) {
	results := []engine.OrgResult{{Org: "st-mary", Tables: []engine.TableResult{
		{Org: "st-mary", Table: "dbo.claims", Err: fmt.Errorf("read chunk: %w", context.Canceled)},
		{Org: "st-mary", Table: "dbo.charges", Err: errors.New("relation does not exist")},
	}}}
	var buf bytes.Buffer
	require.NoError(t, report(&buf, results))
	lines := strings.Split(buf.String(), "\n")
	require.Contains(t, lines[1], "dbo.claims")
	require.Contains(t, lines[1], "canceled: read chunk")
	require.Contains(t, lines[2], "failed: relation does not exist")
	s := summarize(results)
	require.Equal(t, "canceled", s.Orgs[0].Tables[0].Result)
	require.Equal(t, "failed", s.Orgs[0].Tables[1].Result)
}
