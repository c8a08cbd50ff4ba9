package main

import (
	"context"
	"errors"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/terminal"
	"github.com/ehrsync/ehrsync/watermarks"
)

func init() { register(positionsCommand) }

func positionsCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "positions",
		Short: "list, show, reset or rewind tables' sync positions",
		Long: "Read and move tables' sync positions in the store. show is the one place a position's key and cursor values\n" +
			"are printed; reset removes a position (a full re-sync next run) or rewinds it, under the table's lease.",
	}
	c.AddCommand(positionsList(env), positionsShow(env), positionsReset(env))
	return c
}

// openPositions loads the configuration at path and opens the store.
func openPositions(ctx context.Context, env *environment, path string) (*config.Config, *service.Service, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return nil, nil, err
	}
	svc, err := service.Open(ctx, cfg, env.log, "positions", 1)
	if err != nil {
		return nil, nil, err
	}
	return cfg, svc, nil
}

func positionsList(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "list --config FILE [--org NAME] [--json]",
		Short: "list the saved positions of every table (of --org's tables)",
	}
	path, org, asJSON := configFlag(c), orgFlag(c), jsonFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		_, svc, err := openPositions(ctx, env, *path)
		if err != nil {
			return err
		}
		defer svc.Close()
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
	}
	return c
}

func positionsShow(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "show --config FILE --org NAME --table NAME [--history N] [--json]",
		Short: "show a table's position, key and cursor values included, and its history",
	}
	path, org, tables, asJSON := configFlag(c), orgFlag(c), tablesFlag(c), jsonFlag(c)
	limit := c.Flags().Int("history", 20, "history entries to print (0: all)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		table, err := oneTable("positions show", *org, *tables)
		if err != nil {
			return err
		}
		_, svc, err := openPositions(ctx, env, *path)
		if err != nil {
			return err
		}
		defer svc.Close()
		pos, err := svc.Positions.Load(ctx, *org, table)
		if err != nil {
			return err
		}
		hist, err := svc.Positions.History(ctx, *org, table, *limit)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(env, map[string]any{"org": *org, "table": table, "position": pos, "history": hist})
		}
		// The full positions, key and cursor values included: show is the
		// one place they are printed (an operator's terminal, never a log).
		fmt.Fprintf(env.stdout, "%s %s: %s\n\nhistory (newest first):\n", terminal.Escape(*org), terminal.Escape(table), positionDetail(pos))
		tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "AT\tREASON\tACTOR\tROWS\tTO\tNOTE")
		for _, h := range hist {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", h.At.Format(time.RFC3339), terminal.Escape(string(h.Reason)), terminal.Escape(h.Actor), h.Rows,
				positionDetail(h.To), terminal.Escape(h.Note))
		}
		return tw.Flush()
	}
	return c
}

func positionsReset(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "reset --config FILE --org NAME --table NAME --confirm ORG/TABLE [--to POSITION] [--note TEXT] [--actor NAME]",
		Short: "remove a table's position (a full re-sync next run) or rewind it (--to), under the table's lease",
	}
	path, org, tables, actorOf := configFlag(c), orgFlag(c), tablesFlag(c), actorFlag(c)
	to := c.Flags().String("to", "", "rewind to this position (JSON, as printed by show --json); empty: remove the position (full re-sync next run)")
	confirm := c.Flags().String("confirm", "", "repeat ORG/TABLE to confirm")
	note := c.Flags().String("note", "", "why, recorded in the history")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		table, err := oneTable("positions reset", *org, *tables)
		if err != nil {
			return err
		}
		if *confirm != *org+"/"+table {
			return usageError{fmt.Errorf("positions reset: add --confirm %s/%s", *org, table)}
		}
		actor, err := actorOf()
		if err != nil {
			return err
		}
		var target watermarks.Position
		if *to != "" {
			p, err := watermarks.Decode([]byte(*to))
			if err != nil {
				return usageError{fmt.Errorf("--to: %w", err)}
			}
			target = p
		}
		cfg, svc, err := openPositions(ctx, env, *path)
		if err != nil {
			return err
		}
		defer svc.Close()
		// Under the table's lease, so no run is between chunks of it, as
		// the admin API does (one daemon.Resetter for both).
		o, err := daemon.FindOrg(cfg.Orgs, *org)
		if err != nil {
			return usageError{fmt.Errorf("--org: %w in %s", err, *path)}
		}
		r := &daemon.Resetter{Positions: svc.Positions, Leases: svc.Leases, Audit: svc.Audit, Catalog: svc.Engine.Catalog()}
		res, err := r.Reset(ctx, daemon.ResetRequest{Org: o, Table: table, To: target, Actor: actor, Note: *note,
			Via: "ehrsync positions reset", Waiting: func() {
				fmt.Fprintf(env.stderr, "waiting for %s %s's lease: a sync of it is running\n", terminal.Escape(o.Name), terminal.Escape(table))
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
	return c
}

// positionDetail is a position with its key and cursor values, escaped
// for a terminal: for positions show only.
func positionDetail(p watermarks.Position) string {
	if p == nil {
		return "-"
	}
	return terminal.Escape(p.Detail())
}
