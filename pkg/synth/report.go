package synth

import (
	"strings"

	"github.com/ehrsync/ehrsync/pkg/denials"
)

// The denied-claims report runs on the store (or directly on a PostgreSQL
// source: the names are the same), with package denials's definition of a
// denied line (DOMAIN.md §4).

// deniedLinesSQL is the one definition of a denied line (package denials).
func deniedLinesSQL(schema string) string { return denials.LinesSQL(schema) }

// DeniedClaimsReportSQL returns a PostgreSQL query over the denied-claims
// tables in schema that reports denials by CARC category and payer name:
// columns denial_category, payer_name, denied_claims, denied_lines (distinct
// claim lines) and denied_amt (their billed amount), most denied claims
// first. A line denied twice counts once per category.
func DeniedClaimsReportSQL(schema string) string {
	r := strings.NewReplacer("$s.", pgIdent(schema)+".")
	return deniedLinesSQL(schema) + r.Replace(`
SELECT d.category AS denial_category,
       COALESCE(p.payer_name, '(unknown payer)') AS payer_name,
       count(DISTINCT d.claim_id) AS denied_claims,
       count(*) AS denied_lines,
       COALESCE(sum(c.amt), 0)::numeric(19,2) AS denied_amt
FROM denied d
LEFT JOIN $s.payer_mstr p ON p.payer_id = d.payer_id
LEFT JOIN $s.charges c ON c.charge_id = d.charge_id
GROUP BY 1, 2
ORDER BY denied_claims DESC, denial_category, payer_name`)
}

// DenialRateSQL returns a PostgreSQL query over the tables in schema with
// one row: adjudicated_claims (claims with a posted ERA), denied_claims
// (claims with a denied line) and denial_rate (their ratio, 0 when none).
func DenialRateSQL(schema string) string {
	r := strings.NewReplacer("$s.", pgIdent(schema)+".")
	return deniedLinesSQL(schema) + r.Replace(`,
adjudicated AS (
    SELECT DISTINCT t.claim_id
    FROM $s.transactions t
    WHERE t.post_ind = 'Y' AND t.era_post_ind = 'Y' AND t.payer_id IS NOT NULL AND t.claim_id IS NOT NULL
      AND NOT COALESCE((to_jsonb(t) ->> '_ehrsync_deleted')::boolean, false)
),
counts AS (
    SELECT (SELECT count(*) FROM adjudicated) AS adjudicated_claims,
           (SELECT count(DISTINCT claim_id) FROM denied) AS denied_claims
)
SELECT adjudicated_claims, denied_claims,
       CASE WHEN adjudicated_claims = 0 THEN 0
            ELSE round(denied_claims::numeric / adjudicated_claims, 4) END AS denial_rate
FROM counts`)
}
