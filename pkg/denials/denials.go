// Package denials defines what a denied claim line is (DOMAIN.md §4) as SQL
// over the NextGen denied-claims tables, and keeps a denied_claim_lines view
// in each organization's store schema so analytics services query denials
// directly.
//
// A denied line is a posted (post_ind = 'Y') payer trans_detail row with
// paid_amt = 0 and a denial-class reason, or with trans_status D, A or R, or
// on a CLP02 = 4 remittance. A denial-class reason is a reason_code_mstr row
// with a denial_category, never PR-1/2/3 (deductible, coinsurance, copay),
// CO-45 (contractual) or OA-23 (prior payer), and never a CR reversal. Rows
// soft-deleted in the store (_ehrsync_deleted) do not count; the check reads
// the column through to_jsonb so the same SQL also runs on a source, which
// has no such column.
package denials

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// ViewName is the view kept in each organization's store schema.
const ViewName = "denied_claim_lines"

// viewVersion changes whenever the view's definition does; Ensure replaces
// an older view.
const viewVersion = "ehrsync denied_claim_lines v1"

// Tables are the tables the definition reads.
var Tables = []string{"reason_code_links", "reason_code_mstr", "trans_detail", "transactions", "charges", "payer_mstr"}

// LinesSQL is a WITH list over the tables in schema that ends in
// denied(claim_id, charge_id, trans_id, payer_id, category): one row per
// denied line (and category) of a claim.
func LinesSQL(schema string) string {
	r := strings.NewReplacer("$s.", pgx.Identifier{schema}.Sanitize()+".")
	return r.Replace(`WITH reasons AS (
    SELECT DISTINCT ON (l.trans_id, l.charge_id) l.trans_id, l.charge_id, m.denial_category
    FROM $s.reason_code_links l
    JOIN $s.reason_code_mstr m ON m.reason_code_id = l.reason_code_id
    WHERE m.denial_category IS NOT NULL
      AND l.group_code <> 'CR'
      AND (l.group_code, m.code) NOT IN (('PR', '1'), ('PR', '2'), ('PR', '3'), ('CO', '45'), ('OA', '23'))
      AND NOT COALESCE((to_jsonb(l) ->> '_ehrsync_deleted')::boolean, false)
    ORDER BY l.trans_id, l.charge_id, l.seq_nbr
),
denied AS (
    SELECT DISTINCT t.claim_id, td.charge_id, td.trans_id, t.payer_id, COALESCE(r.denial_category, 'unspecified') AS category
    FROM $s.trans_detail td
    JOIN $s.transactions t ON t.trans_id = td.trans_id
    LEFT JOIN reasons r ON r.trans_id = td.trans_id AND r.charge_id = td.charge_id
    WHERE td.post_ind = 'Y'
      AND t.payer_id IS NOT NULL
      AND t.claim_id IS NOT NULL
      AND ((td.paid_amt = 0 AND r.denial_category IS NOT NULL)
           OR td.trans_status IN ('D', 'A', 'R')
           OR t.clp_status_code = '4')
      AND NOT COALESCE((to_jsonb(td) ->> '_ehrsync_deleted')::boolean, false)
      AND NOT COALESCE((to_jsonb(t) ->> '_ehrsync_deleted')::boolean, false)
)`)
}

// ViewSQL is the view's query: each denied line with its payer, category,
// billed amount, date of service and practice.
func ViewSQL(schema string) string {
	r := strings.NewReplacer("$s.", pgx.Identifier{schema}.Sanitize()+".")
	return LinesSQL(schema) + r.Replace(`
SELECT d.claim_id, d.charge_id, d.trans_id, d.payer_id, p.payer_name, d.category AS denial_category,
       c.amt AS billed_amt, c.begin_date_of_service, c.practice_id
FROM denied d
LEFT JOIN $s.payer_mstr p ON p.payer_id = d.payer_id
LEFT JOIN $s.charges c ON c.charge_id = d.charge_id`)
}

// Views keeps the view in the store's organization schemas.
type Views struct{ Pool *pgxpool.Pool }

// Ensure creates or replaces the view in schema when every table it reads
// is there, and reports whether the view exists afterwards. A schema that
// lacks a table (an organization that does not sync it) gets no view.
func (v Views) Ensure(ctx context.Context, schema string) (bool, error) {
	pool := v.Pool
	names := make([]string, len(Tables))
	for i, t := range Tables {
		names[i] = pgx.Identifier{schema, t}.Sanitize()
	}
	view := pgx.Identifier{schema, ViewName}.Sanitize()
	var missing int
	var current *string
	err := pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE to_regclass(n) IS NULL),
		(SELECT obj_description(to_regclass($2), 'pg_class'))
		FROM unnest($1::text[]) n`, names, view).Scan(&missing, &current)
	if err != nil {
		return false, fmt.Errorf("check %s: %w", view, err)
	}
	if missing > 0 {
		return false, nil
	}
	if current != nil && *current == viewVersion {
		return true, nil
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DROP VIEW IF EXISTS "+view); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "CREATE VIEW "+view+" AS "+ViewSQL(schema)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "COMMENT ON VIEW "+view+" IS '"+viewVersion+"'")
		return err
	})
	if err != nil {
		return false, fmt.Errorf("create %s: %w", view, err)
	}
	return true, nil
}
