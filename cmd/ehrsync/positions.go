package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/terminal"
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
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", terminal.Escape(e.Org), terminal.Escape(e.Table), e.Position.Kind(),
				positionText(e.Position), e.UpdatedAt.Format(time.RFC3339), terminal.Escape(e.UpdatedBy))
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
		// The full positions, key and cursor values included: show is the
		// one place they are printed (an operator's terminal, never a log).
		fmt.Fprintf(env.stdout, "%s %s: %s\n\nhistory (newest first):\n", terminal.Escape(*org), terminal.Escape(*table), positionDetail(pos))
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tREASON\tACTOR\tROWS\tTO\tNOTE")
		for _, h := range hist {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", h.At.Format(time.RFC3339), terminal.Escape(string(h.Reason)), terminal.Escape(h.Actor), h.Rows,
				positionDetail(h.To), terminal.Escape(h.Note))
		}
		return tw.Flush()
	}
	// reset: under the table's lease, so no run is between chunks of it,
	// as the admin API does (one daemon.Resetter for both).
	o, err := daemon.FindOrg(cfg.Orgs, *org)
	if err != nil {
		return usageError{fmt.Errorf("--org: %w in %s", err, *path)}
	}
	r := &daemon.Resetter{Positions: svc.Positions, Leases: svc.Leases, Audit: svc.Audit, Catalog: svc.Engine.Catalog()}
	res, err := r.Reset(ctx, daemon.ResetRequest{Org: o, Table: *table, To: target, Actor: *actor, Note: *note,
		Via: "ehrsync positions reset", Waiting: func() {
			fmt.Fprintf(env.stderr, "waiting for %s %s's lease: a sync of it is running\n", terminal.Escape(o.Name), terminal.Escape(*table))
		}})
	if errors.Is(err, daemon.ErrUnknownTable) {
		return usageError{fmt.Errorf("--table: %w", err)}
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "%s %s: %s: %s -> %s\n", terminal.Escape(res.Org), terminal.Escape(res.Table), res.What,
		positionText(res.From), positionText(res.To))
	return nil
}

// positionDetail is a position with its key and cursor values, escaped
// for a terminal: for positions show only.
func positionDetail(p watermarks.Position) string {
	if p == nil {
		return "-"
	}
	return terminal.Escape(p.Detail())
}

func printJSON(env *environment, v any) error {
	enc := json.NewEncoder(env.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
