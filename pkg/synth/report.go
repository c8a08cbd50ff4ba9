package synth

import "strings"

// The denied-claims report runs on the store (or directly on a PostgreSQL
// source: the names are the same). It follows DOMAIN.md §4: a denied line
// is a posted payer trans_detail row with paid_amt = 0 and a denial-class
// reason, or with trans_status D, A or R, or on a CLP02 = 4 remittance; a
// denial-class reason is a reason_code_mstr row with a denial_category,
// never PR-1/2/3, CO-45 or OA-23, and never a CR reversal. Rows the store
// soft-deleted (an _ehrsync_deleted column that is true) are left out; the
// check reads the column through to_jsonb so the queries also run on tables
// without it.

// deniedLinesSQL is the WITH list that ends in denied(claim_id, charge_id,
// payer_id, category), one row per denied line of a claim.
func deniedLinesSQL(schema string) string {
	r := strings.NewReplacer("$s.", pgIdent(schema)+".")
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
    SELECT DISTINCT t.claim_id, td.charge_id, t.payer_id, COALESCE(r.denial_category, 'unspecified') AS category
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
