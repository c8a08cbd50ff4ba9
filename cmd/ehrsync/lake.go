package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/terminal"
)

func init() { register(lakeCommandTree) }

func lakeCommandTree(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "lake",
		Short: "the change lake: flush tables' outboxes into their Iceberg tables, and maintain those",
		Long: "Tables with lake on append every change the store commits to an Apache Iceberg table,\n" +
			"<org schema>.<table>__changes in the catalog in the store's schema ehrsync_lake. Syncs flush as they go;\n" +
			"flush moves what waits in the outboxes now, maintain compacts small files, expires old snapshots and\n" +
			"removes files no snapshot holds (those of a flush stopped before its commit).",
	}
	c.AddCommand(lakeFlush(env), lakeMaintain(env))
	return c
}

// lakeTargets are the tables with lake on of cfg (of org, of tables when
// given), each with its lake table.
func lakeTargets(svc *service.Service, cfg *config.Config, org string, tables []string) ([]lakeTarget, error) {
	if len(tables) > 0 && org == "" {
		return nil, usageError{errors.New("--table needs --org")}
	}
	var out []lakeTarget
	for i := range cfg.Orgs {
		o := &cfg.Orgs[i]
		if org != "" && o.Name != org {
			continue
		}
		for _, tc := range o.Tables {
			t, ok := svc.Engine.Catalog().Table(tc.Name)
			if !ok || !config.LakeOn(*o, tc) {
				continue
			}
			if len(tables) > 0 && !containsTable(tables, tc.Name, t.QualifiedName()) {
				continue
			}
			out = append(out, lakeTarget{org: o.Name, table: t.QualifiedName(), lake: engine.LakeTable(o.Name, t), conf: o})
		}
	}
	if len(out) == 0 {
		return nil, usageError{errors.New("no table with lake on matches: set lake: true on an organization or table, and lake.warehouse")}
	}
	return out, nil
}

func containsTable(names []string, a, b string) bool {
	for _, n := range names {
		if n == a || n == b {
			return true
		}
	}
	return false
}

type lakeTarget struct {
	org, table string
	lake       lake.Table
	conf       *config.Org
}

// targetOrgs are the organizations of targets, in order.
func targetOrgs(svc *service.Service, targets []lakeTarget) []*config.Org {
	var out []*config.Org
	for i, tg := range targets {
		if i == 0 || targets[i-1].org != tg.org {
			out = append(out, tg.conf)
		}
	}
	return out
}

// targetTables are the qualified names of org's targets.
func targetTables(targets []lakeTarget, org string) []string {
	var out []string
	for _, tg := range targets {
		if tg.org == org {
			out = append(out, tg.table)
		}
	}
	return out
}

// openLake loads the configuration, opens the service with its lake as
// the command line's actor, and finds the tables it names with lake on.
func openLake(ctx context.Context, env *environment, path string, actor func() (string, error), org string, tables []string) (*service.Service, []lakeTarget, string, error) {
	who, err := actor()
	if err != nil {
		return nil, nil, "", err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, "", err
	}
	if !cfg.Lake.Used(cfg) {
		return nil, nil, "", usageError{errors.New("no table has lake on: set lake: true on an organization or table, and lake.warehouse")}
	}
	svc, err := service.Open(ctx, cfg, env.log, who, 1)
	if err != nil {
		return nil, nil, "", err
	}
	targets, err := lakeTargets(svc, cfg, org, tables)
	if err != nil {
		svc.Close()
		return nil, nil, "", err
	}
	return svc, targets, who, nil
}

