package main

import (
	"context"
	"errors"
	"time"

	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
)

func init() {
	commands["check"] = command{summary: "test the store and each organization's source as sync meets them, and report what to fix", run: runCheck}
}

// errUnhealthy is check's failure: the report says why.
var errUnhealthy = errors.New("check found problems")

func runCheck(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "check", "--config FILE [--org NAME] [--json] [--step-timeout DURATION]")
	path := fs.String("config", "", "configuration file (YAML)")
	orgName := fs.String("org", "", "check only this organization")
	asJSON := fs.Bool("json", false, "print the report as JSON (schema_version 1)")
	stepTimeout := fs.Duration("step-timeout", check.DefaultStepTimeout, "timeout of each step")
	if err := parse(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	orgs, err := selectOrgs(cfg, *orgName, *path)
	if err != nil {
		return err
	}
	for _, w := range service.ConfigWarnings(cfg) {
		env.log.Warn(w)
	}
	for _, o := range orgs {
		for _, w := range source.Warnings(o.Source) {
			env.log.Warn(w, "org", o.Name)
		}
	}
	if *stepTimeout <= 0 {
		*stepTimeout = check.DefaultStepTimeout
	}
	catalog, err := service.Catalog(cfg)
	if err != nil {
		return err
	}
	rep := check.Check(ctx, cfg, orgs, check.Options{StepTimeout: min(*stepTimeout, time.Hour), Catalog: catalog, Planner: planner.New(), ConfigPath: *path})
	if *asJSON {
		err = rep.WriteJSON(env.stdout)
	} else {
		err = rep.WriteText(env.stdout)
	}
	if err != nil {
		return err
	}
	if !rep.Healthy {
		return errUnhealthy
	}
	return nil
}
