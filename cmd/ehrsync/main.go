// Command ehrsync is the one binary: the CLI and the daemon.
//
// Flags and the environment are read here only; the packages take Go values.
// The command tree is cobra's (root.go); each command's file builds its
// *cobra.Command and registers it (register).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/terminal"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// environment is what every command gets: output streams and a logger
// (set from the global flags before the command runs).
// stderr is console, which keeps what is written to it off a progress line.
type environment struct {
	stdout, stderr io.Writer
	console        *terminal.Console
	log            *slog.Logger
}

// run runs the command line args: one process's work. Each warning about
// an insecure setting is given once in it (service.WarnOnce).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	console := terminal.NewConsole(stderr)
	defer console.SetStatus("")
	env := &environment{stdout: stdout, stderr: console, console: console}
	root := newRoot(env)
	// A non-nil slice: cobra reads os.Args when given nil.
	root.SetArgs(append([]string{}, args...))
	cmd, err := root.ExecuteContextC(service.WarnOnce(ctx))
	var u usageError
	if errors.As(err, &u) && cmd != nil {
		return helpHint{err: err, command: cmd.CommandPath()}
	}
	return err
}

// newLogger is the logger of --log-format and --log-level, writing to w.
// Durations print as Go duration strings ("1.5s") in either format.
func newLogger(w io.Writer, tty bool, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl, ReplaceAttr: durationString}
	if format == "auto" {
		format = "json"
		if tty {
			format = "text"
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: unknown format %q (want auto, text or json)", format)
}

// durationString is a slog ReplaceAttr: a time.Duration value becomes its
// Go duration string (the JSON handler would print nanoseconds).
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// helpHint is a usage error with a line pointing to its command's help.
type helpHint struct {
	err     error
	command string
}

func (e helpHint) Error() string {
	return fmt.Sprintf("%v\nRun '%s --help' for usage.", e.err, e.command)
}
func (e helpHint) Unwrap() error { return e.err }

// exitCode maps a command's outcome to the process exit code, printing the
// error once: 0 success, 2 usage, 1 anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "ehrsync:", err)
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}
