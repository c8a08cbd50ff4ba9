package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/terminal"
	"github.com/ehrsync/ehrsync/watermarks"
)

func init() { register(syncCommand) }

func syncCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "sync --config FILE [--org NAME [--table NAME ...]] [--actor NAME] [--json] [--no-progress]",
		Short: "run one pass over every (or the selected) table, then exit; for cron jobs",
		Long: "Run one pass over every table of every organization, or of --org (only its --table tables when given), then exit:\n" +
			"0 when every table synced, 1 naming the failures. It prints one line per table, or with --json a summary:\n" +
			"per organization and table the strategy, rows, inserted, updated, deleted, duration, result, error class\n" +
			"and the position's summary (never key values).",
	}
	path, orgName, tables, actorOf, asJSON := configFlag(c), orgFlag(c), tablesFlag(c), actorFlag(c), jsonFlag(c)
	noProgress := noProgressFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		actor, err := actorOf()
		if err != nil {
			return err
		}
		if len(*tables) > 0 && *orgName == "" {
			return usageError{fmt.Errorf("--table needs --org")}
		}
		cfg, orgs, err := loadOrgs(*path, *orgName)
		if err != nil {
			return err
		}
		ctx := c.Context()
		service.WarnSources(ctx, orgs, env.log)
		svc, err := service.Open(ctx, cfg, env.log, actor, 1)
		if err != nil {
			return err
		}
		defer svc.Close()
		var results []engine.OrgResult
		for i := range orgs {
			results = append(results, svc.Engine.RunOrg(ctx, &orgs[i], engine.OrgRun{Tables: *tables, Progress: syncProgress(env.meter(*noProgress))}))
		}
		if *asJSON {
			err = printJSON(env, summarize(results))
		} else {
			err = report(env.stdout, results)
		}
		if err != nil {
			return err
		}
		return failures(results)
	}
	return c
}

// report prints one line per table.
func report(w io.Writer, results []engine.OrgResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tTABLE\tSTRATEGY\tROWS\tINSERTED\tUPDATED\tDELETED\tTIME\tPOSITION\tRESULT")
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t*\t\t\t\t\t\t\t\tfailed: %v\n", r.Org, r.Err)
			continue
		}
		for _, name := range r.Skipped {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\tskipped: another runner holds its lease\n", r.Org, name)
		}
		for _, t := range r.Tables {
			result := "ok"
			if t.Err != nil {
				result = tableOutcome(t.Err) + ": " + t.Err.Error()
			} else if t.Reconciled != nil {
				result = fmt.Sprintf("ok (reconciled: %d keys, %d deleted)", t.Reconciled.SourceKeys, t.Reconciled.Deleted)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", t.Org, t.Table, t.Strategy, t.Totals.Rows,
				t.Totals.Inserted, t.Totals.Updated, deleted(t), t.Duration.Round(time.Millisecond), positionText(t.To), result)
		}
	}
	return tw.Flush()
}

// failures is an error naming the organizations and tables that failed;
// nil when none did.
func failures(results []engine.OrgResult) error {
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			failed = append(failed, r.Org)
			continue
		}
		for _, t := range r.Tables {
			if t.Err != nil {
				failed = append(failed, r.Org+"/"+t.Table)
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// deleted counts a table run's deleted rows, its reconciliation's
// included.
func deleted(t engine.TableResult) int64 {
	n := t.Totals.Deleted
	if t.Reconciled != nil {
		n += t.Reconciled.Deleted
	}
	return n
}

// positionText is a position with its cursor's value and without key
// values (Display), escaped for a terminal.
func positionText(p watermarks.Position) string {
	if p == nil {
		return "-"
	}
	return terminal.Escape(p.Display())
}
