package synth

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// dayPlan builds the batches of one day from the live encounters.
type dayPlan struct {
	g       *Generator
	day     int
	date    time.Time
	clock   time.Time
	step    time.Duration
	r       *rand.Rand
	batches []*Batch
}

// Users (created_by, modified_by): per practice a registrar, a biller, a
// poster and a collector; user 1 is the ERA auto-poster.
const (
	userRegistrar = iota + 1
	userBiller
	userPoster
	userCollector

	autoPoster int64 = 1
)

func (dp *dayPlan) user(p, role int) int64 {
	return int64(1000 + 10*p + role)
}

// eraPlan is what happens to one ERA batch (one payer's remittance for one
// practice on one day).
type eraPlan struct {
	held     bool // imported unposted, posted later
	postNext bool // posted the next day (else later the same day)
	deleted  bool // deleted before posting and re-imported
}

func (g *Generator) eraPlan(day, p, payer int) eraPlan {
	r := stream(g.opts.Seed, tagBatch, uint64(day), uint64(p), uint64(payer))
	var ep eraPlan
	ep.held = chance(r, 0.6)
	ep.postNext = ep.held && chance(r, 0.3)
	ep.deleted = ep.held && chance(r, 0.03)
	return ep
}

// gen is 1 for rows of a remit whose first import was deleted and
// re-imported, else 0.
func (g *Generator) gen(e *encounter, r *remit) uint64 {
	if g.eraPlan(r.day, e.practice, r.claim.payer).deleted {
		return 1
	}
	return 0
}

func (dp *dayPlan) build() []*Batch {
	g := dp.g
	dp.date = g.started.AddDate(0, 0, dp.day)
	dp.r = stream(g.opts.Seed, tagClock, uint64(dp.day))
	dp.clock = dp.date.Add(7 * time.Hour)
	dp.step = 11 * time.Hour / time.Duration(20*len(g.opts.Practices)+1)
	if dp.day == 0 {
		dp.master()
	}
	byP := make([][]*encounter, len(g.opts.Practices))
	for _, e := range g.live {
		byP[e.practice] = append(byP[e.practice], e)
	}
	for p, encs := range byP {
		dp.registration(p, encs)
	}
	for p, encs := range byP {
		dp.charges(p, encs)
	}
	for p, encs := range byP {
		dp.submit(p, encs)
	}
	var held []eraGroup
	for p, encs := range byP {
		held = append(held, dp.era(p, encs)...)
	}
	for _, grp := range held {
		if grp.plan.deleted {
			dp.reimport(grp)
		}
	}
	for p, encs := range byP {
		for _, grp := range dp.eraGroups(p, encs, dp.day-1) {
			if grp.plan.held && grp.plan.postNext {
				dp.posting(grp)
			}
		}
	}
	for _, grp := range held {
		if !grp.plan.postNext {
			dp.posting(grp)
		}
	}
	for p, encs := range byP {
		dp.rework(p, encs)
	}
	for p, encs := range byP {
		dp.patient(p, encs)
	}
	out := dp.batches[:0]
	for _, b := range dp.batches {
		if len(b.Ops) > 0 {
			out = append(out, b)
		}
	}
	return out
}

// batch starts a new source transaction a little later than the last.
func (dp *dayPlan) batch(kind string, p int, user int64) *batchBuilder {
	step := time.Duration(float64(dp.step) * (0.5 + dp.r.Float64()))
	if end := dp.date.Add(23 * time.Hour); dp.clock.Add(step).After(end) {
		step = max(time.Duration(dp.r.Int64N(int64(time.Second)))+10*time.Millisecond, end.Sub(dp.clock)/20)
	}
	dp.clock = dp.clock.Add(step)
	b := &Batch{Kind: kind, At: tick(dp.clock)}
	if p >= 0 {
		b.Practice = dp.g.opts.Practices[p]
	}
	dp.batches = append(dp.batches, b)
	return &batchBuilder{g: dp.g, b: b, user: user}
}

// chunks splits encounters for batches of at most 500.
func chunks(encs []*encounter) [][]*encounter {
	var out [][]*encounter
	for len(encs) > 500 {
		out = append(out, encs[:500])
		encs = encs[500:]
	}
	if len(encs) > 0 {
		out = append(out, encs)
	}
	return out
}

