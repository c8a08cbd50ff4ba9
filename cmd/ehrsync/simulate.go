package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/microsoft/go-mssqldb" // the sqlserver driver

	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/schemas"
)

func init() {
	commands["simulate"] = command{summary: "create a synthetic NextGen source and drive a denied-claims workload into it", run: runSimulate}
}

func runSimulate(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "simulate", "--dialect postgres|sqlserver --dsn DSN [--preset small|medium|large] [--days N] [--seed N] | --dialect sqlserver --print-ddl")
	dialect := fs.String("dialect", "postgres", "source dialect: postgres or sqlserver")
	dsn := fs.String("dsn", "", "source connection: a PostgreSQL URL, or a sqlserver:// URL (or set EHRSYNC_SIMULATE_DSN)")
	preset := fs.String("preset", string(synth.Small), "workload size when starting a simulation: small, medium or large")
	days := fs.Int("days", 1, "simulated days to run")
	seed := fs.Uint64("seed", 1, "seed when starting a simulation (a continued one keeps its own)")
	printDDL := fs.Bool("print-ddl", false, "print the source DDL (with CDC and Change Tracking for sqlserver) and exit")
	if err := parse(fs, args); err != nil {
		return err
	}
	cat := schemas.NextGen()
	if *printDDL {
		var ddl string
		var err error
		switch *dialect {
		case "sqlserver":
			ddl, err = synth.SQLServerDDL(cat, synth.SQLServerOptions{})
		case "postgres":
			ddl, err = synth.PostgresDDL(cat)
		default:
			return usageError{fmt.Errorf("--dialect: unknown dialect %q (want postgres or sqlserver)", *dialect)}
		}
		if err != nil {
			return err
		}
		fmt.Fprint(env.stdout, ddl)
		return nil
	}
	if *dsn == "" {
		return usageError{errors.New("--dsn is required (the source database to create and write to)")}
	}
	var w synth.Writer
	switch *dialect {
	case "postgres":
		pool, err := pgxpool.New(ctx, *dsn)
		if err != nil {
			return fmt.Errorf("--dsn: not a valid PostgreSQL URL")
		}
		defer pool.Close()
		if err := synth.CreatePostgres(ctx, pool, cat); err != nil {
			return err
		}
		w = synth.NewPostgresWriter(pool, "dbo")
	case "sqlserver":
		db, err := sql.Open("sqlserver", *dsn)
		if err != nil {
			return fmt.Errorf("--dsn: not a valid sqlserver URL")
		}
		defer db.Close()
		stmts, err := synth.SQLServerStatements(cat, synth.SQLServerOptions{})
		if err != nil {
			return err
		}
		for _, s := range stmts {
			if _, err := db.ExecContext(ctx, s); err != nil {
				return fmt.Errorf("create the synthetic source: %w", err)
			}
		}
		w = synth.NewSQLServerWriter(db, "dbo")
	default:
		return usageError{fmt.Errorf("--dialect: unknown dialect %q (want postgres or sqlserver)", *dialect)}
	}
	start := time.Now()
	stats, st, err := synth.Simulate(ctx, w, synth.Options{Preset: synth.Preset(*preset), Seed: *seed, Catalog: cat}, *days)
	if errors.Is(err, synth.ErrOtherSimulation) {
		// The source continues its own simulation; --preset and --seed
		// only choose how a new one starts.
		stats, st, err = synth.Simulate(ctx, w, synth.Options{Catalog: cat}, *days)
	}
	if err != nil {
		return err
	}
	names := make([]string, 0, len(stats.Tables))
	for n := range stats.Tables {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := stats.Tables[n]
		fmt.Fprintf(env.stdout, "%-20s %8d inserts %8d updates %6d deletes\n", n, c.Inserts, c.Updates, c.Deletes)
	}
	fmt.Fprintf(env.stdout, "%d transactions in %s; the simulation (preset %s, seed %d) is now at day %d\n",
		stats.Batches, time.Since(start).Round(time.Millisecond), st.Options.Preset, st.Options.Seed, st.Day)
	return nil
}
