package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/ehrsync/ehrsync/pkg/backfill"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/service"
)

func init() {
	commands["backfill"] = command{summary: "re-snapshot an organization's tables (all, or --table; or one table's key range with --from/--to), beside the daemon, resumable", run: runBackfill}
}

func runBackfill(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "backfill", "--config FILE --org NAME [--table NAME ...] [--from KEY] [--to KEY] [--actor NAME]")
	path := fs.String("config", "", "configuration file (YAML)")
	orgName := fs.String("org", "", "the organization (required)")
	var tables stringList
	fs.Var(&tables, "table", "backfill only this table (repeatable; default: every table of the org)")
	from := fs.String("from", "", "backfill only the rows whose primary key is >= KEY (needs exactly one --table): one value per key column, "+
		"comma-separated, in the column's type (42, 6f9619ff-8b86-d011-b42d-00c04fc964ff, 2026-11-01T08:30:00, -12.50). "+
		"The table's sync position is not moved; the range is re-read and upserted, and rows deleted at the source within it are removed "+
		"where the store orders the key as the source does (numbers, dates, times; uuids from a PostgreSQL source). "+
		"Ranges are on the primary key whatever the table's strategy: cursor ranges are not supported")
	to := fs.String("to", "", "backfill only the rows whose primary key is <= KEY (as --from; either bound may be left out)")
	actor := fs.String("actor", osUser(), "who runs the backfill, recorded in the position history and audit (default: the operating-system user)")
	noProgress := noProgressFlag(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	if *orgName == "" {
		return usageError{fmt.Errorf("--org is required")}
	}
	if *actor == "" {
		return usageError{fmt.Errorf("--actor: empty")}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	org, ok := cfg.Org(*orgName)
	if !ok {
		return usageError{fmt.Errorf("--org %s: no such organization in %s", *orgName, *path)}
	}
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
	svc, err := service.Open(ctx, cfg, env.log, *actor, 1)
	if err != nil {
		return err
	}
	defer svc.Close()
	lines := &backfillLines{w: env.stdout, m: env.meter(*noProgress)}
	b := svc.Backfills(backfill.Options{Log: env.log, WaitForLease: true, Progress: lines.show})
	if !rng.IsZero() {
		if err := b.CheckRange(org, tables[0], rng); err != nil {
			return usageError{err}
		}
	}
	var failed []string
	for _, t := range tables {
		res, err := b.Backfill(ctx, org, t, rng, *actor)
		lines.end()
		if err == nil {
			err = res.Err
		}
		if err != nil {
			fmt.Fprintf(env.stdout, "%s %s: failed: %v\n", org.Name, t, err)
			failed = append(failed, t)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("backfill of %d tables failed: %s (run it again to resume)", len(failed), strings.Join(failed, ", "))
	}
	return nil
}
