package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/watermarks"
)

func init() {
	commands["positions"] = command{summary: "list, show, reset or rewind tables' sync positions", run: runPositions}
}

const positionsUsage = "list|show|reset --config FILE [--org NAME] [--table NAME] ..."

func runPositions(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("positions: want a subcommand: list, show or reset")}
	}
	sub, args := args[0], args[1:]
	fs := newFlags(env, "positions", positionsUsage)
	path := fs.String("config", "", "configuration file (YAML)")
	org := fs.String("org", "", "organization")
	table := fs.String("table", "", "table (qualified name, e.g. dbo.claims)")
	asJSON := fs.Bool("json", false, "JSON output (list, show)")
	limit := fs.Int("history", 20, "show: history entries to print (0: all)")
	to := fs.String("to", "", "reset: rewind to this position (JSON, as printed by show --json); empty: remove the position (full re-sync next run)")
	confirm := fs.String("confirm", "", "reset: repeat ORG/TABLE to confirm")
	note := fs.String("note", "", "reset: why, recorded in the history")
	actor := fs.String("actor", osUser(), "reset: who, recorded in the history and audit (default: the operating-system user)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch sub {
	case "list":
	case "show", "reset":
		if *org == "" || *table == "" {
			return usageError{fmt.Errorf("positions %s needs --org and --table", sub)}
		}
	default:
		return usageError{fmt.Errorf("positions: unknown subcommand %q (want list, show or reset)", sub)}
	}
	var target watermarks.Position
	if sub == "reset" {
		if *confirm != *org+"/"+*table {
			return usageError{fmt.Errorf("positions reset: add --confirm %s/%s", *org, *table)}
		}
		if *actor == "" {
			return usageError{fmt.Errorf("--actor: empty")}
		}
		if *to != "" {
			p, err := watermarks.Decode([]byte(*to))
			if err != nil {
				return usageError{fmt.Errorf("--to: %w", err)}
			}
			target = p
		}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	svc, err := service.Open(ctx, cfg, env.log, "positions", 1)
	if err != nil {
		return err
	}
	defer svc.Close()
	switch sub {
	case "list":
		entries, err := svc.Positions.List(ctx, *org)
		if *asJSON {
			if jerr := printJSON(env, entries); jerr != nil {
				return jerr
			}
			return err
		}
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ORG\tTABLE\tKIND\tPOSITION\tUPDATED\tBY")
		for _, e := range entries {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Org, e.Table, e.Position.Kind(), e.Position, e.UpdatedAt.Format(time.RFC3339), e.UpdatedBy)
		}
		if ferr := tw.Flush(); ferr != nil {
			return ferr
		}
		return err
	case "show":
		pos, err := svc.Positions.Load(ctx, *org, *table)
		if err != nil {
			return err
		}
		hist, err := svc.Positions.History(ctx, *org, *table, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, map[string]any{"org": *org, "table": *table, "position": pos, "history": hist})
		}
		fmt.Fprintf(env.stdout, "%s %s: %s\n\nhistory (newest first):\n", *org, *table, positionText(pos))
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tREASON\tACTOR\tROWS\tTO\tNOTE")
		for _, h := range hist {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", h.At.Format(time.RFC3339), h.Reason, h.Actor, h.Rows, positionText(h.To), h.Note)
		}
		return tw.Flush()
	}
	// reset: under the table's lease, so no run is between chunks of it.
	q := *table
	if t, ok := svc.Engine.Catalog.Table(*table); ok {
		q = t.QualifiedName()
	}
	lctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	unlock, err := svc.Leases.Wait(lctx, *org, q, time.Second, func() {
		fmt.Fprintf(env.stderr, "waiting for %s %s's lease: a sync of it is running\n", *org, q)
	})
	if err != nil {
		return err
	}
	defer unlock()
	from, _ := svc.Positions.Load(ctx, *org, q)
	what := "reset"
	if target != nil {
		what = "rewind"
	}
	if *note == "" {
		*note = what + " with ehrsync positions reset"
	}
	err = svc.Positions.Reset(ctx, *org, q, target, *actor, *note)
	rec := audit.Record{Actor: *actor, Action: audit.ActionAdmin, What: what, Org: *org, Table: q, From: from, To: target, Outcome: "ok"}
	if err != nil {
		rec.Outcome, rec.ErrorClass = "failed", daemon.Class(err)
	}
	if aerr := svc.Audit.Write(ctx, rec); aerr != nil {
		if err != nil {
			return fmt.Errorf("%w; and %w", err, aerr)
		}
		return fmt.Errorf("%s %s: %s done, but not audited: %w", *org, q, what, aerr)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s %s: %s: %s -> %s\n", *org, q, what, positionText(from), positionText(target))
	return nil
}

func printJSON(env *environment, v any) error {
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
