package synth

import (
	"context"
	"errors"
	"fmt"
)

// Matchable errors.
var (
	// ErrOtherSimulation: the source already holds a simulation with other
	// options.
	ErrOtherSimulation = errors.New("the source holds a simulation with other options")
	// ErrAlreadyPopulated: Populate found a simulation in the source.
	ErrAlreadyPopulated = errors.New("the source is already populated")
)

// Simulate runs days more simulated days against w's source and returns
// what it wrote and the progress after it. When the source holds a
// simulation (its synth_state row), Simulate continues it where it stopped,
// finishing a day a crash interrupted first; opts must then be the zero
// Options (only Catalog is used) or describe the same simulation. Otherwise
// it starts opts's simulation at day 0, whose first batch seeds the master
// tables. The source's tables must exist (CreatePostgres,
// SQLServerStatements).
func Simulate(ctx context.Context, w Writer, opts Options, days int) (Stats, State, error) {
	var total Stats
	st, ok, err := w.State(ctx)
	if err != nil {
		return total, st, err
	}
	run := opts
	if ok {
		if !zeroOptions(opts) && !sameSimulation(opts, st.Options) {
			return total, st, ErrOtherSimulation
		}
		run = st.Options
		run.Catalog = opts.Catalog
	} else {
		st = State{}
	}
	g, err := NewGenerator(run)
	if err != nil {
		return total, st, err
	}
	st.Options = g.Options()
	for range days {
		s, err := g.day(ctx, w, st.Day, st.Batch)
		total.Add(s)
		if err != nil {
			return total, st, err
		}
		st.Day, st.Batch = st.Day+1, 0
	}
	return total, st, nil
}

// Populate starts opts's simulation in an empty source and runs its first
// days: the history an initial sync loads. It fails with
// ErrAlreadyPopulated when the source holds a simulation.
func Populate(ctx context.Context, w Writer, opts Options, days int) (Stats, error) {
	_, ok, err := w.State(ctx)
	if err != nil {
		return Stats{}, err
	}
	if ok {
		return Stats{}, ErrAlreadyPopulated
	}
	s, _, err := Simulate(ctx, w, opts, days)
	if err != nil {
		return s, fmt.Errorf("populate: %w", err)
	}
	return s, nil
}

func zeroOptions(o Options) bool {
	return o.Preset == "" && o.Seed == 0 && o.Start.IsZero() && len(o.Practices) == 0 && o.EncountersPerDay == 0
}
