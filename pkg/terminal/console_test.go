package terminal

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/terminal/terminaltest"
)

// fakeClock is a meter's clock that moves only when told.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time              { return c.t }
func (c *fakeClock) add(d time.Duration)         { c.t = c.t.Add(d) }
func newMeter(c *Console, clk *fakeClock) *Meter { m := NewMeter(c); m.now = clk.now; return m }

// requireLogLinesAlone checks that every line on screen but the status
// line (the last, when status is set) is one whole JSON log line.
func requireLogLinesAlone(t *testing.T, s *terminaltest.Screen, status string) []string {
	t.Helper()
	lines := s.Lines()
	if status != "" {
		require.NotEmpty(t, lines)
		require.Equal(t, status, lines[len(lines)-1], "the status line")
		lines = lines[:len(lines)-1]
	}
	for _, l := range lines {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "a log line shares its line with something else: %q", l)
	}
	return lines
}

// TestLogLinesNeverShareTheStatusLine: log lines written while a progress
// line is drawn each start at column 0 on a line of their own; the
// progress line is drawn again below them, and removed at the end.
func TestLogLinesNeverShareTheStatusLine(t *testing.T) {
	var screen terminaltest.Screen
	c := NewTerminal(&screen, 200)
	clk := &fakeClock{t: time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
	m := newMeter(c, clk)
	log := slog.New(slog.NewJSONHandler(c, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}}))

	m.Update(Progress{Name: "st-mary dbo.claims", Estimate: 1000})
	status := "[....................] st-mary dbo.claims: 0 rows of ~1000 (0%), 0 rows/s, 0s elapsed"
	requireLogLinesAlone(t, &screen, status)

	log.Info("table synced", "table", "dbo.charges")
	lines := requireLogLinesAlone(t, &screen, status)
	require.Len(t, lines, 1)

	clk.add(2 * time.Second)
	m.Update(Progress{Name: "st-mary dbo.claims", Rows: 400, Estimate: 1000})
	status = "[########............] st-mary dbo.claims: 400 rows of ~1000 (40%), 200 rows/s, 2s elapsed, ETA 3s"
	requireLogLinesAlone(t, &screen, status)

	// A line written in parts: the status line waits for its end.
	fmt.Fprint(c, `{"msg":"in`)
	fmt.Fprint(c, ` parts"}`)
	clk.add(time.Second)
	m.Update(Progress{Name: "st-mary dbo.claims", Rows: 600, Estimate: 1000})
	fmt.Fprintln(c)
	status = "[############........] st-mary dbo.claims: 600 rows of ~1000 (60%), 200 rows/s, 3s elapsed, ETA 2s"
	lines = requireLogLinesAlone(t, &screen, status)
	require.Equal(t, `{"msg":"in parts"}`, lines[1])

	m.Finish("st-mary dbo.claims")
	log.Warn("done")
	require.Len(t, requireLogLinesAlone(t, &screen, ""), 3)
	row, col := screen.Cursor()
	require.Equal(t, [2]int{3, 0}, [2]int{row, col}, "the cursor is not at the start of an empty line")
}

// TestConcurrentLogLinesAndProgress: goroutines logging while tasks report
// progress at once leave only whole log lines on screen.
func TestConcurrentLogLinesAndProgress(t *testing.T) {
	var screen terminaltest.Screen
	c := NewTerminal(&screen, 120)
	m := NewMeter(c)
	m.every = 0 // draw at every update
	log := slog.New(slog.NewJSONHandler(c, nil))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			name := fmt.Sprintf("st-mary dbo.table%d", g)
			for i := range 50 {
				m.Update(Progress{Name: name, Rows: int64(i), Estimate: 100})
				log.Info("chunk", "table", name, "i", i)
			}
			m.Finish(name)
		})
	}
	wg.Wait()
	require.Len(t, requireLogLinesAlone(t, &screen, ""), 200)
}

