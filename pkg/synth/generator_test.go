package synth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/schemas"
)

func count(t *testing.T, pool *pgxpool.Pool, query string, args ...any) int64 {
	t.Helper()
	var n int64
	require.NoError(t, pool.QueryRow(context.Background(), query, args...).Scan(&n), query)
	return n
}

// TestGenerated checks a 45-day small run against DOMAIN.md.
func TestGenerated(t *testing.T) {
	if testing.Short() {
		t.Skip("long (populates simulated days and checks every table): runs without -short")
	}
	const days = 45
	opts := Options{Preset: Small, Seed: 42}
	pool, st := populated(t, opts, days)
	ctx := context.Background()
	lastDay := ymd(DefaultStart.AddDate(0, 0, days-1))

	zero := []struct {
		name, query string
		args        []any
	}{
		{"payments are negative", `SELECT count(*) FROM dbo.transactions WHERE type = 'C' AND tran_amt > 0`, nil},
		{"adjustments are negative", `SELECT count(*) FROM dbo.transactions WHERE type = 'A' AND tran_amt > 0`, nil},
		{"take-backs are positive", `SELECT count(*) FROM dbo.transactions WHERE type = 'R' AND (tran_amt <= 0 OR reversal_trans_id IS NULL OR clp_status_code <> '22')`, nil},
		{"payment lines are negative", `SELECT count(*) FROM dbo.trans_detail td JOIN dbo.transactions t USING (trans_id) WHERE t.type <> 'R' AND (td.paid_amt > 0 OR td.adj_amt > 0)`, nil},
		{"transaction amounts add up", `SELECT count(*) FROM dbo.transactions t JOIN (SELECT trans_id, sum(paid_amt) p, sum(adj_amt) a FROM dbo.trans_detail GROUP BY 1) d USING (trans_id) WHERE t.tran_amt <> d.p + d.a`, nil},
		{"charge amounts", `SELECT count(*) FROM dbo.charges WHERE amt <= 0 OR amt <> unit_price * quantity OR cob1_amt < 0 OR pat_amt < 0 OR cob1_amt + pat_amt > amt`, nil},
		{"business dates are YYYYMMDD", `SELECT count(*) FROM (
			SELECT batch_date d FROM dbo.transactions UNION ALL SELECT post_date FROM dbo.transactions
			UNION ALL SELECT begin_date_of_service FROM dbo.charges UNION ALL SELECT end_date_of_service FROM dbo.charges
			UNION ALL SELECT cob1_recent_paid_date FROM dbo.claims UNION ALL SELECT admit_date FROM dbo.patient_encounter) x
			WHERE d IS NOT NULL AND (d !~ '^[0-9]{8}$' OR to_char(to_date(d, 'YYYYMMDD'), 'YYYYMMDD') <> d)`, nil},
		{"practice ids", `SELECT count(*) FROM (
			SELECT practice_id p FROM dbo.patient_encounter UNION ALL SELECT practice_id FROM dbo.charges UNION ALL SELECT practice_id FROM dbo.claims
			UNION ALL SELECT practice_id FROM dbo.transactions UNION ALL SELECT practice_id FROM dbo.trans_detail UNION ALL SELECT practice_id FROM dbo.reason_code_links) x
			WHERE p <> '0001'`, nil},
		{"trans_detail references a charge", `SELECT count(*) FROM dbo.trans_detail td WHERE NOT EXISTS (SELECT 1 FROM dbo.charges c WHERE c.charge_id = td.charge_id)`, nil},
		{"trans_detail references a transaction", `SELECT count(*) FROM dbo.trans_detail td WHERE NOT EXISTS (SELECT 1 FROM dbo.transactions t WHERE t.trans_id = td.trans_id)`, nil},
		{"trans_detail is unique per transaction and charge", `SELECT count(*) FROM (SELECT 1 FROM dbo.trans_detail GROUP BY trans_id, charge_id HAVING count(*) > 1) x`, nil},
		{"reason links reference a line", `SELECT count(*) FROM dbo.reason_code_links l WHERE NOT EXISTS (SELECT 1 FROM dbo.trans_detail td WHERE td.trans_id = l.trans_id AND td.charge_id = l.charge_id)`, nil},
		{"reason links reference a code", `SELECT count(*) FROM dbo.reason_code_links l WHERE NOT EXISTS (SELECT 1 FROM dbo.reason_code_mstr m WHERE m.reason_code_id = l.reason_code_id)`, nil},
		{"transactions reference an encounter", `SELECT count(*) FROM dbo.transactions t WHERE NOT EXISTS (SELECT 1 FROM dbo.patient_encounter e WHERE e.enc_id = t.source_id)`, nil},
		{"transactions reference a claim", `SELECT count(*) FROM dbo.transactions t WHERE t.claim_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM dbo.claims c WHERE c.claim_id = t.claim_id)`, nil},
		{"reversals reference a transaction", `SELECT count(*) FROM dbo.transactions t WHERE t.reversal_trans_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM dbo.transactions o WHERE o.trans_id = t.reversal_trans_id)`, nil},
		{"transactions reference codes and payers", `SELECT count(*) FROM dbo.transactions t WHERE NOT EXISTS (SELECT 1 FROM dbo.tran_code_mstr c WHERE c.tran_code_id = t.tran_code_id)
			OR (t.payer_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM dbo.payer_mstr p WHERE p.payer_id = t.payer_id))`, nil},
		{"charges and claims reference an encounter", `SELECT count(*) FROM (SELECT source_id e FROM dbo.charges UNION ALL SELECT enc_id FROM dbo.claims) x
			WHERE NOT EXISTS (SELECT 1 FROM dbo.patient_encounter e WHERE e.enc_id = x.e)`, nil},
		{"payer transactions come from ERAs or write-offs", `SELECT count(*) FROM dbo.transactions WHERE payer_id IS NULL AND era_post_ind = 'Y'`, nil},
		{"claim statuses", `SELECT count(*) FROM dbo.claims WHERE status NOT IN ('pending', 'sent', 'denied', 'rebill', 'appeal', 'paid')`, nil},
		{"line statuses", `SELECT count(*) FROM dbo.trans_detail WHERE trans_status NOT IN ('S', 'R', 'A', 'D', 'F')`, nil},
		{"encounter statuses", `SELECT count(*) FROM dbo.patient_encounter WHERE enc_status NOT IN ('U', 'B', 'R')`, nil},
		{"unposted batches are at most a day old", `SELECT count(*) FROM dbo.transactions WHERE post_ind = 'N' AND batch_date < to_char(to_date($1, 'YYYYMMDD') - 1, 'YYYYMMDD')`, []any{lastDay}},
		{"posted lines belong to posted transactions", `SELECT count(*) FROM dbo.trans_detail td JOIN dbo.transactions t USING (trans_id) WHERE td.post_ind <> t.post_ind`, nil},
		{"datetimes are on 1/300 s ticks", `SELECT count(*) FROM (SELECT modify_timestamp m FROM dbo.trans_detail UNION ALL SELECT enc_timestamp FROM dbo.patient_encounter) x
			WHERE (floor(extract(milliseconds FROM m))::int % 1000) % 10 NOT IN (0, 3, 7)`, nil},
		{"first ERA 14 to 45 days after the date of service", `SELECT count(*) FROM (
			SELECT c.claim_id, min(to_date(t.batch_date, 'YYYYMMDD')) - min(to_date(ch.begin_date_of_service, 'YYYYMMDD')) AS lag
			FROM dbo.claims c JOIN dbo.transactions t ON t.claim_id = c.claim_id AND t.era_post_ind = 'Y'
			JOIN dbo.charges ch ON ch.source_id = c.enc_id
			WHERE c.cob = 1 GROUP BY c.claim_id) x WHERE lag NOT BETWEEN 14 AND 45`, nil},
		{"rows change only within the simulated days", `SELECT count(*) FROM dbo.trans_detail WHERE modify_timestamp < $1 OR modify_timestamp >= $2`, []any{DefaultStart, DefaultStart.AddDate(0, 0, days)}},
	}
	for _, tc := range zero {
		t.Run(tc.name, func(t *testing.T) {
			require.Zero(t, count(t, pool, tc.query, tc.args...))
		})
	}

	t.Run("payments and postings happen", func(t *testing.T) {
		require.Positive(t, count(t, pool, `SELECT count(*) FROM dbo.transactions WHERE type = 'C' AND tran_amt < 0 AND payer_id IS NULL`), "patient payments")
		require.Positive(t, count(t, pool, `SELECT count(*) FROM dbo.claims WHERE cob = 2 AND status = 'paid'`), "secondary claims")
		require.Positive(t, count(t, pool, `SELECT count(*) FROM dbo.reason_code_links l JOIN dbo.reason_code_mstr m USING (reason_code_id) WHERE l.group_code = 'OA' AND m.code = '23'`), "OA-23")
		for _, code := range []string{"1", "2", "3"} {
			require.Positive(t, count(t, pool, `SELECT count(*) FROM dbo.reason_code_links l JOIN dbo.reason_code_mstr m USING (reason_code_id) WHERE l.group_code = 'PR' AND m.code = $1`, code), "PR-"+code)
		}
		require.Positive(t, count(t, pool, `SELECT count(*) FROM dbo.reason_code_links l JOIN dbo.reason_code_mstr m USING (reason_code_id) WHERE l.group_code = 'CO' AND m.code = '45'`), "CO-45")
	})

	t.Run("master data", func(t *testing.T) {
		require.EqualValues(t, len(payerDefs), count(t, pool, `SELECT count(*) FROM dbo.payer_mstr`))
		require.EqualValues(t, numTranCodes, count(t, pool, `SELECT count(*) FROM dbo.tran_code_mstr`))
		for _, c := range denialCategories {
			for _, code := range c.carcs {
				require.EqualValues(t, 1, count(t, pool, `SELECT count(*) FROM dbo.reason_code_mstr WHERE code = $1 AND code_type = 'C' AND denial_category = $2`, code, c.name), "CARC %s", code)
			}
		}
		for _, code := range []string{"1", "2", "3", "45", "23"} {
			require.EqualValues(t, 1, count(t, pool, `SELECT count(*) FROM dbo.reason_code_mstr WHERE code = $1 AND denial_category IS NULL`, code))
		}
	})

	t.Run("denial rate", func(t *testing.T) {
		var adjudicated, denied int64
		var rate float64
		require.NoError(t, pool.QueryRow(ctx, DenialRateSQL("dbo")).Scan(&adjudicated, &denied, &rate))
		t.Logf("%d of %d adjudicated claims denied (%.1f%%)", denied, adjudicated, 100*rate)
		require.Greater(t, adjudicated, int64(500))
		require.InDelta(t, 0.11, rate, 0.05)
		whole := count(t, pool, `SELECT count(DISTINCT claim_id) FROM dbo.transactions WHERE clp_status_code = '4'`)
		require.InDelta(t, 0.4, float64(whole)/float64(denied), 0.15, "whole-claim share of denials")
	})

	t.Run("report", func(t *testing.T) {
		rows, err := pool.Query(ctx, DeniedClaimsReportSQL("dbo"))
		require.NoError(t, err)
		claims := map[string]int64{}
		for rows.Next() {
			var cat, payer string
			var dc, dl int64
			var amt float64
			require.NoError(t, rows.Scan(&cat, &payer, &dc, &dl, &amt))
			require.NotEqual(t, "(unknown payer)", payer)
			require.Positive(t, amt)
			claims[cat] += dc
		}
		require.NoError(t, rows.Err())
		for _, c := range denialCategories {
			require.Positive(t, claims[c.name], "category %s", c.name)
		}
		require.NotContains(t, claims, "unspecified")
		require.Greater(t, claims[catEligibility], claims[catCredentialing])
	})

	t.Run("change mix", func(t *testing.T) {
		tot := st.Total()
		all := float64(tot.Total())
		upd, del := float64(tot.Updates)/all, float64(tot.Deletes)/all
		t.Logf("\n%s", st)
		require.InDelta(t, 0.38, upd, 0.08, "update share")
		require.InDelta(t, 0.01, del, 0.008, "delete share")
		for _, name := range []string{tTransactions, tTransDetail, tReasonLinks} {
			require.Positive(t, st.Tables[name].Deletes, "%s deletes", name)
		}
		require.Zero(t, st.Tables[tEncounter].Deletes+st.Tables[tCharges].Deletes+st.Tables[tClaims].Deletes)
		require.Zero(t, st.Tables[tReasonLinks].Updates, "reason links are never updated")
	})

	t.Run("volume", func(t *testing.T) {
		n := count(t, pool, `SELECT count(*) FROM dbo.patient_encounter`)
		require.InDelta(t, 150*days, n, 150*days*0.05)
		perClaim := float64(count(t, pool, `SELECT count(*) FROM dbo.charges`)) / float64(count(t, pool, `SELECT count(DISTINCT source_id) FROM dbo.charges`))
		require.InDelta(t, 2.43, perClaim, 0.15)
	})
}