func lakeFlush(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "flush --config FILE [--org NAME [--table NAME ...]] [--actor NAME]",
		Short: "move the changes waiting in tables' lake outboxes into their Iceberg tables now",
	}
	path, org, tables, actor := configFlag(c), orgFlag(c), tablesFlag(c), actorFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		svc, targets, who, err := openLake(ctx, env, *path, actor, *org, *tables)
		if err != nil {
			return err
		}
		defer svc.Close()
		runID := engine.NewRunID()
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ORG\tTABLE\tCOMMITS\tCHUNKS\tROWS\tFILES\tBYTES\tCLAIM\tRESULT")
		var failed []error
		for _, tg := range targets {
			res, err := svc.Lake.Flush(ctx, tg.lake)
			outcome := "ok"
			switch {
			case err != nil:
				outcome = "failed: " + err.Error()
				failed = append(failed, fmt.Errorf("%s %s: %w", tg.org, tg.table, err))
			case res.Busy:
				outcome = "busy: another flush holds the table"
			}
			if res.Commits > 0 || err != nil {
				if aerr := svc.Audit.LakeFlush(ctx, who, runID, tg.org, tg.table, res, err); aerr != nil {
					failed = append(failed, aerr)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", terminal.Escape(tg.org), terminal.Escape(tg.table),
				res.Commits, res.Batches, res.Rows, res.Files, res.FileBytes, res.State.Claim, terminal.Escape(outcome))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return errors.Join(failed...)
	}
	return c
}

func lakeMaintain(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use: "maintain --config FILE [--org NAME [--table NAME ...]] [--actor NAME] [--dry-run] [--orphan-age DURATION]\n" +
			"  [--retain N] [--snapshot-age DURATION] [--target-file-size BYTES]",
		Short: "compact lake tables' small files, expire old snapshots and remove files no snapshot holds",
		Long: "Per table, under the table's flush lock: small data files are rewritten into files of up to\n" +
			"--target-file-size (the position properties stay); snapshots beyond the last --retain and older than\n" +
			"--snapshot-age are expired; files under the table that no snapshot holds and older than --orphan-age\n" +
			"(a flush stopped before its commit leaves its files so) are deleted, or listed with --dry-run.",
	}
	var opts lake.MaintainOptions
	path, org, tables, actor := configFlag(c), orgFlag(c), tablesFlag(c), actorFlag(c)
	c.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list orphan files without deleting them")
	c.Flags().DurationVar(&opts.OrphanAge, "orphan-age", lake.DefaultOrphanAge, "delete orphan files older than this (keep it longer than any flush takes)")
	c.Flags().IntVar(&opts.RetainSnapshots, "retain", lake.DefaultRetainSnapshots, "snapshots always kept")
	c.Flags().DurationVar(&opts.SnapshotAge, "snapshot-age", lake.DefaultSnapshotAge, "expire snapshots older than this beyond --retain")
	c.Flags().Int64Var(&opts.TargetFileBytes, "target-file-size", lake.DefaultTargetFileBytes, "compacted data files' size, bytes")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		if opts.OrphanAge < time.Hour {
			return usageError{errors.New("--orphan-age: want 1h or more: a younger file may belong to a flush still writing")}
		}
		svc, targets, who, err := openLake(ctx, env, *path, actor, *org, *tables)
		if err != nil {
			return err
		}
		defer svc.Close()
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ORG\tTABLE\tFILES REWRITTEN\tFILES ADDED\tSNAPSHOTS EXPIRED\tORPHANS\tORPHANS DELETED\tRESULT")
		var failed []error
		for _, o := range targetOrgs(svc, targets) {
			names := targetTables(targets, o.Name)
			for _, m := range svc.MaintainLake(ctx, o, names, who, opts) {
				outcome := "ok"
				switch {
				case m.Err != nil:
					outcome = "failed: " + m.Err.Error()
					failed = append(failed, m.Err)
				case m.Result.Busy:
					outcome = "busy: a flush holds the table"
				}
				r := m.Result
				fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", terminal.Escape(m.Org), terminal.Escape(m.Table),
					r.FilesRewritten, r.FilesAdded, r.SnapshotsExpired, len(r.Orphans), r.OrphansDeleted, terminal.Escape(outcome))
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return errors.Join(failed...)
	}
	return c
}
