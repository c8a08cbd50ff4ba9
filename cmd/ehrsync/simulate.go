package main

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/microsoft/go-mssqldb" // the sqlserver driver
	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/schemas"
)

func init() { register(simulateCommand) }

func simulateCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use: "simulate --dialect postgres|sqlserver --dsn DSN [--preset small|medium|large] [--days N] [--seed N] [--no-progress]\n" +
			"  ehrsync simulate --dialect sqlserver --dsn DSN [--cdc-tables T,...|none] [--ct-tables T,...|none] [--ct-retention-days N] [--no-snapshot-isolation]\n" +
			"  ehrsync simulate --dialect postgres|sqlserver --print-ddl",
		Short: "create a synthetic NextGen source and drive a denied-claims workload into it",
		Long: "Create the synthetic NextGen schema at a source and drive --days of denied-claims workload into it;\n" +
			"run it again to continue the same simulation. --print-ddl prints the source DDL (with CDC and Change Tracking\n" +
			"for sqlserver) and exits.",
	}
	f := c.Flags()
	dialect := f.String("dialect", "postgres", "source dialect: postgres or sqlserver")
	dsn := f.String("dsn", "", "source connection: a PostgreSQL URL, or a sqlserver:// URL (or set EHRSYNC_SIMULATE_DSN)")
	preset := f.String("preset", string(synth.Small), "workload size when starting a simulation: small, medium or large")
	days := f.Int("days", 1, "simulated days to run")
	seed := f.Uint64("seed", 1, "seed when starting a simulation (a continued one keeps its own)")
	printDDL := f.Bool("print-ddl", false, "print the source DDL (with CDC and Change Tracking for sqlserver) and exit")
	cdcTables := f.String("cdc-tables", "", "sqlserver: comma-separated tables to enable CDC on (default dbo.claims,dbo.reason_code_links; none: no CDC, for an edition or a login without it)")
	ctTables := f.String("ct-tables", "", "sqlserver: comma-separated tables to enable Change Tracking on (default dbo.charges,dbo.transactions,dbo.trans_detail,dbo.reason_code_links; none: no Change Tracking)")
	ctRetention := f.Int("ct-retention-days", 3, "sqlserver: Change Tracking retention in days")
	noSnapshot := f.Bool("no-snapshot-isolation", false, "sqlserver: leave ALLOW_SNAPSHOT_ISOLATION as it is (a login that may not ALTER DATABASE)")
	noProgress := noProgressFlag(c)
	_ = c.RegisterFlagCompletionFunc("dialect", cobra.FixedCompletions([]string{"postgres", "sqlserver"}, cobra.ShellCompDirectiveNoFileComp))
	_ = c.RegisterFlagCompletionFunc("preset", cobra.FixedCompletions([]string{string(synth.Small), string(synth.Medium), string(synth.Large)}, cobra.ShellCompDirectiveNoFileComp))
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		if *ctRetention <= 0 {
			return usageError{fmt.Errorf("--ct-retention-days: %d is not a positive number of days", *ctRetention)}
		}
		msOpts := synth.SQLServerOptions{CDCTables: tableList(*cdcTables), CTTables: tableList(*ctTables),
			CTRetentionDays: *ctRetention, NoSnapshotIsolation: *noSnapshot}
		if *dialect != "sqlserver" && (*cdcTables != "" || *ctTables != "" || *noSnapshot) {
			return usageError{errors.New("--cdc-tables, --ct-tables and --no-snapshot-isolation apply to --dialect sqlserver only")}
		}
		cat := schemas.NextGen()
		if *printDDL {
			var ddl string
			var err error
			switch *dialect {
			case "sqlserver":
				ddl, err = synth.SQLServerDDL(cat, msOpts)
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
			*dsn = os.Getenv("EHRSYNC_SIMULATE_DSN")
		}
		if *dsn == "" {
			return usageError{errors.New("--dsn (or EHRSYNC_SIMULATE_DSN) is required: the source database to create and write to")}
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
			stmts, err := synth.SQLServerStatements(cat, msOpts)
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
		w, endProgress := simulateProgress(w, env.meter(*noProgress), *days)
		stats, st, err := synth.Simulate(ctx, w, synth.Options{Preset: synth.Preset(*preset), Seed: *seed, Catalog: cat}, *days)
		if errors.Is(err, synth.ErrOtherSimulation) {
			// The source continues its own simulation; --preset and --seed
			// only choose how a new one starts.
			stats, st, err = synth.Simulate(ctx, w, synth.Options{Catalog: cat}, *days)
		}
		endProgress()
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
	return c
}

// tableList reads a --cdc-tables or --ct-tables value: nil (the default
// tables) when empty, an empty list for "none".
func tableList(v string) []string {
	v = strings.TrimSpace(v)
	switch {
	case v == "":
		return nil
	case strings.EqualFold(v, "none"):
		return []string{}
	}
	var out []string
	for _, name := range strings.Split(v, ",") {
		if name = strings.TrimSpace(name); name != "" {
			out = append(out, name)
		}
	}
	return out
}