// checksums returns a digest of every table's rows, leaving out the
// row_timestamp (a transaction id, which differs between databases).
func checksums(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	out := map[string]string{}
	names := []string{StateTable}
	for _, tb := range schemas.NextGen().Tables() {
		names = append(names, tb.Name)
	}
	for _, name := range names {
		var sum string
		q := fmt.Sprintf(`SELECT coalesce(md5(string_agg(r, E'\n' ORDER BY r)), '') FROM (SELECT (to_jsonb(t) - 'row_timestamp' - 'updated_at')::text AS r FROM %s t) x`, pgIdent("dbo", name))
		require.NoError(t, pool.QueryRow(context.Background(), q).Scan(&sum))
		out[name] = sum
	}
	return out
}

func TestReproducible(t *testing.T) {
	if testing.Short() {
		t.Skip("long (populates the same simulated days twice): runs without -short")
	}
	opts := Options{Seed: 7, EncountersPerDay: 60, Practices: []string{"0001", "0002"}}
	a, _ := populated(t, opts, 32)
	b, _ := populated(t, opts, 32)
	opts.Seed = 8
	c, _ := populated(t, opts, 32)
	sa, sb, sc := checksums(t, a), checksums(t, b), checksums(t, c)
	require.Equal(t, sa, sb, "one seed, one content")
	for name := range sa {
		if name == tPayers || name == tReasons || name == tTranCodes || name == StateTable {
			continue // master data and state may not show the seed in every column
		}
		require.NotEqual(t, sa[name], sc[name], "table %s: another seed gives other data", name)
	}
}