func TestMeter(t *testing.T) {
	var screen terminaltest.Screen
	clk := &fakeClock{t: time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
	m := newMeter(NewTerminal(&screen, 200), clk)
	shown := func() string {
		l := screen.Lines()
		if len(l) == 0 {
			return ""
		}
		return l[len(l)-1]
	}

	m.Update(Progress{Name: "a", Rows: 10})
	require.Equal(t, "a: 10 rows, 0 rows/s, 0s elapsed", shown())
	clk.add(100 * time.Millisecond)
	m.Update(Progress{Name: "a", Rows: 20})
	require.Equal(t, "a: 10 rows, 0 rows/s, 0s elapsed", shown(), "redrawn within 200ms")
	clk.add(100 * time.Millisecond)
	m.Update(Progress{Name: "a", Rows: 30})
	require.Equal(t, "a: 30 rows, 150 rows/s, 0s elapsed", shown())

	// A second task is drawn at once, beside the first, without bars.
	m.Update(Progress{Name: "b", Step: "day 1 of 4", Rows: 5, Estimate: 20})
	require.Equal(t, "a: 30 rows, 150 rows/s, 0s elapsed | b day 1 of 4: 5 rows of ~20 (25%), 0 rows/s, 0s elapsed", shown())
	clk.add(time.Millisecond)
	m.Update(Progress{Name: "b", Step: "day 1 of 4", Rows: 6, Estimate: 20})
	require.Contains(t, shown(), "b day 1 of 4: 5 rows", "redrawn within 200ms")
	m.Update(Progress{Name: "b", Step: "day 2 of 4", Rows: 6, Estimate: 20})
	require.Contains(t, shown(), "b day 2 of 4: 6 rows", "a new step is not drawn at once")
	m.Finish("a")
	require.Equal(t, "[######..............] b day 2 of 4: 6 rows of ~20 (30%), 6000 rows/s, 0s elapsed", shown())
	m.Finish("b")
	require.Empty(t, screen.Lines())

	// Names are escaped (the screen refuses escape sequences it does not
	// model); a line wider than the terminal is cut.
	narrow := newMeter(NewTerminal(&screen, 30), clk)
	narrow.Update(Progress{Name: "st-mary\x1b[2J dbo.claims", Rows: 1})
	require.Equal(t, `st-mary\x1b[2J dbo.claims: 1…`, shown())
	narrow.Finish("st-mary\x1b[2J dbo.claims")
}

// TestNotATerminal: on a file or a pipe nothing is drawn; writes pass
// through as they are.
func TestNotATerminal(t *testing.T) {
	var out bytes.Buffer
	c := NewConsole(&out)
	require.False(t, c.TTY())
	m := NewMeter(c)
	m.Update(Progress{Name: "st-mary dbo.claims", Rows: 10, Estimate: 100})
	fmt.Fprintln(c, "a log line")
	m.Finish("st-mary dbo.claims")
	c.SetStatus("status")
	require.Equal(t, "a log line\n", out.String())
}

func TestProgressString(t *testing.T) {
	for _, c := range []struct {
		name string
		p    Progress
		want string
	}{
		{"rows only", Progress{Name: "o t", Rows: 50, Elapsed: 10 * time.Second}, "o t: 50 rows, 5 rows/s, 10s elapsed"},
		{"estimate", Progress{Name: "o t", Rows: 50, Estimate: 200, Elapsed: 10 * time.Second}, "o t: 50 rows of ~200 (25%), 5 rows/s, 10s elapsed, ETA 30s"},
		{"past the estimate", Progress{Name: "o t", Rows: 250, Estimate: 200, Elapsed: 10 * time.Second}, "o t: 250 rows of ~200 (100%), 25 rows/s, 10s elapsed"},
		{"done, resumed", Progress{Name: "o t", Rows: 200, Estimate: 300, Elapsed: 10 * time.Second, Note: "resumed", Done: true},
			"o t: 200 rows of ~300 (67%), 20 rows/s, 10s elapsed (resumed), done"},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, c.p.String())
			require.False(t, strings.Contains(c.p.String(), "\n"))
		})
	}
}
