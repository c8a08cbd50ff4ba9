package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/backfill"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/service"
)

func init() { register(backfillCommand) }

func backfillCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "backfill --config FILE --org NAME [--table NAME ...] [--from KEY] [--to KEY] [--actor NAME] [--json] [--no-progress]",
		Short: "re-snapshot an organization's tables (all, or --table; or one table's key range with --from/--to), beside the daemon, resumable",
		Long: "Re-snapshot the tables of --org (every table of it without --table) under each table's lease, beside a running daemon;\n" +
			"an interrupted backfill resumes where it stopped when run again. It shows progress as it goes; with --json,\n" +
			"progress goes to stderr and stdout gets a summary per table, as sync --json prints.",
	}
	path, orgName, tablesP, actorOf, asJSON := configFlag(c), orgFlag(c), tablesFlag(c), actorFlag(c), jsonFlag(c)
	from := c.Flags().String("from", "", "backfill only the rows whose primary key is >= KEY (needs exactly one --table): one value per key column, "+
		"comma-separated, in the column's type (42, 6f9619ff-8b86-d011-b42d-00c04fc964ff, 2026-11-01T08:30:00, -12.50). "+
		"The table's sync position is not moved; the range is re-read and upserted, and rows deleted at the source within it are removed "+
		"where the store orders the key as the source does (numbers, dates, times; uuids from a PostgreSQL source). "+
		"Ranges are on the primary key whatever the table's strategy: cursor ranges are not supported")
	noProgress := noProgressFlag(c)
	to := c.Flags().String("to", "", "backfill only the rows whose primary key is <= KEY (as --from; either bound may be left out)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx, tables := c.Context(), *tablesP
		if *orgName == "" {
			return usageError{fmt.Errorf("--org is required")}
		}
		actor, err := actorOf()
		if err != nil {
			return err
		}
		cfg, orgs, err := loadOrgs(*path, *orgName)
		if err != nil {
			return err
		}
		org := &orgs[0]
		rng := engine.Range{From: *from, To: *to}
		if !rng.IsZero() && len(tables) != 1 {
			return usageError{fmt.Errorf("--from and --to bound a backfill of one table: give exactly one --table")}
		}
		if len(tables) == 0 {
			for _, t := range org.Tables {
				tables = append(tables, t.Name)
			}
		}
		for _, t := range tables {
			if _, ok := org.Table(t); !ok {
				return usageError{fmt.Errorf("--table %s: org %s has no such table in %s", t, org.Name, *path)}
			}
		}
		service.WarnSources(ctx, orgs, env.log)
		svc, err := service.Open(ctx, cfg, env.log, actor, 1)
		if err != nil {
			return err
		}
		defer svc.Close()
		// Progress goes where the human output goes: stdout, or stderr
		// when stdout is JSON.
		out := env.stdout
		if *asJSON {
			out = env.stderr
		}
		lines := &backfillLines{w: out, m: env.meter(*noProgress)}
		b := svc.Backfills(backfill.Options{Log: env.log, WaitForLease: true, Progress: lines.show})
		if !rng.IsZero() {
			if err := b.CheckRange(org, tables[0], rng); err != nil {
				return usageError{err}
			}
		}
		run := engine.OrgResult{Org: org.Name}
		var failed []string
		for _, t := range tables {
			res, err := b.Backfill(ctx, org, t, rng, actor)
			lines.end()
			if err != nil {
				res = engine.TableResult{Org: org.Name, Table: t, Err: err}
			}
			run.Tables = append(run.Tables, res)
			if res.Err != nil {
				if !*asJSON {
					fmt.Fprintf(env.stdout, "%s %s: failed: %v\n", org.Name, t, res.Err)
				}
				failed = append(failed, t)
				if ctx.Err() != nil {
					break
				}
			}
		}
		if *asJSON {
			if err := printJSON(env, summarize([]engine.OrgResult{run})); err != nil {
				return err
			}
		}
		if len(failed) > 0 {
			return fmt.Errorf("backfill of %d tables failed: %s (run it again to resume)", len(failed), strings.Join(failed, ", "))
		}
		return nil
	}
	return c
}
