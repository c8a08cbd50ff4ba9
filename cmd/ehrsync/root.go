package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// commands build ehrsync's commands, one function per command file.
var commands []func(env *environment) *cobra.Command

// register adds a command to ehrsync. Each command's file calls it from
// init with the function that builds the command (its subcommands too)
// for one run, its flags bound to variables of that run; the command's
// RunE reads env (output streams, the logger of the global flags).
func register(build func(env *environment) *cobra.Command) { commands = append(commands, build) }

func init() { register(versionCommand) }

// newRoot builds the command tree of one run: the global flags, every
// registered command, help, completion and version.
func newRoot(env *environment) *cobra.Command {
	var logFormat, logLevel string
	root := &cobra.Command{
		Use:   "ehrsync",
		Short: "ehrsync: incremental sync of EHR databases (NextGen on SQL Server or PostgreSQL) into a PostgreSQL store",
		Long: "ehrsync pulls EHR data (NextGen on SQL Server or PostgreSQL) into a PostgreSQL store, incrementally:\n" +
			"one pass with sync, or on schedules with run (the daemon).\n\n" +
			"Exit codes: 0 success, 1 failure, 2 a mistake in the command line.",
		Version:       version,
		SilenceErrors: true, // exitCode prints the error once
		SilenceUsage:  true,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			log, err := newLogger(env.stderr, env.console.TTY(), logFormat, logLevel)
			if err != nil {
				return usageError{err}
			}
			env.log = log
			return nil
		},
	}
	root.SetOut(env.stdout)
	root.SetErr(env.stderr)
	root.SetVersionTemplate("ehrsync {{.Version}}\n")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.Flags().Bool("version", false, "print the version")
	pf := root.PersistentFlags()
	pf.StringVar(&logFormat, "log-format", "auto", "log format: auto (text on a terminal, JSON otherwise), text or json")
	pf.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	_ = root.RegisterFlagCompletionFunc("log-format", cobra.FixedCompletions([]string{"auto", "text", "json"}, cobra.ShellCompDirectiveNoFileComp))
	_ = root.RegisterFlagCompletionFunc("log-level", cobra.FixedCompletions([]string{"debug", "info", "warn", "error"}, cobra.ShellCompDirectiveNoFileComp))

	root.SetHelpCommand(helpCommand())
	for _, build := range commands {
		root.AddCommand(build(env))
	}
	root.InitDefaultCompletionCmd()
	if c, _, err := root.Find([]string{"completion"}); err == nil {
		c.Short = "print the shell completion script (bash, zsh, fish or powershell)"
	}
	shape(root)
	// A command that groups others shows only its subcommands' usage.
	root.SetUsageTemplate(strings.Replace(root.UsageTemplate(), "Usage:{{if .Runnable}}", "Usage:{{if and .Runnable (not .HasAvailableSubCommands)}}", 1))
	return root
}

// shape gives every command of the tree what ehrsync's commands share: a
// command with subcommands and no body of its own refuses to run without
// one, naming them; a command that takes no arguments refuses them; and
// no argument completes to a file name.
func shape(c *cobra.Command) {
	for _, sub := range c.Commands() {
		shape(sub)
	}
	if c.HasSubCommands() && !c.Runnable() {
		c.Args, c.RunE = cobra.ArbitraryArgs, wantSubcommand
		c.SuggestionsMinimumDistance = 2
	}
	if c.Args == nil {
		c.Args = noArgs
	}
	if c.ValidArgsFunction == nil {
		c.ValidArgsFunction = cobra.NoFileCompletions
	}
}

// wantSubcommand is the body of a command that only groups others: a
// usage error naming them.
func wantSubcommand(c *cobra.Command, args []string) error {
	var names []string
	for _, s := range c.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	what, prefix := "subcommand", strings.TrimPrefix(c.CommandPath(), c.Root().Name()+" ")+": "
	if !c.HasParent() {
		what, prefix = "command", ""
	}
	want := strings.Join(names, ", ")
	if len(args) == 0 {
		return usageError{fmt.Errorf("%swant a %s: %s", prefix, what, want)}
	}
	msg := fmt.Sprintf("%sunknown %s %q (want %s)", prefix, what, args[0], want)
	if s := c.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError{errors.New(msg)}
}

// noArgs refuses positional arguments: every value is a flag's.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q (every value is given with its flag)", args[0])}
	}
	return nil
}

// helpCommand is `ehrsync help [COMMAND [SUBCOMMAND]]`: a command's help
// on stdout; an unknown command is a usage error.
func helpCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "help [COMMAND [SUBCOMMAND]]",
		Short: "print the help of ehrsync or of a command: what it does, its flags",
		Args:  cobra.ArbitraryArgs,
		ValidArgsFunction: func(c *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			target, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, s := range target.Commands() {
				if s.IsAvailableCommand() && strings.HasPrefix(s.Name(), toComplete) {
					out = append(out, cobra.CompletionWithDesc(s.Name(), s.Short))
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(c *cobra.Command, args []string) error {
			target, rest, err := c.Root().Find(args)
			if err != nil || len(rest) > 0 {
				return usageError{fmt.Errorf("help: no command %q (ehrsync help lists them)", strings.Join(args, " "))}
			}
			target.InitDefaultHelpFlag()
			target.InitDefaultVersionFlag()
			return target.Help()
		},
	}
}

// versionCommand is `ehrsync version`, as `ehrsync --version`.
func versionCommand(env *environment) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version",
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(env.stdout, "ehrsync", version)
			return err
		},
	}
}
