package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
// given).
func lakeTargets(svc *service.Service, cfg *config.Config, org string, tables []string) ([]service.LakeTable, error) {
	if len(tables) > 0 && org == "" {
		return nil, usageError{errors.New("--table needs --org")}
	}
	var out []service.LakeTable
	for i := range cfg.Orgs {
		if org != "" && cfg.Orgs[i].Name != org {
			continue
		}
		for _, t := range svc.LakeTables(&cfg.Orgs[i]) {
			if len(tables) == 0 || slices.ContainsFunc(tables, func(n string) bool {
				ct, ok := svc.Engine.Catalog().Table(n)
				return ok && ct.QualifiedName() == t.Table
			}) {
				out = append(out, t)
			}
		}
	}
	if len(out) == 0 {
		return nil, usageError{errors.New("no table with lake on matches: set lake: true on an organization or table, and lake.warehouse")}
	}
	return out, nil
}

// openLake loads the configuration, opens the service with its lake as
// the command line's actor, and finds the tables it names with lake on.
func openLake(ctx context.Context, env *environment, path string, actor func() (string, error), org string, tables []string) (*service.Service, []service.LakeTable, string, error) {
	who, err := actor()
	if err != nil {
		return nil, nil, "", err
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, "", err
	}
	if !config.LakeUsed(cfg.Orgs) {
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
			res, err := svc.Lake.Flush(ctx, tg.Lake)
			outcome := "ok"
			switch {
			case err != nil:
				outcome = "failed: " + err.Error()
				failed = append(failed, fmt.Errorf("%s %s: %w", tg.Org.Name, tg.Table, err))
			case res.Busy:
				outcome = "busy: another flush holds the table"
			}
			if res.Commits > 0 || err != nil {
				if aerr := svc.Audit.LakeFlush(ctx, who, runID, tg.Org.Name, tg.Table, res, err); aerr != nil {
					failed = append(failed, aerr)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", terminal.Escape(tg.Org.Name), terminal.Escape(tg.Table),
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
		for _, tg := range targets {
			r, err := svc.MaintainLake(ctx, tg, who, opts)
			outcome := "ok"
			switch {
			case err != nil:
				outcome = "failed: " + err.Error()
				failed = append(failed, err)
			case r.Busy:
				outcome = "busy: a flush holds the table"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", terminal.Escape(tg.Org.Name), terminal.Escape(tg.Table),
				r.FilesRewritten, r.FilesAdded, r.SnapshotsExpired, len(r.Orphans), r.OrphansDeleted, terminal.Escape(outcome))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		return errors.Join(failed...)
	}
	return c
}
