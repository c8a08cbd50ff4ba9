package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/pkg/verify"
	"github.com/ehrsync/ehrsync/schemas"
)

// reportRows is how many (category, payer) lines the report shows.
const reportRows = 12

// printReport prints a small denied-claims report, read from the store.
func printReport(ctx context.Context, out io.Writer, store *pgxpool.Pool, schema string) error {
	var claims, denied int64
	var rate float64
	if err := store.QueryRow(ctx, "SELECT adjudicated_claims, denied_claims, denial_rate::float8 FROM ("+synth.DenialRateSQL(schema)+") r").
		Scan(&claims, &denied, &rate); err != nil {
		return fmt.Errorf("denial rate from the store: %w", err)
	}
	fmt.Fprintf(out, "\nDenied claims in the store: %d of %d adjudicated claims (%.1f%%). Top denial categories and payers:\n",
		denied, claims, 100*rate)
	rows, err := store.Query(ctx, "SELECT denial_category, payer_name, denied_claims, denied_lines, denied_amt::text FROM ("+
		synth.DeniedClaimsReportSQL(schema)+") r LIMIT $1", reportRows)
	if err != nil {
		return fmt.Errorf("denied-claims report from the store: %w", err)
	}
	defer rows.Close()
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  CARC category\tpayer\tclaims\tlines\tbilled $")
	for rows.Next() {
		var category, payer, amount string
		var nClaims, nLines int64
		if err := rows.Scan(&category, &payer, &nClaims, &nLines, &amount); err != nil {
			return err
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%d\t%s\n", category, payer, nClaims, nLines, amount)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("denied-claims report from the store: %w", err)
	}
	return tw.Flush()
}

// verifyStore compares every configured table between source and store and
// returns the rows compared, or an error naming the tables that differ.
func verifyStore(ctx context.Context, src, store *pgxpool.Pool, org *config.Org, cat *schemas.Catalog) (int64, error) {
	diffs, err := verify.Org(ctx, src, store, org, cat, nil, nil)
	if err != nil {
		return 0, err
	}
	var rows int64
	var problems []error
	for _, d := range diffs {
		rows += d.SourceRows
		if !d.Equal() {
			problems = append(problems, errors.New(d.String()))
		}
	}
	return rows, errors.Join(problems...)
}

// printLake says what the change lake holds and how to read the claims'
// status history from it with DuckDB.
func printLake(ctx context.Context, out io.Writer, svc *service.Service, org *config.Org) error {
	if svc.Lake == nil {
		return nil
	}
	var tables, rows int64
	if err := svc.Store.QueryRow(ctx, "SELECT count(*), coalesce(sum(rows), 0) FROM ehrsync.lake_tables WHERE org = $1", org.Name).Scan(&tables, &rows); err != nil {
		return fmt.Errorf("read the lake's tables: %w", err)
	}
	claims, ok := svc.Engine.Catalog().Table("dbo.claims")
	if !ok {
		return nil
	}
	st, err := svc.Lake.State(ctx, engine.LakeTable(org.Name, claims))
	if err != nil {
		return err
	}
	if !st.Exists {
		return fmt.Errorf("the change lake has no claims table")
	}
	meta := strings.TrimPrefix(st.MetadataLocation, "file://")
	fmt.Fprintf(out, "\nChange lake (Apache Iceberg): %d tables, %d change rows, each committed once with the store; files in %s.\n",
		tables, rows, strings.TrimPrefix(svc.Lake.Warehouse(), "file://"))
	fmt.Fprintf(out, "A denied claim's status history, in DuckDB (INSTALL iceberg; LOAD iceberg;):\n"+
		"  SELECT claim_id_nbr, status, _ehrsync_op, _ehrsync_committed_at\n"+
		"  FROM iceberg_scan('%s')\n"+
		"  WHERE claim_id_nbr IN (SELECT claim_id_nbr FROM iceberg_scan('%s') WHERE status = 'denied' LIMIT 5)\n"+
		"  ORDER BY claim_id_nbr, _ehrsync_batch, _ehrsync_seq;\n", meta, meta)
	return nil
}
