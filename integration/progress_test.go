package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/terminal/terminaltest"
)

// openPTY opens a pseudo-terminal cols columns wide: its master (what a
// terminal emulator reads) and its slave (the terminal a program writes
// to).
func openPTY(t *testing.T, cols int) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal on this machine: %v", err)
	}
	ioctl := func(f *os.File, req uintptr, arg unsafe.Pointer) {
		t.Helper()
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
			t.Fatalf("ioctl %#x: %v", req, errno)
		}
	}
	var unlock int32
	ioctl(master, syscall.TIOCSPTLCK, unsafe.Pointer(&unlock))
	var n uint32
	ioctl(master, syscall.TIOCGPTN, unsafe.Pointer(&n))
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	require.NoError(t, err)
	size := [4]uint16{24, uint16(cols), 0, 0} // rows, columns, pixels
	ioctl(slave, syscall.TIOCSWINSZ, unsafe.Pointer(&size))
	return master, slave
}

// onTerminal runs the binary with args, its stderr a terminal 160 columns
// wide and its stdout a pipe. It returns what the terminal shows and
// received, and the stdout.
func (e *env) onTerminal(t *testing.T, args ...string) (*terminaltest.Screen, string) {
	t.Helper()
	master, slave := openPTY(t, 160)
	defer master.Close()
	var stdout bytes.Buffer
	cmd := e.command(args...)
	cmd.Stdout, cmd.Stderr = &stdout, slave
	require.NoError(t, cmd.Start())
	slave.Close() // the child's copy is the terminal's last: its exit ends the reads below
	screen := &terminaltest.Screen{}
	var screenErr error
	buf := make([]byte, 4096)
	for {
		n, err := master.Read(buf)
		if n > 0 {
			if _, werr := screen.Write(buf[:n]); werr != nil && screenErr == nil {
				screenErr = werr
			}
		}
		if err != nil { // EIO once the child has closed the terminal
			break
		}
	}
	err := cmd.Wait()
	require.NoError(t, err, "ehrsync %s:\nstderr:\n%s\nstdout:\n%s", strings.Join(args, " "), screen.Raw(), stdout.String())
	require.NoError(t, screenErr, "the terminal received what it does not model")
	return screen, stdout.String()
}

// analyzedEnv is newEnv with the source's statistics up to date (ANALYZE),
// and the rows of its dbo.claims.
func analyzedEnv(t *testing.T, days, batchRows int) (*env, int64) {
	t.Helper()
	e := newEnv(t, days, batchRows)
	ctx := context.Background()
	_, err := e.src.Exec(ctx, "ANALYZE")
	require.NoError(t, err)
	var claims int64
	require.NoError(t, e.src.QueryRow(ctx, "SELECT count(*) FROM dbo.claims").Scan(&claims))
	return e, claims
}

// requireWholeLogLines checks that every line the terminal shows is one
// whole JSON log line: no progress line left, none sharing a line.
func requireWholeLogLines(t *testing.T, screen *terminaltest.Screen) {
	t.Helper()
	for _, l := range screen.Lines() {
		var rec map[string]any
		require.NoError(t, json.Unmarshal([]byte(l), &rec), "a log line shares its line: %q", l)
	}
	_, col := screen.Cursor()
	require.Zero(t, col, "the cursor is not at the start of a line")
}

// TestProgressOnATerminal: sync, backfill, verify (before simulate changes
// the source) and simulate draw a progress line
// on a terminal (rows, and for a table read whole, the estimate from the
// source's statistics), and the log lines written meanwhile (debug: one a
// chunk) each take a line of their own; nothing of it is left at the end,
// nor on stdout. With --no-progress, or when stderr is not a terminal,
// nothing is drawn.
func TestProgressOnATerminal(t *testing.T) {
	e, claims := analyzedEnv(t, 3, 50)

	for _, c := range []struct {
		name string
		args []string
		want []string // on the terminal, drawn
		logs bool     // log lines are written while it is drawn
	}{
		{name: "sync", args: []string{"sync", "--config", e.config},
			want: []string{org + " dbo.claims: ", fmt.Sprintf(" rows of ~%d (", claims)}, logs: true},
		{name: "backfill", args: []string{"backfill", "--config", e.config, "--org", org, "--table", "dbo.claims"},
			want: []string{org + " dbo.claims: 0 rows, "}, logs: true},
		{name: "verify", args: []string{"verify", "--config", e.config, "--org", org},
			want: []string{org + " dbo.", " table 1 of "}},
		{name: "simulate", args: []string{"simulate", "--dialect", "postgres", "--dsn", e.srcURL, "--days", "2"},
			want: []string{"simulate day 1 of 2: ", "simulate day 2 of 2: "}},
	} {
		t.Run(c.name, func(t *testing.T) {
			screen, stdout := e.onTerminal(t, append([]string{"--log-format", "json", "--log-level", "debug"}, c.args...)...)
			for _, w := range c.want {
				require.Contains(t, screen.Raw(), w, "no progress drawn")
			}
			requireWholeLogLines(t, screen)
			if c.logs {
				require.Contains(t, screen.Raw(), "\r\x1b[K{", "no log line was written while the progress line was drawn")
			}
			require.NotContains(t, stdout, "\x1b")
			require.NotContains(t, stdout, "elapsed, ETA")

			screen, _ = e.onTerminal(t, append([]string{"--log-format", "json", "--log-level", "debug"}, append(c.args, "--no-progress")...)...)
			require.NotContains(t, screen.Raw(), c.want[0], "progress drawn with --no-progress")
			require.NotContains(t, screen.Raw(), "\x1b[K")

			var out bytes.Buffer
			cmd := e.command(append([]string{"--log-format", "json", "--log-level", "debug"}, c.args...)...)
			cmd.Stdout, cmd.Stderr = &out, &out
			require.NoError(t, cmd.Run(), out.String())
			require.NotContains(t, out.String(), "\x1b", "progress drawn on a pipe")
		})
	}
}

// TestFirstBackfillEstimatesFromTheSource: a table's first backfill (its
// store table empty, never synced) reports the source's estimate of its
// rows: its last line says how many rows of how many, and the percent.
func TestFirstBackfillEstimatesFromTheSource(t *testing.T) {
	e, claims := analyzedEnv(t, 2, 100)
	out, err := e.run(t, "backfill", "--config", e.config, "--org", org, "--table", "dbo.claims")
	require.NoError(t, err, out)
	require.Contains(t, out, fmt.Sprintf("%s dbo.claims: %d rows of ~%d (100%%), ", org, claims, claims))
	require.Contains(t, out, ", done")
}
