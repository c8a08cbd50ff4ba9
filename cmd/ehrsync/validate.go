package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/config"
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
		Use:   "validate --config FILE [--json]",
		Short: "check a configuration file and print every problem a sync would refuse in it",
		Long: "Check a configuration file without connecting anywhere: every problem a sync would refuse before it\n" +
			"connects (unset secrets by name, a remote store without sslmode, cron steps, tables and allow-lists against\n" +
			"the catalog), each with its key path and line, then what turns protection off (TLS off or not verified)\n" +
			"as warnings. --json prints the report (schema_version 1).",
	}
	path, asJSON := configFlag(c), jsonFlag(c)
	c.RunE = func(*cobra.Command, []string) error { return runValidate(env, *path, *asJSON) }
	return c
}

func runValidate(env *environment, path string, asJSON bool) error {
	if path == "" {
		return usageError{fmt.Errorf("--config is required")}
	}
	rep := check.Validate(path)
	if asJSON {
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
