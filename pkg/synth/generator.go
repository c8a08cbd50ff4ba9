package synth

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"
)

// Generator simulates the practices of one NextGen database day by day. It
// is not safe for concurrent use.
type Generator struct {
	opts     Options
	tables   map[string]*tableRows
	colLists map[string][]string

	perPractice []int // mean encounters a day per practice
	poolSize    int
	locations   [][]UUID
	providers   [][]UUID
	byClass     [numClasses][]int
	payerRatio  []float64
	payerIDs    []UUID
	reasonIDs   map[string]UUID
	tranCodeIDs [numTranCodes]UUID

	counts [][]int   // [practice][day] encounters registered
	nbrs   [][]int64 // [practice][day] enc_nbr of the day's first encounter

	live    []*encounter // encounters with activity on or after ready
	ready   int          // the day live is the state at the start of; -1 none
	started time.Time    // Options.Start
}

// NewGenerator returns a generator for opts (defaults filled in).
func NewGenerator(opts Options) (*Generator, error) {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return nil, fmt.Errorf("synth options: %w", err)
	}
	g := &Generator{
		opts:     opts,
		tables:   map[string]*tableRows{},
		colLists: map[string][]string{},
		ready:    -1,
		started:  opts.Start,
	}
	for _, name := range []string{tEncounter, tCharges, tClaims, tTransactions, tTransDetail, tReasonLinks, tPayers, tReasons, tTranCodes} {
		t, _ := opts.Catalog.Table(name)
		tr, err := newTableRows(t)
		if err != nil {
			return nil, err
		}
		g.tables[name] = tr
	}
	np := len(opts.Practices)
	seed := opts.Seed
	for p := range np {
		n := opts.EncountersPerDay / np
		if p < opts.EncountersPerDay%np {
			n++
		}
		g.perPractice = append(g.perPractice, n)
		g.poolSize = max(g.poolSize, 200, 40*n)
		var locs, provs []UUID
		for k := range min(6, 1+n/200) {
			locs = append(locs, newID(seed, tagMaster, strID("location"), uint64(p), uint64(k)))
		}
		for k := range min(200, 2+n/12) {
			provs = append(provs, newID(seed, tagMaster, strID("provider"), uint64(p), uint64(k)))
		}
		g.locations = append(g.locations, locs)
		g.providers = append(g.providers, provs)
	}
	g.counts = make([][]int, np)
	g.nbrs = make([][]int64, np)
	for i, p := range payerDefs {
		g.byClass[p.class] = append(g.byClass[p.class], i)
		cls := classes[p.class]
		u := float64(hashOf(seed, tagMaster, strID("ratio"), uint64(i))>>11) / (1 << 53)
		g.payerRatio = append(g.payerRatio, cls.allowLo+(cls.allowHi-cls.allowLo)*u)
		g.payerIDs = append(g.payerIDs, newID(seed, tagMaster, strID("payer"), uint64(i)))
	}
	g.reasonIDs = map[string]UUID{}
	for _, rd := range reasonDefs {
		g.reasonIDs[rd.code] = newID(seed, tagMaster, strID("reason"), strID(rd.code))
	}
	for i := range g.tranCodeIDs {
		g.tranCodeIDs[i] = newID(seed, tagMaster, strID("trancode"), uint64(i))
	}
	return g, nil
}

// Options returns the generator's options, defaults filled in.
func (g *Generator) Options() Options { return g.opts }

// count is the number of encounters practice p registers on day.
func (g *Generator) count(day, p int) int {
	for len(g.counts[p]) <= day {
		d := len(g.counts[p])
		r := stream(g.opts.Seed, tagCount, uint64(d), uint64(p))
		n := int(math.Round(float64(g.perPractice[p]) * (0.9 + 0.2*r.Float64())))
		var base int64 = 100000
		if d > 0 {
			base = g.nbrs[p][d-1] + int64(g.counts[p][d-1])
		}
		g.counts[p] = append(g.counts[p], n)
		g.nbrs[p] = append(g.nbrs[p], base)
	}
	return g.counts[p][day]
}

// encounters plans the encounters practice p registers on day.
func (g *Generator) encounters(day, p int) []*encounter {
	n := g.count(day, p)
	out := make([]*encounter, n)
	for i := range n {
		out[i] = g.planEncounter(day, p, i, g.nbrs[p][day]+int64(i)+1)
	}
	return out
}

// prepare makes live the state at the start of day: the encounters of the
// HorizonDays days before it that still have activity.
func (g *Generator) prepare(day int) {
	if g.ready == day {
		return
	}
	g.live = g.live[:0]
	for d := max(0, day-HorizonDays); d < day; d++ {
		for p := range g.opts.Practices {
			for _, e := range g.encounters(d, p) {
				if e.last >= day {
					compact(e, day)
					g.live = append(g.live, e)
				}
			}
		}
	}
	g.ready = day
}

// compact drops what e no longer needs from day on: its claims once they
// have no activity left (the patient's payments only need the lines).
func compact(e *encounter, day int) {
	if e.claimsLast < day {
		e.claims = nil
	}
}

// Day simulates day (0 is Options.Start) and applies its batches through w,
// each in its own transaction, recording the progress with each. It
// returns what it wrote. Day does not read the stored progress: Simulate
// continues a simulation where it stopped.
func (g *Generator) Day(ctx context.Context, w Writer, day int) (Stats, error) {
	return g.day(ctx, w, day, 0)
}

// day applies the batches of day from batch from on.
func (g *Generator) day(ctx context.Context, w Writer, day, from int) (Stats, error) {
	var st Stats
	if day < 0 {
		return st, fmt.Errorf("day %d is negative", day)
	}
	batches := g.Batches(day)
	for _, b := range batches[min(from, len(batches)):] {
		if err := w.Apply(ctx, b); err != nil {
			return st, fmt.Errorf("day %d batch %d (%s): %w", day, b.Seq, b.Kind, err)
		}
		st.count(b)
	}
	return st, nil
}

// Batches returns the source transactions of day, in order, and advances the
// generator to the next day. Days may be asked for in any order; a day other
// than the one after the last rebuilds the state by re-planning.
func (g *Generator) Batches(day int) []*Batch {
	g.prepare(day)
	dayBuilder := &dayPlan{g: g, day: day}
	for p := range g.opts.Practices {
		g.live = append(g.live, g.encounters(day, p)...)
	}
	batches := dayBuilder.build()
	// The state at the start of the next day.
	g.live = slices.DeleteFunc(g.live, func(e *encounter) bool { return e.last <= day })
	for _, e := range g.live {
		compact(e, day+1)
	}
	g.ready = day + 1

	state := State{Options: g.opts}
	for i, b := range batches {
		b.Day, b.Seq = day, i
		state.Day, state.Batch = day, i+1
		if i+1 == len(batches) {
			state.Day, state.Batch = day+1, 0
		}
		b.Progress = state
	}
	return batches
}
