package synth

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/ehrsync/ehrsync/schemas"
)

// Preset is a workload size (DOMAIN.md §5).
type Preset string

// The presets.
const (
	// Small: 150 encounters a day, 1 practice.
	Small Preset = "small"
	// Medium: 1,500 encounters a day, 3 practices.
	Medium Preset = "medium"
	// Large: 15,000 encounters a day, 10 practices.
	Large Preset = "large"
)

var presets = map[Preset]struct{ perDay, practices int }{
	Small:  {150, 1},
	Medium: {1500, 3},
	Large:  {15000, 10},
}

// DefaultStart is the first simulated day when Options.Start is zero: a
// fixed date, so that a seed alone fixes the data.
var DefaultStart = time.Date(2025, time.January, 6, 0, 0, 0, 0, time.UTC)

// HorizonDays bounds an encounter's activity: nothing happens to an
// encounter's rows later than this many days after its date of service.
// Rebuilding a generator's state at day D re-plans the encounters of the
// HorizonDays days before D.
const HorizonDays = 200

// Options fix a simulation. The same Options give the same data.
type Options struct {
	// Preset is the workload size; default Small.
	Preset Preset `json:"preset"`
	// Seed seeds every random decision.
	Seed uint64 `json:"seed"`
	// Start is the first simulated day (day 0); only its date counts.
	// Default DefaultStart.
	Start time.Time `json:"start"`
	// Practices are the practice ids (char(4)); default "0001", "0002", ...
	// as many as the preset has.
	Practices []string `json:"practices,omitempty"`
	// EncountersPerDay overrides the preset's volume (all practices
	// together) when positive.
	EncountersPerDay int `json:"encounters_per_day,omitempty"`
	// Catalog is the table catalog to generate for; default
	// schemas.NextGen(). Not stored with the simulation's state.
	Catalog *schemas.Catalog `json:"-"`
}

// withDefaults returns o with its defaults filled in.
func (o Options) withDefaults() Options {
	if o.Preset == "" {
		o.Preset = Small
	}
	if o.Start.IsZero() {
		o.Start = DefaultStart
	}
	o.Start = time.Date(o.Start.Year(), o.Start.Month(), o.Start.Day(), 0, 0, 0, 0, time.UTC)
	if p, ok := presets[o.Preset]; ok {
		if len(o.Practices) == 0 {
			for i := range p.practices {
				o.Practices = append(o.Practices, fmt.Sprintf("%04d", i+1))
			}
		}
		if o.EncountersPerDay <= 0 {
			o.EncountersPerDay = p.perDay
		}
	}
	o.Practices = slices.Clone(o.Practices)
	if o.Catalog == nil {
		o.Catalog = schemas.NextGen()
	}
	return o
}

// Validate checks o (after defaults): a known preset, 1 to 100 distinct
// practice ids of exactly 4 characters, a positive volume.
func (o Options) Validate() error {
	o = o.withDefaults()
	var errs []error
	if _, ok := presets[o.Preset]; !ok {
		errs = append(errs, fmt.Errorf("preset %q is not small, medium or large", o.Preset))
	}
	if len(o.Practices) > 100 {
		errs = append(errs, fmt.Errorf("%d practices: at most 100", len(o.Practices)))
	}
	seen := map[string]bool{}
	for _, p := range o.Practices {
		if len(p) != 4 {
			errs = append(errs, fmt.Errorf("practice id %q is not 4 characters", p))
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("practice id %q listed twice", p))
		}
		seen[p] = true
	}
	if o.EncountersPerDay > 1_000_000 {
		errs = append(errs, fmt.Errorf("encounters per day %d: at most 1000000", o.EncountersPerDay))
	}
	for _, name := range []string{tEncounter, tCharges, tClaims, tTransactions, tTransDetail, tReasonLinks, tPayers, tReasons, tTranCodes} {
		if _, ok := o.Catalog.Table(name); !ok {
			errs = append(errs, fmt.Errorf("catalog has no table %s", name))
		}
	}
	return errors.Join(errs...)
}

// sameSimulation reports whether a and b (with defaults) describe the same
// simulation.
func sameSimulation(a, b Options) bool {
	a, b = a.withDefaults(), b.withDefaults()
	return a.Preset == b.Preset && a.Seed == b.Seed && a.Start.Equal(b.Start) &&
		slices.Equal(a.Practices, b.Practices) && a.EncountersPerDay == b.EncountersPerDay
}
