package main

import (
	"context"
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
		Short: "test the connection to each organization's source and report what to fix",
		Long: "Test each organization's source (every one, or --org's) as sync would reach it: DNS, TCP, TLS, login,\n" +
			"server version, and per table its capture status, the grants its strategy needs and the plan.\n" +
			"Exit 0 only when every organization is healthy. --json prints the report (schema_version 1).",
	}
	path, orgName, asJSON := configFlag(c), orgFlag(c), jsonFlag(c)
	stepTimeout := c.Flags().Duration("step-timeout", check.DefaultStepTimeout, "timeout of each step")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		cfg, orgs, err := loadOrgs(*path, *orgName)
		if err != nil {
			return err
		}
		// The store's warnings come with its connection (CheckAudit).
		service.WarnSources(ctx, orgs, env.log)
		if *stepTimeout <= 0 {
			*stepTimeout = check.DefaultStepTimeout
		}
		// The store's side: warn when the audit is not append-only for the
		// role ehrsync writes with. A warning, not a failed check: the sources
		// are what check tests.
		sctx, cancel := context.WithTimeout(ctx, min(*stepTimeout, 10*time.Second))
		// A store URL refused for its transport fails check (after the
		// sources' report): every other command would refuse it too.
		var storeErr error
		if err := service.CheckAudit(sctx, cfg, env.log); err != nil {
			var te *service.StoreTransportError
			if errors.As(err, &te) {
				storeErr = err
			} else {
				env.log.Warn("the store was not reached: the audit's protection is not checked", "err", err)
			}
		}
		cancel()
		catalog, err := service.Catalog(cfg)
		if err != nil {
			return err
		}
		rep := check.Run(ctx, orgs, check.Options{StepTimeout: min(*stepTimeout, time.Hour), Catalog: catalog, Planner: planner.New()})
		if *asJSON {
			err = rep.WriteJSON(env.stdout)
		} else {
			err = rep.WriteText(env.stdout)
		}
		if err != nil {
			return err
		}
		if storeErr != nil {
			return storeErr
		}
		if !rep.Healthy {
			return errUnhealthy
		}
		return nil
	}
	return c
}