func yn(b bool) string {
	if b {
		return "Y"
	}
	return "N"
}

func (dp *dayPlan) master() {
	g := dp.g
	bb := dp.batch("master", -1, autoPoster)
	for i, p := range payerDefs {
		bb.insert(tPayers,
			"payer_id", g.payerIDs[i],
			"payer_name", p.name,
			"plan_name", p.plan,
			"payer_nbr", fmt.Sprintf("PYR%05d", 10007*(i+1)%100000),
			"financial_class", newID(g.opts.Seed, tagMaster, strID("class"), uint64(p.class)),
			"ins_type", p.insType,
			"delete_ind", "N")
	}
	for _, rd := range reasonDefs {
		var cat any
		if rd.category != "" {
			cat = rd.category
		}
		bb.insert(tReasons,
			"reason_code_id", g.reasonIDs[rd.code],
			"code", rd.code,
			"code_type", rd.codeType,
			"description", rd.desc,
			"denial_category", cat,
			"delete_ind", "N")
	}
	for i, tc := range tranCodeDefs {
		bb.insert(tTranCodes,
			"tran_code_id", g.tranCodeIDs[i],
			"type", tc.typ,
			"source", tc.source,
			"description", tc.desc,
			"sign_type", tc.sign,
			"delete_ind", "N")
	}
}

func (dp *dayPlan) payerID(i int) any {
	if i < 0 {
		return nil
	}
	return dp.g.payerIDs[i]
}

func (dp *dayPlan) registration(p int, encs []*encounter) {
	var today []*encounter
	for _, e := range encs {
		if e.day == dp.day {
			today = append(today, e)
		}
	}
	for _, chunk := range chunks(today) {
		bb := dp.batch("registration", p, dp.user(p, userRegistrar))
		for _, e := range chunk {
			at := tick(dp.date.Add(time.Duration(e.at * float64(time.Hour))))
			bb.insert(tEncounter,
				"enc_id", e.id,
				"practice_id", dp.g.opts.Practices[p],
				"person_id", e.personID,
				"enc_nbr", e.nbr,
				"enc_timestamp", at,
				"billable_ind", yn(e.billable),
				"enc_status", encUnbilled,
				"cob1_payer_id", dp.payerID(e.payer),
				"location_id", e.location,
				"rendering_provider_id", e.provider,
				"admit_date", ymd(dp.date),
				"discharge_date", ymd(dp.date))
		}
	}
}

