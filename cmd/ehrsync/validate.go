package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
)

func init() { register(validateCommand) }

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

func validateCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "validate --config FILE",
		Short: "check a configuration file and print every problem in it",
		Long: "Check a configuration file without connecting anywhere: every problem, each with its key path,\n" +
			"then what turns protection off (TLS off or not verified) as warnings.",
	}
	path := configFlag(c)
	c.RunE = func(*cobra.Command, []string) error { return runValidate(env, *path) }
	return c
}

func runValidate(env *environment, path string) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if err := catalogProblems(cfg); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	tables := 0
	for _, o := range cfg.Orgs {
		tables += len(o.Tables)
	}
	fmt.Fprintf(env.stdout, "%s: valid (%d organizations, %d tables)\n", path, len(cfg.Orgs), tables)
	// Valid is not safe: report what turns protection off (TLS off or not
	// verified), as findings on stdout; the commands that connect log it.
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

// loadOrgs loads the configuration at path (loadConfig) and returns it
// with the organization named by --org, or every one when name is empty;
// an unknown name is a usage error.
func loadOrgs(path, name string) (*config.Config, []config.Org, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	if name == "" {
		return cfg, cfg.Orgs, nil
	}
	o, ok := cfg.Org(name)
	if !ok {
		return nil, nil, usageError{fmt.Errorf("--org %s: no such organization in %s", name, path)}
	}
	return cfg, []config.Org{*o}, nil
}
