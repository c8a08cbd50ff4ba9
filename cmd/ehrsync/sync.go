package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/terminal"
	"github.com/ehrsync/ehrsync/watermarks"
)

func init() {
	commands["sync"] = command{summary: "run one pass over every (or the selected) table, then exit; for cron jobs", run: runSync}
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runSync(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "sync", "--config FILE [--org NAME] [--table NAME ...] [--actor NAME]")
	path := fs.String("config", "", "configuration file (YAML)")
	orgName := fs.String("org", "", "sync only this organization")
	var tables stringList
	fs.Var(&tables, "table", "sync only this table (repeatable; needs --org)")
	actor := fs.String("actor", osUser(), "who runs the sync, recorded in the position history and audit (default: the operating-system user)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *actor == "" {
		return usageError{fmt.Errorf("--actor: empty")}
	}
	if len(tables) > 0 && *orgName == "" {
		return usageError{fmt.Errorf("--table needs --org")}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	orgs, err := selectOrgs(cfg, *orgName, *path)
	if err != nil {
		return err
	}
	svc, err := service.Open(ctx, cfg, env.log, *actor, 1)
	if err != nil {
		return err
	}
	defer svc.Close()
	var results []engine.OrgResult
	for i := range orgs {
		results = append(results, svc.Engine.SyncOrg(ctx, &orgs[i], tables))
	}
	return report(env.stdout, results)
}

// report prints one line per table and returns an error naming the failures.
func report(w io.Writer, results []engine.OrgResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tTABLE\tSTRATEGY\tROWS\tINSERTED\tUPDATED\tDELETED\tTIME\tPOSITION\tRESULT")
	var failed []string
	for _, r := range results {
		if r.Err != nil {
			fmt.Fprintf(tw, "%s\t*\t\t\t\t\t\t\t\tfailed: %v\n", r.Org, r.Err)
			failed = append(failed, r.Org)
			continue
		}
		for _, name := range r.Skipped {
			fmt.Fprintf(tw, "%s\t%s\t\t\t\t\t\t\t\tskipped: another runner holds its lease\n", r.Org, name)
		}
		for _, t := range r.Tables {
			result := "ok"
			if t.Err != nil {
				result = "failed: " + t.Err.Error()
				failed = append(failed, r.Org+"/"+t.Table)
			} else if t.Reconciled != nil {
				result = fmt.Sprintf("ok (reconciled: %d keys, %d deleted)", t.Reconciled.SourceKeys, t.Reconciled.Deleted)
			}
			deleted := t.Totals.Deleted
			if t.Reconciled != nil {
				deleted += t.Reconciled.Deleted
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\n", t.Org, t.Table, t.Strategy, t.Totals.Rows,
				t.Totals.Inserted, t.Totals.Updated, deleted, t.Duration.Round(time.Millisecond), positionText(t.To), result)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d failed: %s", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// positionText is a position with its cursor's value and without key
// values (Display), escaped for a terminal.
func positionText(p watermarks.Position) string {
	if p == nil {
		return "-"
	}
	return terminal.Escape(p.Display())
}
