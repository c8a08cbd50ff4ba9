package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/terminal"
	"github.com/ehrsync/ehrsync/pkg/verify"
)

func init() { register(verifyCommandTree) }

// verifyOptions is `ehrsync verify`'s command line.
type verifyOptions struct {
	Config     string
	Org        string
	Tables     []string
	JSON       bool
	NoProgress bool
}

func verifyCommandTree(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "verify --config FILE --org NAME [--table NAME ...] [--json] [--no-progress]",
		Short: "compare an organization's tables row by row between its PostgreSQL source and the store; exit 1 on any difference",
		Long: "Compare the organization's tables (every one, or --table's) row by row between its source and the store,\n" +
			"as sync reads them (column allow-lists, practices), with progress on a terminal. The report gives counts per\n" +
			"table (rows, missing, extra, different), never values. Exit 1 on any difference. PostgreSQL sources only.",
	}
	path, org, tables, asJSON := configFlag(c), orgFlag(c), tablesFlag(c), jsonFlag(c)
	noProgress := noProgressFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		return verifyCommand(c.Context(), env, verifyOptions{Config: *path, Org: *org, Tables: *tables, JSON: *asJSON, NoProgress: *noProgress})
	}
	return c
}

// errDiffer is verify's failure when tables differ: the report says which.
var errDiffer = errors.New("the store differs from the source")

// verifyCommand compares the organization's tables between its source and
// the store, with progress on stderr when it is a terminal, and prints a
// report per table: rows compared, missing, extra and different, counts
// only. Any difference fails it.
func verifyCommand(ctx context.Context, env *environment, o verifyOptions) error {
	if o.Org == "" {
		return usageError{errors.New("--org is required")}
	}
	cfg, err := loadConfig(o.Config)
	if err != nil {
		return err
	}
	org, ok := cfg.Org(o.Org)
	if !ok {
		return usageError{fmt.Errorf("--org %s: no such organization in %s", o.Org, o.Config)}
	}
	for _, t := range o.Tables {
		if _, ok := org.Table(t); !ok {
			return usageError{fmt.Errorf("--table %s: org %s has no such table in %s", t, org.Name, o.Config)}
		}
	}
	if org.Source.Dialect != config.Postgres {
		return fmt.Errorf("--org %s: %w; its source is %s (the row-by-row comparison renders both sides with PostgreSQL)",
			org.Name, verify.ErrNotPostgres, org.Source.Dialect)
	}
	catalog, err := service.Catalog(cfg)
	if err != nil {
		return err
	}
	service.WarnSources(ctx, []config.Org{*org}, env.log)
	store, err := service.StorePool(ctx, cfg, env.log)
	if err != nil {
		return err
	}
	defer store.Close()
	db, err := source.Open(ctx, org.Source)
	if err != nil {
		return err
	}
	defer db.Close()

	var progress func(table string, i, n int, rows int64)
	if m := env.meter(o.NoProgress); m != nil {
		running := ""
		progress = func(table string, i, n int, rows int64) {
			name := org.Name + " " + table
			if running != "" && running != name {
				m.Finish(running)
			}
			running = name
			m.Update(terminal.Progress{Name: name, Step: fmt.Sprintf("table %d of %d", i, n), Rows: rows})
		}
		defer func() {
			if running != "" {
				m.Finish(running)
			}
		}()
	}
	var diffs []verify.Diff
	err = verify.WithConn(ctx, db, func(src verify.Querier) error {
		var err error
		diffs, err = verify.Org(ctx, src, store, org, catalog, o.Tables, progress)
		return err
	})
	if err != nil {
		return err
	}
	if o.JSON {
		err = printJSON(env, map[string]any{"org": org.Name, "tables": diffs, "equal": differing(diffs) == nil})
	} else {
		err = verifyReport(env.stdout, org.Name, diffs)
	}
	if err != nil {
		return err
	}
	if d := differing(diffs); d != nil {
		return fmt.Errorf("%w: %d of %d tables: %s", errDiffer, len(d), len(diffs), strings.Join(d, ", "))
	}
	return nil
}

// differing names the tables whose store differs from the source.
func differing(diffs []verify.Diff) []string {
	var out []string
	for _, d := range diffs {
		if !d.Equal() {
			out = append(out, terminal.Escape(d.Table))
		}
	}
	return out
}

// verifyReport prints one line per table and a total.
func verifyReport(w io.Writer, org string, diffs []verify.Diff) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tTABLE\tSOURCE ROWS\tSTORE ROWS\tMISSING\tEXTRA\tDIFFERENT\tRESULT")
	var rows int64
	for _, d := range diffs {
		result := "equal"
		if !d.Equal() {
			result = "DIFFERS"
		}
		rows += d.SourceRows
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", terminal.Escape(org), terminal.Escape(d.Table),
			d.SourceRows, d.StoreRows, d.Missing, d.Extra, d.Changed, result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	n := len(differing(diffs))
	verdict := "the store equals the source"
	if n > 0 {
		verdict = fmt.Sprintf("%d differ", n)
	}
	_, err := fmt.Fprintf(w, "\n%d source rows compared in %d table(s): %s\n", rows, len(diffs), verdict)
	return err
}