// failAfter is a writer that crashes after n batches.
type failAfter struct {
	Writer
	n int
}

var errCrash = errors.New("crash")

func (f *failAfter) Apply(ctx context.Context, b *Batch) error {
	if f.n == 0 {
		return errCrash
	}
	f.n--
	return f.Writer.Apply(ctx, b)
}

// TestContinue: a simulation run in one go, and one stopped, crashed in the
// middle of a day and continued by new generators, leave the same data.
func TestContinue(t *testing.T) {
	if testing.Short() {
		t.Skip("long (populates simulated days in two runs): runs without -short")
	}
	ctx := context.Background()
	opts := Options{Seed: 11, EncountersPerDay: 50}
	whole, _ := populated(t, opts, 30)

	parts := source(t)
	w := NewPostgresWriter(parts, "dbo")
	_, err := Populate(ctx, w, opts, 16)
	require.NoError(t, err)
	_, err = Populate(ctx, w, opts, 1)
	require.ErrorIs(t, err, ErrAlreadyPopulated)
	_, _, err = Simulate(ctx, w, Options{Seed: 12, EncountersPerDay: 50}, 1)
	require.ErrorIs(t, err, ErrOtherSimulation)

	// Crash in the middle of day 16.
	g, err := NewGenerator(opts)
	require.NoError(t, err)
	n := len(g.Batches(16))
	require.Greater(t, n, 4)
	_, st, err := Simulate(ctx, &failAfter{Writer: w, n: n / 2}, Options{}, 3)
	require.ErrorIs(t, err, errCrash)
	require.Equal(t, 16, st.Day)
	saved, ok, err := w.State(ctx)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 16, saved.Day)
	require.Equal(t, n/2, saved.Batch)

	_, st, err = Simulate(ctx, w, Options{}, 4) // finishes day 16, then 17..19
	require.NoError(t, err)
	require.Equal(t, 20, st.Day)
	_, st, err = Simulate(ctx, w, opts, 10)
	require.NoError(t, err)
	require.Equal(t, 30, st.Day)

	require.Equal(t, checksums(t, whole), checksums(t, parts))
}

