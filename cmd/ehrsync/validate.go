package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
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
	fs := newFlags(env, "validate", "--config FILE")
	path := fs.String("config", "", "configuration file (YAML)")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if err := catalogProblems(cfg); err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	tables := 0
	for _, o := range cfg.Orgs {
		tables += len(o.Tables)
	}
	fmt.Fprintf(env.stdout, "%s: valid (%d organizations, %d tables)\n", *path, len(cfg.Orgs), tables)
	// Valid is not safe: say what turns protection off (TLS off or not
	// verified), as every other command does at start.
	for _, w := range service.ConfigWarnings(cfg) {
		fmt.Fprintf(env.stdout, "warning: %s\n", w)
	}
	for _, o := range cfg.Orgs {
		for _, w := range source.Warnings(o.Source) {
			fmt.Fprintf(env.stdout, "warning: org %s: %s\n", o.Name, w)
		}
	}
	for _, w := range cfg.Server.Warnings() {
		fmt.Fprintf(env.stdout, "warning: %s\n", w)
	}
	return nil
}

// catalogProblems loads the configuration's catalog (NextGen and the files
// of catalog:) and checks that it has every configured table, and that an
// organization filtering by practice reads only tables that name their
// practice column or declare they have none, naming the key of each
// problem.
func catalogProblems(cfg *config.Config) error {
	catalog, err := service.Catalog(cfg)
	if err != nil {
		return err
	}
	var problems []error
	for i, o := range cfg.Orgs {
		for j, t := range o.Tables {
			ct, ok := catalog.Table(t.Name)
			if !ok {
				problems = append(problems, &config.FieldError{Key: fmt.Sprintf("orgs[%d].tables[%d].name", i, j),
					Problem: fmt.Sprintf("table %q is in neither the NextGen catalog nor a file of catalog:", t.Name)})
				continue
			}
			if len(o.Source.PracticeIDs) > 0 {
				if err := ct.CheckPracticeFilter(); err != nil {
					problems = append(problems, &config.FieldError{Key: fmt.Sprintf("orgs[%d].tables[%d].name", i, j),
						Problem: err.Error() + "; the organization sets practice_ids"})
				}
			}
		}
	}
	return errors.Join(problems...)
}

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
