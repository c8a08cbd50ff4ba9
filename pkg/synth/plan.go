package synth

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Catalog table names the generator writes (all in the catalog's schema).
const (
	tEncounter    = "patient_encounter"
	tCharges      = "charges"
	tClaims       = "claims"
	tTransactions = "transactions"
	tTransDetail  = "trans_detail"
	tReasonLinks  = "reason_code_links"
	tPayers       = "payer_mstr"
	tReasons      = "reason_code_mstr"
	tTranCodes    = "tran_code_mstr"
)

// Status values. The claim statuses and trans_status values are invented [X]
// (see the catalog); enc_status is inferred [I]; charge status is invented.
const (
	claimPending = "pending"
	claimSent    = "sent"
	claimDenied  = "denied"
	claimRebill  = "rebill"
	claimAppeal  = "appeal"
	claimPaid    = "paid"

	tdSettled = "S"
	tdRebill  = "R"
	tdAppeal  = "A"
	tdDeny    = "D"
	tdForward = "F"

	encUnbilled = "U"
	encBilled   = "B"
	encRebilled = "R"

	chargeOpen    = "O" // billed, waiting for the payer
	chargeDenied  = "D" // denied, being worked
	chargePatient = "P" // patient balance left
	chargeClosed  = "C" // zero balance
)

// CLP02 claim status codes (clp_status_code).
const (
	clpPrimary   = "1"
	clpSecondary = "2"
	clpDenied    = "4"
	clpReversal  = "22"
)

// ID kinds: every GUID is newID(seed, encounter day, practice, index, kind,
// ...), so that any later event can name rows an earlier one wrote.
const (
	idEncounter uint64 = iota + 1
	idCharge
	idClaim
	idPayTrans
	idAdjTrans
	idPayDetail
	idAdjDetail
	idWriteOffTrans
	idWriteOffDetail
	idPatTrans
	idPatDetail
	idPRTrans
	idPRDetail
)

type encounter struct {
	day, practice, idx int
	id                 UUID
	person             uint64 // patient number within the practice
	personID           UUID
	location, provider UUID
	nbr                int64
	at                 float64 // appointment time, hours after midnight
	billable           bool
	payer              int // index in payerDefs; -1 self-pay
	chargeDay          int
	lines              []line
	claims             []*claim
	pat                []patEvent
	last               int // last day with activity
	claimsLast         int // last day with claim activity
}

type line struct {
	id            UUID
	kind          serviceKind
	cpt, icd      string
	mod1, mod2    string
	fixMod        string // modifier added by a coding rebill
	qty           int64
	unit, amt     Amount
	pr            Amount // patient responsibility set by the paying primary remit
	sec           Amount // paid by the secondary payer
	writtenOff    bool
	secondaryLine bool // crossed over to a secondary claim
}

type claim struct {
	cob     int // 1 primary, 2 secondary
	idx     int // in encounter.claims
	payer   int
	id      UUID
	nbr     int64
	created int
	sent    int
	hold    bool
	icn     string
	remits  []*remit
	rework  *rework
}

type remit struct {
	claim    *claim
	idx      int // in claim.remits
	day      int // ERA import day
	clp      string
	reversal *remit // the remit this one reverses (take-back)
	whole    bool   // whole-claim denial
	lines    []remitLine
	// final says the claim's status after posting this remit ("" keeps it).
	final string
}

type remitLine struct {
	line    int
	paid    Amount // positive: what the payer paid (stored negated)
	allowed Amount
	co45    Amount
	oa23    Amount
	pr      [3]Amount // deductible, coinsurance, copay
	denied  bool
	carc    string
	group   string
	rarc    string
	status  string
	cat     int // denial category, -1 if none
}

type rework struct {
	day      int
	remit    *remit // the denial being worked
	cat      int
	pursue   bool
	appeal   bool
	resend   int // rebill: the day the claim is sent again; 0 none
	writeOff int // the day the denied balance is written off; 0 none
}

type patEvent struct {
	day      int
	writeOff bool
	lines    []int
	amts     []Amount // paid (or written off) per line
	left     []Amount // patient balance per line after the event
}

// planEncounter draws everything that will ever happen to encounter idx of
// practice p registered on day.
func (g *Generator) planEncounter(day, p, idx int, nbr int64) *encounter {
	r := stream(g.opts.Seed, tagEncounter, uint64(day), uint64(p), uint64(idx))
	e := &encounter{day: day, practice: p, idx: idx, nbr: nbr}
	e.id = g.encID(e, idEncounter)
	e.person = uint64(r.IntN(g.poolSize))
	e.personID = newID(g.opts.Seed, tagPerson, uint64(p), e.person)
	person := g.personPlan(p, e.person)
	e.payer = person.payer
	e.location = g.locations[p][r.IntN(len(g.locations[p]))]
	e.provider = g.providers[p][r.IntN(len(g.providers[p]))]
	e.at = 8 + 9*r.Float64()
	e.last = day
	e.billable = chance(r, 0.97)
	if !e.billable {
		return e
	}
	e.chargeDay = day + []int{0, 0, 0, 0, 0, 0, 1, 1, 1, 2}[r.IntN(10)]
	if chance(r, 0.04) {
		e.chargeDay = day + 3
	}
	e.last = e.chargeDay
	g.planLines(r, e)
	if e.payer < 0 {
		g.planSelfPay(r, e)
		return e
	}
	c := &claim{cob: 1, payer: e.payer, created: e.chargeDay}
	c.id = g.encID(e, idClaim, 1)
	c.nbr = e.nbr*10 + 1
	c.sent = e.chargeDay + 1
	if chance(r, 0.04) {
		c.hold = true
		c.sent += between(r, 1, 4)
	}
	e.claims = append(e.claims, c)
	g.planPrimary(r, e, c)
	if person.secondary >= 0 && len(c.remits) == 1 && c.remits[0].clp == clpPrimary && c.rework == nil {
		g.planSecondary(r, e, c, person.secondary)
	}
	g.planPatient(r, e)
	e.claimsLast = claimsLast(e)
	return e
}

// claimsLast is the last day anything happens to e's claims; after it only
// patient payments are left and the claims are dropped from memory.
func claimsLast(e *encounter) int {
	last := e.chargeDay
	for _, c := range e.claims {
		last = max(last, c.sent)
		for _, r := range c.remits {
			last = max(last, r.day+1)
		}
		if w := c.rework; w != nil {
			last = max(last, w.day, w.resend, w.writeOff)
		}
	}
	return last
}

func (g *Generator) planLines(r *rand.Rand, e *encounter) {
	n := []int{1, 2, 3, 4, 5, 7}[linesDist.pick(r)]
	switch n {
	case 5:
		n = between(r, 5, 6)
	case 7:
		n = between(r, 7, 12)
	}
	icd := icd10Codes[r.IntN(len(icd10Codes))]
	for i := range n {
		kind := svcEM
		if i > 0 || chance(r, 0.15) {
			kind = serviceKind(extraLineKinds.pick(r))
		}
		sk := serviceKinds[kind]
		l := line{id: g.encID(e, idCharge, uint64(i)), kind: kind, icd: icd, qty: 1}
		l.cpt = sk.codes[zipfCodes.pick(r)]
		if kind == svcDrug {
			l.qty = int64(between(r, 1, 4))
		}
		if kind == svcProcedure && chance(r, 0.3) {
			l.mod1 = modifiers[r.IntN(len(modifiers))]
		}
		if kind == svcEM && n > 1 && chance(r, 0.4) {
			l.mod1 = "25"
		}
		if i > 0 && chance(r, 0.3) {
			l.icd = icd10Codes[r.IntN(len(icd10Codes))]
		}
		total := math.Min(logNormal(r, sk.median, sk.sigma), sk.cap)
		unit := math.Max(1, math.Round(total/float64(l.qty)))
		l.unit = dollars(int64(unit))
		l.amt = l.unit * Amount(l.qty)
		e.lines = append(e.lines, l)
	}
}

// linesDist is lines per claim: 1: 35%, 2: 30%, 3: 17%, 4: 9%, 5-6: 6%,
// 7-12: 3%.
var linesDist = newWeighted(35, 30, 17, 9, 6, 3)

// zipfCodes ranks the ten codes of each service kind.
var zipfCodes = zipf(10, 1.0)

func (g *Generator) planSelfPay(r *rand.Rand, e *encounter) {
	ev := patEvent{}
	switch x := r.Float64(); {
	case x < 0.5:
		ev.day = e.chargeDay
	case x < 0.8:
		ev.day = e.chargeDay + between(r, 20, 50)
	default:
		return // sent to collections: nothing more at the source
	}
	for i, l := range e.lines {
		ev.lines = append(ev.lines, i)
		ev.amts = append(ev.amts, l.amt)
		ev.left = append(ev.left, 0)
	}
	e.pat = append(e.pat, ev)
	e.last = max(e.last, ev.day)
}

// planPrimary plans the primary claim's adjudication: the first ERA, and for
// a denial the rework, the second ERA and any write-off; or a take-back.
func (g *Generator) planPrimary(r *rand.Rand, e *encounter, c *claim) {
	cls := classes[payerDefs[c.payer].class]
	era1 := max(e.day+between(r, cls.eraLo, cls.eraHi), c.sent+7)
	c.icn = icnFor(r)
	r1 := &remit{claim: c, day: era1, clp: clpPrimary, final: claimPaid}
	c.remits = append(c.remits, r1)
	denied := map[int]bool{}
	cat := -1
	if chance(r, cls.denial) {
		cat = denialWeights.pick(r)
		n := len(e.lines)
		if chance(r, 0.4) {
			r1.whole = true
			r1.clp = clpDenied
			for i := range n {
				denied[i] = true
			}
		} else {
			k := 1
			if n > 2 && chance(r, 0.25) {
				k = between(r, 2, n-1)
			}
			for _, i := range r.Perm(n)[:k] {
				denied[i] = true
			}
		}
		r1.final = claimDenied
	}
	dc := denialCategories[max(cat, 0)]
	carc := dc.carcs[r.IntN(len(dc.carcs))]
	rarc := ""
	if len(dc.rarcs) > 0 && (dc.rarcReq || chance(r, 0.5)) {
		rarc = dc.rarcs[r.IntN(len(dc.rarcs))]
	}
	for i := range e.lines {
		if denied[i] {
			r1.lines = append(r1.lines, g.denyLine(e, i, cat, carc, rarc))
			continue
		}
		rl := g.payLine(r, e, i, c.payer)
		r1.lines = append(r1.lines, rl)
		e.lines[i].pr = rl.pr[0] + rl.pr[1] + rl.pr[2]
	}
	e.last = max(e.last, era1+1)
	if cat < 0 {
		if chance(r, 0.012) {
			g.planTakeback(r, e, c, r1)
		}
		return
	}
	w := &rework{day: era1 + between(r, 3, 20), remit: r1, cat: cat, appeal: dc.appeal}
	c.rework = w
	e.last = max(e.last, w.day)
	paid := chance(r, dc.success)
	w.pursue = paid || chance(r, 0.55)
	if !w.pursue {
		w.writeOff = w.day
		g.markWrittenOff(e, r1)
		return
	}
	var era2 int
	if w.appeal {
		era2 = w.day + between(r, 20, 45)
	} else {
		w.resend = w.day + 1
		era2 = w.day + between(r, 14, 35)
	}
	r2 := &remit{claim: c, idx: 1, day: era2, clp: clpPrimary, final: claimPaid}
	c.remits = append(c.remits, r2)
	for _, rl := range r1.lines {
		if !rl.denied {
			continue
		}
		i := rl.line
		if paid {
			if dc.name == catCoding && !w.appeal {
				e.lines[i].fixMod = []string{"25", "59", "XU"}[r.IntN(3)]
			}
			pl := g.payLine(r, e, i, c.payer)
			r2.lines = append(r2.lines, pl)
			e.lines[i].pr = pl.pr[0] + pl.pr[1] + pl.pr[2]
			continue
		}
		r2.lines = append(r2.lines, g.denyLine(e, i, cat, carc, rarc))
	}
	e.last = max(e.last, era2+1)
	if !paid {
		r2.final = claimDenied
		if r1.whole {
			r2.clp = clpDenied
			r2.whole = true
		}
		w.writeOff = era2 + between(r, 3, 10)
		g.markWrittenOff(e, r2)
		e.last = max(e.last, w.writeOff)
	}
}

func (g *Generator) markWrittenOff(e *encounter, r *remit) {
	for _, rl := range r.lines {
		if rl.denied {
			e.lines[rl.line].writtenOff = true
		}
	}
}

// planTakeback: the payer reverses a paid claim (CLP02 22) and pays it again
// at a lower allowed amount in the same ERA.
func (g *Generator) planTakeback(r *rand.Rand, e *encounter, c *claim, orig *remit) {
	day := orig.day + between(r, 20, 60)
	rev := &remit{claim: c, idx: len(c.remits), day: day, clp: clpReversal, reversal: orig}
	rev.lines = orig.lines
	c.remits = append(c.remits, rev)
	again := &remit{claim: c, idx: len(c.remits), day: day, clp: clpPrimary, final: claimPaid}
	cut := 0.85 + 0.1*r.Float64()
	for _, rl := range orig.lines {
		n := rl
		n.paid = Amount(math.Round(float64(rl.paid) * cut))
		n.co45 += rl.paid - n.paid
		n.allowed -= rl.paid - n.paid
		again.lines = append(again.lines, n)
	}
	c.remits = append(c.remits, again)
	e.last = max(e.last, day+1)
}

// planSecondary crosses a paid primary claim over to the patient's
// supplement, which pays the coinsurance and copay.
func (g *Generator) planSecondary(r *rand.Rand, e *encounter, primary *claim, payer int) {
	r1 := primary.remits[0]
	var lines []remitLine
	for _, rl := range r1.lines {
		owed := rl.pr[1] + rl.pr[2]
		if owed <= 0 {
			continue
		}
		l := &e.lines[rl.line]
		sl := remitLine{
			line:    rl.line,
			paid:    owed,
			allowed: rl.pr[0] + owed,
			oa23:    l.amt - rl.pr[0] - owed,
			pr:      [3]Amount{rl.pr[0], 0, 0},
			status:  tdSettled,
			cat:     -1,
		}
		lines = append(lines, sl)
	}
	if len(lines) == 0 {
		return
	}
	c := &claim{cob: 2, idx: 1, payer: payer, created: r1.day + 2, sent: r1.day + 2, icn: icnFor(r)}
	c.id = g.encID(e, idClaim, 2)
	c.nbr = e.nbr*10 + 2
	rs := &remit{claim: c, day: c.created + between(r, 10, 25), clp: clpSecondary, final: claimPaid, lines: lines}
	c.remits = []*remit{rs}
	e.claims = append(e.claims, c)
	for _, sl := range lines {
		e.lines[sl.line].sec = sl.paid
		e.lines[sl.line].secondaryLine = true
	}
	for i := range r1.lines {
		if e.lines[r1.lines[i].line].secondaryLine {
			r1.lines[i].status = tdForward
		}
	}
	e.last = max(e.last, rs.day+1)
}

// planPatient: the patient pays what the payers left, in one to three
// installments (or a small balance is written off), after the last payer
// activity.
func (g *Generator) planPatient(r *rand.Rand, e *encounter) {
	var lines []int
	var owed []Amount
	var total Amount
	for i, l := range e.lines {
		if o := l.pr - l.sec; o > 0 && !l.writtenOff {
			lines = append(lines, i)
			owed = append(owed, o)
			total += o
		}
	}
	if total <= 0 {
		return
	}
	limit := e.day + HorizonDays - 1
	switch {
	case chance(r, 0.75):
		n := []int{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3}[r.IntN(20)]
		if total < dollars(40) {
			n = 1
		}
		day := e.last + between(r, 10, 60)
		left := slices.Clone(owed)
		for k := range n {
			ev := patEvent{day: min(day, limit)}
			for j, i := range lines {
				part := owed[j] / Amount(n)
				if k == n-1 {
					part = left[j]
				}
				if part <= 0 {
					continue
				}
				left[j] -= part
				ev.lines = append(ev.lines, i)
				ev.amts = append(ev.amts, part)
				ev.left = append(ev.left, left[j])
			}
			if len(ev.lines) > 0 {
				e.pat = append(e.pat, ev)
			}
			day += between(r, 14, 30)
		}
	case total < dollars(15):
		ev := patEvent{day: min(e.last+between(r, 30, 60), limit), writeOff: true, lines: lines, amts: owed}
		ev.left = make([]Amount, len(lines))
		e.pat = append(e.pat, ev)
	default:
		return
	}
	for _, ev := range e.pat {
		e.last = max(e.last, ev.day)
	}
}

// payLine adjudicates line i as paid by payer.
func (g *Generator) payLine(r *rand.Rand, e *encounter, i, payer int) remitLine {
	l := e.lines[i]
	cls := payerDefs[payer].class
	ratio := g.payerRatio[payer] * (0.97 + 0.06*r.Float64())
	allowed := min(l.amt, Amount(math.Round(float64(l.amt)*ratio)))
	rl := remitLine{line: i, allowed: allowed, co45: l.amt - allowed, status: tdSettled, cat: -1}
	var pr [3]Amount
	left := allowed
	take := func(k int, a Amount) {
		a = max(0, min(a, left))
		pr[k] += a
		left -= a
	}
	switch cls {
	case classMedicare:
		if chance(r, 0.08) {
			take(0, dollars(int64(between(r, 20, 257))))
		}
		take(1, left.pct(20))
	case classMedicareAdvantage:
		if l.kind == svcEM && chance(r, 0.6) {
			take(2, dollars(int64(5*between(r, 1, 9))))
		} else if chance(r, 0.3) {
			take(1, left.pct(20))
		}
	case classMedicaid:
		if chance(r, 0.05) {
			take(2, dollars(int64(between(r, 1, 4))))
		}
	case classCommercial:
		if l.kind == svcEM && chance(r, 0.55) {
			take(2, dollars([]int64{20, 25, 30, 40, 50}[r.IntN(5)]))
		}
		if chance(r, 0.15) {
			take(0, Amount(logNormal(r, 15000, 0.8)))
		}
		if chance(r, 0.25) {
			take(1, left.pct(20))
		}
	}
	rl.pr = pr
	rl.paid = left
	return rl
}

func (g *Generator) denyLine(e *encounter, i, cat int, carc, rarc string) remitLine {
	return remitLine{
		line:   i,
		denied: true,
		carc:   carc,
		group:  denialCategories[cat].group,
		rarc:   rarc,
		status: tdDeny,
		cat:    cat,
	}
}

func icnFor(r *rand.Rand) string {
	const digits = "0123456789"
	b := make([]byte, 14)
	for i := range b {
		b[i] = digits[r.IntN(10)]
	}
	return string(b)
}

// encID is the GUID of a row of encounter e.
func (g *Generator) encID(e *encounter, kind uint64, parts ...uint64) UUID {
	return newID(g.opts.Seed, append([]uint64{uint64(e.day), uint64(e.practice), uint64(e.idx), kind}, parts...)...)
}

type personPlan struct {
	payer, secondary int
}

// personPlan is the patient's coverage: a payer class by the payer mix, a
// payer within it by Zipf rank, and for Medicare patients often a supplement.
func (g *Generator) personPlan(p int, person uint64) personPlan {
	r := stream(g.opts.Seed, tagPerson, uint64(p), person)
	cls := payerClass(classMix.pick(r))
	pp := personPlan{payer: -1, secondary: -1}
	if cls == classSelfPay {
		return pp
	}
	ids := g.byClass[cls]
	pp.payer = ids[zipf11[len(ids)].pick(r)]
	if cls == classMedicare && chance(r, 0.45) {
		sup := g.byClass[classSupplement]
		pp.secondary = sup[r.IntN(len(sup))]
	}
	return pp
}

var classMix = func() weighted {
	ws := make([]float64, numClasses)
	for i, c := range classes {
		ws[i] = c.share
	}
	return newWeighted(ws...)
}()

// zipf11[n] ranks n payers with s = 1.1.
var zipf11 = func() map[int]weighted {
	m := map[int]weighted{}
	for n := 1; n <= len(payerDefs); n++ {
		m[n] = zipf(n, 1.1)
	}
	return m
}()