func (dp *dayPlan) charges(p int, encs []*encounter) {
	var today []*encounter
	for _, e := range encs {
		if (e.billable && e.chargeDay == dp.day) || (len(e.claims) > 1 && e.claims[1].created == dp.day) {
			today = append(today, e)
		}
	}
	practice := dp.g.opts.Practices[p]
	for _, chunk := range chunks(today) {
		bb := dp.batch("charges", p, dp.user(p, userBiller))
		for _, e := range chunk {
			if e.chargeDay == dp.day {
				dos := ymd(dp.g.started.AddDate(0, 0, e.day))
				for _, l := range e.lines {
					cob1, pat, status := l.amt, Amount(0), chargeOpen
					if e.payer < 0 {
						cob1, pat, status = 0, l.amt, chargePatient
					}
					bb.insert(tCharges,
						"charge_id", l.id,
						"practice_id", practice,
						"source_id", e.id,
						"source_type", "V",
						"person_id", e.personID,
						"service_item_id", l.cpt,
						"cpt4_code_id", l.cpt,
						"modifier_1", nilIfEmpty(l.mod1),
						"modifier_2", nilIfEmpty(l.mod2),
						"icd9cm_code_id", l.icd,
						"quantity", Amount(l.qty*100),
						"unit_price", l.unit,
						"amt", l.amt,
						"cob1_amt", cob1,
						"pat_amt", pat,
						"begin_date_of_service", dos,
						"end_date_of_service", dos,
						"status", status)
				}
			}
			for _, c := range e.claims {
				if c.created != dp.day {
					continue
				}
				editing := "R"
				if c.hold {
					editing = "H"
				}
				bb.insert(tClaims,
					"claim_id", c.id,
					"practice_id", practice,
					"claim_id_nbr", c.nbr,
					"enc_id", e.id,
					"payer_id", dp.payerID(c.payer),
					"cob", int64(c.cob),
					"claim_type", "PR",
					"status", claimPending,
					"editing_state", editing,
					"rebill_ind", "N")
			}
		}
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (dp *dayPlan) submit(p int, encs []*encounter) {
	var bb *batchBuilder
	get := func() *batchBuilder {
		if bb == nil {
			bb = dp.batch("submit", p, dp.user(p, userBiller))
		}
		return bb
	}
	for _, e := range encs {
		for _, c := range e.claims {
			if c.sent == dp.day {
				b := get()
				b.update(tClaims, []any{"claim_id", c.id}, "status", claimSent, "editing_state", "S")
				if c.cob == 1 {
					b.update(tEncounter, []any{"enc_id", e.id}, "enc_status", encBilled, "billable_timestamp", b.b.At)
				}
			}
			if w := c.rework; w != nil && w.resend > 0 && w.resend == dp.day {
				b := get()
				b.update(tClaims, []any{"claim_id", c.id}, "status", claimSent, "editing_state", "S")
				b.update(tEncounter, []any{"enc_id", e.id}, "enc_status", encRebilled, "billable_timestamp", b.b.At)
			}
		}
	}
}

// eraGroup is one ERA batch: the remits of one payer for one practice
// imported on one day.
type eraGroup struct {
	p, payer, day int
	plan          eraPlan
	remits        []remitRef
}

type remitRef struct {
	e *encounter
	r *remit
}

func (dp *dayPlan) eraGroups(p int, encs []*encounter, day int) []eraGroup {
	if day < 0 {
		return nil
	}
	byPayer := map[int]*eraGroup{}
	var payers []int
	for _, e := range encs {
		for _, c := range e.claims {
			for _, r := range c.remits {
				if r.day != day {
					continue
				}
				grp, ok := byPayer[c.payer]
				if !ok {
					grp = &eraGroup{p: p, payer: c.payer, day: day, plan: dp.g.eraPlan(day, p, c.payer)}
					byPayer[c.payer] = grp
					payers = append(payers, c.payer)
				}
				grp.remits = append(grp.remits, remitRef{e, r})
			}
		}
	}
	out := make([]eraGroup, 0, len(payers))
	for i := range len(payerDefs) {
		if grp, ok := byPayer[i]; ok {
			out = append(out, *grp)
		}
	}
	return out
}

func batchNbr(day, n int) string {
	return fmt.Sprintf("%04d", (day*100+n)%10000)
}

// era imports today's ERA batches of practice p; it returns those held
// unposted.
func (dp *dayPlan) era(p int, encs []*encounter) []eraGroup {
	var held []eraGroup
	for _, grp := range dp.eraGroups(p, encs, dp.day) {
		bb := dp.batch("era", p, autoPoster)
		for _, ref := range grp.remits {
			dp.remitRows(bb, ref.e, ref.r, 0, !grp.plan.held, batchNbr(dp.day, grp.payer), false)
			if !grp.plan.held {
				dp.post(bb, ref.e, ref.r)
			}
		}
		if grp.plan.held {
			held = append(held, grp)
		}
	}
	return held
}

// reimport deletes an unposted ERA batch (its reason links, lines and
// transactions, hard) and imports it again with new ids.
func (dp *dayPlan) reimport(grp eraGroup) {
	bb := dp.batch("delete", grp.p, dp.user(grp.p, userPoster))
	for _, ref := range grp.remits {
		dp.remitRows(bb, ref.e, ref.r, 0, false, "", true)
	}
	bb = dp.batch("reimport", grp.p, autoPoster)
	for _, ref := range grp.remits {
		dp.remitRows(bb, ref.e, ref.r, 1, false, batchNbr(dp.day, 30+grp.payer), false)
	}
}

// posting posts a held ERA batch: lines and transactions flip to posted and
// the claims and charges take the remittance.
func (dp *dayPlan) posting(grp eraGroup) {
	bb := dp.batch("posting", grp.p, dp.user(grp.p, userPoster))
	for _, ref := range grp.remits {
		e, r := ref.e, ref.r
		ids := dp.g.remitIDs(e, r, dp.g.gen(e, r))
		for _, t := range ids.trans {
			bb.update(tTransactions, []any{"trans_id", t}, "post_ind", "Y", "post_date", ymd(dp.date))
		}
		for _, d := range ids.details {
			bb.update(tTransDetail, []any{"trans_detail_id", d}, "post_ind", "Y")
		}
		dp.post(bb, e, r)
	}
}

// remitIDs are the keys of the rows a remit writes.
type remitIDs struct {
	pay, adj, pr  UUID
	hasAdj, hasPR bool
	trans         []UUID // pay, then adj if any
	details       []UUID // pay details, then adj details
	payLine       map[int]UUID
}

func (g *Generator) remitIDs(e *encounter, r *remit, gen uint64) remitIDs {
	c := r.claim
	ids := remitIDs{payLine: map[int]UUID{}}
	ids.pay = g.encID(e, idPayTrans, uint64(c.idx), uint64(r.idx), gen)
	ids.trans = append(ids.trans, ids.pay)
	for _, rl := range r.lines {
		d := g.encID(e, idPayDetail, uint64(c.idx), uint64(r.idx), gen, uint64(rl.line))
		ids.payLine[rl.line] = d
		ids.details = append(ids.details, d)
	}
	if r.reversal == nil {
		for _, rl := range r.lines {
			if rl.co45 > 0 {
				ids.hasAdj = true
				ids.details = append(ids.details, g.encID(e, idAdjDetail, uint64(c.idx), uint64(r.idx), gen, uint64(rl.line)))
			}
		}
	}
	if ids.hasAdj {
		ids.adj = g.encID(e, idAdjTrans, uint64(c.idx), uint64(r.idx), gen)
		ids.trans = append(ids.trans, ids.adj)
	}
	if r.reversal == nil {
		for _, rl := range r.lines {
			if prOf(rl) > 0 {
				ids.hasPR = true
				ids.details = append(ids.details, g.encID(e, idPRDetail, uint64(c.idx), uint64(r.idx), gen, uint64(rl.line)))
			}
		}
	}
	if ids.hasPR {
		ids.pr = g.encID(e, idPRTrans, uint64(c.idx), uint64(r.idx), gen)
		ids.trans = append(ids.trans, ids.pr)
	}
	return ids
}

type reasonLink struct {
	group, code string
	amt         Amount
}

func linksOf(rl remitLine, lineAmt Amount, reversal bool) []reasonLink {
	var out []reasonLink
	if rl.denied {
		out = append(out, reasonLink{rl.group, rl.carc, lineAmt})
	} else {
		for _, a := range []reasonLink{{"CO", "45", rl.co45}, {"PR", "1", rl.pr[0]}, {"PR", "2", rl.pr[1]}, {"PR", "3", rl.pr[2]}, {"OA", "23", rl.oa23}} {
			if a.amt > 0 {
				out = append(out, a)
			}
		}
	}
	if reversal {
		for i := range out {
			out[i].group, out[i].amt = "CR", -out[i].amt
		}
	}
	return out
}

func display(links []reasonLink, rarc string) any {
	var parts []string
	for _, l := range links {
		parts = append(parts, l.group+"-"+l.code)
	}
	if rarc != "" {
		parts = append(parts, rarc)
	}
	if len(parts) == 0 {
		return nil
	}
	return strings.Join(parts, ";")
}

// remitRows inserts (or, with del, deletes) the rows of one remit: a payment
// transaction with a line per charge and its reason links, and a
// contractual adjustment transaction with its lines.
func (dp *dayPlan) remitRows(bb *batchBuilder, e *encounter, r *remit, gen uint64, posted bool, nbr string, del bool) {
	g := dp.g
	c := r.claim
	ids := g.remitIDs(e, r, gen)
	practice := g.opts.Practices[e.practice]
	rev := r.reversal != nil
	if del {
		for _, rl := range r.lines {
			for i, l := range linksOf(rl, e.lines[rl.line].amt, rev) {
				bb.delete(tReasonLinks, "trans_id", ids.pay, "charge_id", e.lines[rl.line].id,
					"reason_code_id", g.reasonIDs[l.code], "seq_nbr", int64(i+1))
			}
		}
		for _, d := range ids.details {
			bb.delete(tTransDetail, "trans_detail_id", d)
		}
		for _, t := range ids.trans {
			bb.delete(tTransactions, "trans_id", t)
		}
		return
	}
	var postDate any
	if posted {
		postDate = ymd(dp.date)
	}
	var paid, adj Amount
	for _, rl := range r.lines {
		paid += rl.paid
		adj += rl.co45
	}
	typ, code, amt := "C", tcInsPayment, -paid
	var reversalOf any
	if rev {
		typ, code, amt = "R", tcTakeback, paid
		reversalOf = g.remitIDs(e, r.reversal, g.gen(e, r.reversal)).pay
	}
	var claimReason any
	if r.whole && len(r.lines) > 0 {
		claimReason = r.lines[0].group + "-" + r.lines[0].carc
	}
	trans := func(id UUID, typ string, code tranCode, amt Amount, clp, reason, reversal any) {
		bb.insert(tTransactions,
			"trans_id", id,
			"practice_id", practice,
			"source_id", e.id,
			"source_type", "V",
			"batch_nbr", nbr,
			"batch_date", ymd(dp.date),
			"person_id", e.personID,
			"payer_id", g.payerIDs[c.payer],
			"tran_date", dp.date,
			"type", typ,
			"tran_code_id", g.tranCodeIDs[code],
			"tran_amt", amt,
			"post_ind", yn(posted),
			"post_date", postDate,
			"era_post_ind", "Y",
			"reversal_trans_id", reversal,
			"claim_id", c.id,
			"clp_status_code", clp,
			"reason_codes_display_only", reason)
	}
	trans(ids.pay, typ, code, amt, r.clp, claimReason, reversalOf)
	for _, rl := range r.lines {
		l := e.lines[rl.line]
		links := linksOf(rl, l.amt, rev)
		sign := Amount(-1)
		var status any = rl.status
		if rev {
			sign, status = 1, nil
		}
		bb.insert(tTransDetail,
			"trans_detail_id", ids.payLine[rl.line],
			"practice_id", practice,
			"trans_id", ids.pay,
			"charge_id", l.id,
			"source_id", e.id,
			"source_type", "V",
			"paid_amt", sign*rl.paid,
			"adj_amt", Amount(0),
			"allowed_amt", -sign*rl.allowed,
			"deduct_amt", -sign*rl.pr[0],
			"post_ind", yn(posted),
			"trans_status", status,
			"rebill_ind", "N",
			"reason_codes_display_only", display(links, rl.rarc),
			"ln_lvl_remarks", nilIfEmpty(rl.rarc))
		for i, lk := range links {
			bb.insert(tReasonLinks,
				"trans_id", ids.pay,
				"charge_id", l.id,
				"reason_code_id", g.reasonIDs[lk.code],
				"seq_nbr", int64(i+1),
				"practice_id", practice,
				"group_code", lk.group,
				"adj_amt", lk.amt)
		}
	}
	if ids.hasAdj {
		trans(ids.adj, "A", tcContractual, -adj, nil, nil, nil)
	}
	for _, rl := range r.lines {
		if rl.co45 <= 0 {
			continue
		}
		l := e.lines[rl.line]
		bb.insert(tTransDetail,
			"trans_detail_id", g.encID(e, idAdjDetail, uint64(c.idx), uint64(r.idx), gen, uint64(rl.line)),
			"practice_id", practice,
			"trans_id", ids.adj,
			"charge_id", l.id,
			"source_id", e.id,
			"source_type", "V",
			"paid_amt", Amount(0),
			"adj_amt", -rl.co45,
			"post_ind", yn(posted),
			"trans_status", tdSettled,
			"rebill_ind", "N",
			"reason_codes_display_only", "CO-45")
	}
	if !ids.hasPR {
		return
	}
	// The patient's share moves to the patient's account: a zero-amount
	// transfer whose lines carry the PR amounts.
	trans(ids.pr, "A", tcTransfer, Amount(0), nil, nil, nil)
	for _, rl := range r.lines {
		pr := prOf(rl)
		if pr <= 0 {
			continue
		}
		l := e.lines[rl.line]
		var codes []reasonLink
		for k, code := range []string{"1", "2", "3"} {
			if rl.pr[k] > 0 {
				codes = append(codes, reasonLink{group: "PR", code: code})
			}
		}
		bb.insert(tTransDetail,
			"trans_detail_id", g.encID(e, idPRDetail, uint64(c.idx), uint64(r.idx), gen, uint64(rl.line)),
			"practice_id", practice,
			"trans_id", ids.pr,
			"charge_id", l.id,
			"source_id", e.id,
			"source_type", "V",
			"paid_amt", Amount(0),
			"adj_amt", Amount(0),
			"deduct_amt", rl.pr[0],
			"post_ind", yn(posted),
			"trans_status", tdSettled,
			"rebill_ind", "N",
			"reason_codes_display_only", display(codes, ""))
	}
}

// prOf is the patient responsibility of a paid remit line.
func prOf(rl remitLine) Amount {
	if rl.denied {
		return 0
	}
	return rl.pr[0] + rl.pr[1] + rl.pr[2]
}

// post applies a posted remit to its claim and charges.
func (dp *dayPlan) post(bb *batchBuilder, e *encounter, r *remit) {
	if r.reversal != nil {
		return // the re-payment in the same ERA posts the claim
	}
	c := r.claim
	kv := []any{"status", r.final}
	paidAny := false
	for _, rl := range r.lines {
		paidAny = paidAny || !rl.denied
	}
	if c.cob == 1 && paidAny {
		kv = append(kv, "cob1_recent_paid_date", ymd(dp.date))
	}
	if r.idx == 0 {
		kv = append(kv, "payer_claim_control_nbr", c.icn)
	}
	bb.update(tClaims, []any{"claim_id", c.id}, kv...)
	for _, rl := range r.lines {
		l := e.lines[rl.line]
		cob1, pat, status := Amount(0), rl.pr[0]+rl.pr[1]+rl.pr[2], chargeClosed
		switch {
		case rl.denied:
			cob1, pat, status = l.amt, 0, chargeDenied
		case c.cob > 1:
			pat = rl.pr[0]
		}
		if pat > 0 && status == chargeClosed {
			status = chargePatient
		}
		bb.update(tCharges, []any{"charge_id", l.id}, "cob1_amt", cob1, "pat_amt", pat, "status", status)
	}
}

// rework: the practice works the denials due today (rebill or appeal) and
// writes off what it gives up on.
func (dp *dayPlan) rework(p int, encs []*encounter) {
	g := dp.g
	var bb *batchBuilder
	get := func() *batchBuilder {
		if bb == nil {
			bb = dp.batch("rework", p, dp.user(p, userBiller))
		}
		return bb
	}
	for _, e := range encs {
		for _, c := range e.claims {
			w := c.rework
			if w == nil {
				continue
			}
			if w.day == dp.day && w.pursue {
				b := get()
				status, tds := claimRebill, tdRebill
				if w.appeal {
					status, tds = claimAppeal, tdAppeal
				}
				kv := []any{"status", status, "rebill_ind", yn(!w.appeal)}
				if !w.appeal {
					kv = append(kv, "resubmission_code", "7")
				}
				b.update(tClaims, []any{"claim_id", c.id}, kv...)
				ids := g.remitIDs(e, w.remit, g.gen(e, w.remit))
				for _, rl := range w.remit.lines {
					if !rl.denied {
						continue
					}
					b.update(tTransDetail, []any{"trans_detail_id", ids.payLine[rl.line]}, "trans_status", tds, "rebill_ind", yn(!w.appeal))
					l := e.lines[rl.line]
					if l.fixMod != "" {
						b.update(tCharges, []any{"charge_id", l.id}, "modifier_1", l.fixMod, "status", chargeOpen)
					} else {
						b.update(tCharges, []any{"charge_id", l.id}, "status", chargeOpen)
					}
				}
				if denialCategories[w.cat].name == catEligibility {
					b.update(tEncounter, []any{"enc_id", e.id}, "remarks", "Coverage verified, claim corrected")
				}
			}
			if w.writeOff > 0 && w.writeOff == dp.day {
				dp.writeOff(get(), e, c)
			}
		}
	}
}

func (dp *dayPlan) writeOff(bb *batchBuilder, e *encounter, c *claim) {
	g := dp.g
	last := c.remits[len(c.remits)-1]
	practice := g.opts.Practices[e.practice]
	id := g.encID(e, idWriteOffTrans, uint64(c.idx))
	var total Amount
	for _, rl := range last.lines {
		if rl.denied {
			total += e.lines[rl.line].amt
		}
	}
	bb.insert(tTransactions,
		"trans_id", id,
		"practice_id", practice,
		"source_id", e.id,
		"source_type", "V",
		"batch_nbr", batchNbr(dp.day, 91),
		"batch_date", ymd(dp.date),
		"person_id", e.personID,
		"payer_id", g.payerIDs[c.payer],
		"tran_date", dp.date,
		"type", "A",
		"tran_code_id", g.tranCodeIDs[tcDenialWriteOff],
		"tran_amt", -total,
		"post_ind", "Y",
		"post_date", ymd(dp.date),
		"era_post_ind", "N",
		"claim_id", c.id)
	for _, rl := range last.lines {
		if !rl.denied {
			continue
		}
		l := e.lines[rl.line]
		bb.insert(tTransDetail,
			"trans_detail_id", g.encID(e, idWriteOffDetail, uint64(c.idx), uint64(rl.line)),
			"practice_id", practice,
			"trans_id", id,
			"charge_id", l.id,
			"source_id", e.id,
			"source_type", "V",
			"paid_amt", Amount(0),
			"adj_amt", -l.amt,
			"post_ind", "Y",
			"rebill_ind", "N")
		bb.update(tCharges, []any{"charge_id", l.id}, "cob1_amt", Amount(0), "pat_amt", Amount(0), "status", chargeClosed)
	}
}

// patient posts patient payments and small-balance write-offs.
func (dp *dayPlan) patient(p int, encs []*encounter) {
	g := dp.g
	var bb *batchBuilder
	practice := g.opts.Practices[p]
	for _, e := range encs {
		for k, ev := range e.pat {
			if ev.day != dp.day {
				continue
			}
			if bb == nil {
				bb = dp.batch("patient", p, dp.user(p, userCollector))
			}
			var total Amount
			for _, a := range ev.amts {
				total += a
			}
			typ, code := "C", tcPatPayment
			if ev.writeOff {
				typ, code = "A", tcSmallBalance
			}
			id := g.encID(e, idPatTrans, uint64(k))
			bb.insert(tTransactions,
				"trans_id", id,
				"practice_id", practice,
				"source_id", e.id,
				"source_type", "V",
				"batch_nbr", batchNbr(dp.day, 90),
				"batch_date", ymd(dp.date),
				"person_id", e.personID,
				"payer_id", nil,
				"tran_date", dp.date,
				"type", typ,
				"tran_code_id", g.tranCodeIDs[code],
				"tran_amt", -total,
				"post_ind", "Y",
				"post_date", ymd(dp.date),
				"era_post_ind", "N")
			for j, i := range ev.lines {
				l := e.lines[i]
				paid, adj := -ev.amts[j], Amount(0)
				if ev.writeOff {
					paid, adj = 0, -ev.amts[j]
				}
				bb.insert(tTransDetail,
					"trans_detail_id", g.encID(e, idPatDetail, uint64(k), uint64(i)),
					"practice_id", practice,
					"trans_id", id,
					"charge_id", l.id,
					"source_id", e.id,
					"source_type", "V",
					"paid_amt", paid,
					"adj_amt", adj,
					"post_ind", "Y",
					"trans_status", tdSettled,
					"rebill_ind", "N")
				status := chargeClosed
				if ev.left[j] > 0 {
					status = chargePatient
				}
				bb.update(tCharges, []any{"charge_id", l.id}, "cob1_amt", Amount(0), "pat_amt", ev.left[j], "status", status)
			}
		}
	}
}
