// Command ehrsync is the one binary: the CLI and the daemon.
//
// Flags and the environment are read here only; the packages take Go values.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"

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

// command is one subcommand: its one-line summary and its body.
type command struct {
	summary string
	run     func(ctx context.Context, env *environment, args []string) error
}

var commands = map[string]command{}

// environment is what every command gets: output streams and a logger.
// stderr is console, which keeps what is written to it off a progress line.
type environment struct {
	stdout, stderr io.Writer
	console        *terminal.Console
	log            *slog.Logger
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	global := flag.NewFlagSet("ehrsync", flag.ContinueOnError)
	global.SetOutput(stderr)
	logFormat := global.String("log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	logLevel := global.String("log-level", "info", "log level: debug, info, warn or error")
	global.Usage = func() { usage(stderr) }
	if err := global.Parse(args); err != nil {
		return usageError{err}
	}
	if global.NArg() == 0 {
		usage(stderr)
		return usageError{errors.New("no command given")}
	}
	name, rest := global.Arg(0), global.Args()[1:]
	if name == "version" {
		fmt.Fprintln(stdout, "ehrsync", version)
		return nil
	}
	cmd, ok := commands[name]
	if !ok {
		usage(stderr)
		return usageError{fmt.Errorf("unknown command %q", name)}
	}
	console := terminal.NewConsole(stderr)
	defer console.SetStatus("")
	logger, err := newLogger(console, console.TTY(), *logFormat, *logLevel)
	if err != nil {
		return usageError{err}
	}
	return cmd.run(ctx, &environment{stdout: stdout, stderr: console, console: console, log: logger}, rest)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: ehrsync [--log-format auto|text|json] [--log-level LEVEL] COMMAND [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "version", "print the version")
	fmt.Fprintln(w, "\nRun 'ehrsync COMMAND -h' for a command's flags.")
}

func newLogger(w io.Writer, tty bool, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
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

// usageError is a mistake in the command line: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// exitCode maps a command's outcome to the process exit code, printing the
// error once: 0 success, 2 usage, 1 anything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	fmt.Fprintln(stderr, "ehrsync:", err)
	var u usageError
	if errors.As(err, &u) {
		return 2
	}
	return 1
}
