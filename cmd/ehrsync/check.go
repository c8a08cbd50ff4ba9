package main

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/service"
)

func init() { register(checkCommand) }

// errUnhealthy is check's failure: the report says why.
var errUnhealthy = errors.New("check found problems")

func checkCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "check --config FILE [--org NAME] [--json] [--step-timeout DURATION]",
		Short: "test the store, the change lake and each organization's source as sync meets them, and report what to fix",
		Long: "Test the store (URL and TLS, connection, migrations, the writer's privileges); when a table has lake on,\n" +
			"the change lake (its storage secrets resolve, its catalog is in the store and the writer may use it, and a\n" +
			"probe file under lake.warehouse is written, read back and deleted); then each organization's source (every\n" +
			"one, or --org's) as sync would reach it: DNS, TCP, TLS, login, server version, and per table its capture\n" +
			"status, schema drift, the grants its strategy needs and the plan.\n" +
			"Exit 0 only when the store, the lake and every organization are healthy. --json prints the report (schema_version 1).",
	}
	path, orgName, asJSON := configFlag(c), orgFlag(c), jsonFlag(c)
	stepTimeout := c.Flags().Duration("step-timeout", check.DefaultStepTimeout, "timeout of each step")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		cfg, orgs, err := loadOrgs(*path, *orgName)
		if err != nil {
			return err
		}
		service.WarnStore(ctx, cfg, env.log)
		service.WarnSources(ctx, orgs, env.log)
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
	return c
}