// TestPlansAreBounded: every encounter's activity fits in HorizonDays, and a
// plan is a pure function of the seed and the encounter's place.
func TestPlansAreBounded(t *testing.T) {
	g, err := NewGenerator(Options{Seed: 3, Preset: Medium})
	require.NoError(t, err)
	h, err := NewGenerator(Options{Seed: 3, Preset: Medium})
	require.NoError(t, err)
	var maxSpan int
	for day := 0; day < 20; day++ {
		for p := range g.opts.Practices {
			for _, e := range g.encounters(day, p) {
				maxSpan = max(maxSpan, e.last-e.day)
				require.Less(t, e.last-e.day, HorizonDays)
				for _, c := range e.claims {
					for _, r := range c.remits {
						require.Greater(t, r.day, c.sent, "an ERA comes after the claim is sent")
					}
				}
			}
			require.Equal(t, g.encounters(day, p), h.encounters(day, p))
		}
	}
	t.Logf("longest activity: %d days", maxSpan)
}

// TestCatalogDrift: the generator fills columns it does not know and skips
// those the catalog lacks.
func TestCatalogDrift(t *testing.T) {
	var tables []*schemas.Table
	for _, tb := range schemas.NextGen().Tables() {
		if tb.Name == tCharges {
			tb.Columns = slices.DeleteFunc(tb.Columns, func(c schemas.Column) bool { return c.Name == "link_id" || c.Name == "icd9cm_code_id" })
			for _, extra := range []struct {
				name, typ string
				null      bool
			}{
				{"place_of_service", "char(2)", false},
				{"units_billed", "int", false},
				{"rev_code_id", "uniqueidentifier", true},
				{"posted_at", "datetime", false},
				{"exempt", "bit", false},
				{"fee", "money", false},
			} {
				typ, err := schemas.ParseType(schemas.SQLServer, extra.typ)
				require.NoError(t, err)
				tb.Columns = append(tb.Columns, schemas.Column{Name: extra.name, Type: typ, Nullable: extra.null})
			}
		}
		tables = append(tables, tb)
	}
	cat, err := schemas.NewCatalog(tables...)
	require.NoError(t, err)
	ctx := context.Background()
	pool := pgtest.Pool(t)
	require.NoError(t, CreatePostgres(ctx, pool, cat))
	st, err := Populate(ctx, NewPostgresWriter(pool, "dbo"), Options{Seed: 2, EncountersPerDay: 30, Catalog: cat}, 25)
	require.NoError(t, err)
	require.Positive(t, st.Tables[tCharges].Inserts)
	require.Zero(t, count(t, pool, `SELECT count(*) FROM dbo.charges WHERE place_of_service <> '' OR units_billed <> 0 OR rev_code_id IS NOT NULL OR exempt OR fee <> 0 OR posted_at <> create_timestamp`))
}
