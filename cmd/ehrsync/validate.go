package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/config"
)

func init() {
	commands["validate"] = command{summary: "check a configuration file and print every problem in it", run: runValidate}
}

// newFlags is a command's flag set, printing its usage on stderr.
func newFlags(env *environment, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: ehrsync %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses a command's flags; a mistake is a usage error.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// loadConfig loads the file named by --config, reporting each problem on
// its own line.
func loadConfig(path string) (*config.Config, error) {
	if path == "" {
		return nil, usageError{fmt.Errorf("--config is required")}
	}
	cfg, err := config.Load(path)
	if err != nil {
		if problems := config.Problems(err); len(problems) > 1 {
			msg := fmt.Sprintf("%s has %d problems:", path, len(problems))
			for _, p := range problems {
				msg += "\n  " + p.Error()
			}
			return nil, fmt.Errorf("%s", msg)
		}
		return nil, err
	}
	return cfg, nil
}

func runValidate(_ context.Context, env *environment, args []string) error {
	fs := newFlags(env, "validate", "--config FILE [--json]")
	path := fs.String("config", "", "configuration file (YAML)")
	asJSON := fs.Bool("json", false, "print the report as JSON (schema_version 1)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{fmt.Errorf("--config is required")}
	}
	rep := check.Validate(*path)
	if *asJSON {
		if err := rep.WriteJSON(env.stdout); err != nil {
			return err
		}
		if !rep.Valid {
			return errInvalid
		}
		return nil
	}
	if !rep.Valid {
		var b strings.Builder
		if err := rep.WriteText(&b); err != nil {
			return err
		}
		return errors.New(strings.TrimSuffix(b.String(), "\n"))
	}
	return rep.WriteText(env.stdout)
}

// errInvalid is validate's failure with --json: the report says why.
var errInvalid = errors.New("the configuration has problems")

// selectOrgs returns the organization named by --org, or every one when
// name is empty; an unknown name is a usage error.
func selectOrgs(cfg *config.Config, name, path string) ([]config.Org, error) {
	if name == "" {
		return cfg.Orgs, nil
	}
	o, ok := cfg.Org(name)
	if !ok {
		return nil, usageError{fmt.Errorf("--org %s: no such organization in %s", name, path)}
	}
	return []config.Org{*o}, nil
}
