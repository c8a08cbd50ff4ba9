package main

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/backfill"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/synth"
	"github.com/ehrsync/ehrsync/pkg/terminal"
)

// Progress lines: sync, backfill and simulate draw one on stderr when it is
// a terminal (pkg/terminal keeps the log lines off it), unless
// --no-progress.

// noProgressFlag adds --no-progress to c.
func noProgressFlag(c *cobra.Command) *bool {
	return c.Flags().Bool("no-progress", false, "draw no progress line on stderr (one is drawn only when stderr is a terminal)")
}

// meter is the progress meter on env's console; nil when off or when
// stderr is not a terminal.
func (env *environment) meter(off bool) *terminal.Meter {
	if off || env.console == nil || !env.console.TTY() {
		return nil
	}
	return terminal.NewMeter(env.console)
}

// syncProgress draws each table's progress on m; nil (the engine then asks
// the source for no estimate) when m is nil.
func syncProgress(m *terminal.Meter) func(engine.Progress) {
	if m == nil {
		return nil
	}
	return func(p engine.Progress) {
		name := p.Org + " " + p.Table
		if p.Done {
			m.Finish(name)
			return
		}
		m.Update(terminal.Progress{Name: name, Rows: p.Rows, Estimate: p.Estimate})
	}
}

// backfillLines shows a backfill's progress: on the meter (nil: none)
// while a table runs, then the table's last line, when it is done, on w.
// Tables are backfilled one at a time.
type backfillLines struct {
	w       io.Writer
	m       *terminal.Meter
	running string // the table on the meter
}

func (l *backfillLines) show(p backfill.Progress) {
	tp := terminal.Progress{Name: p.Org + " " + p.Table, Rows: p.Rows, Estimate: p.Estimate, Elapsed: p.Elapsed, Done: p.Done}
	if p.Resumed {
		tp.Note = "resumed"
	}
	if p.Done {
		l.end()
		fmt.Fprintln(l.w, tp.String())
		return
	}
	if l.m != nil {
		l.m.Update(tp)
		l.running = tp.Name
	}
}

// end takes the table off the meter (before its failure is printed).
func (l *backfillLines) end() {
	if l.running != "" {
		l.m.Finish(l.running)
		l.running = ""
	}
}

// simulateProgress is w drawing a simulation of days days on m (nil: w
// itself): the day, and the rows written, with an estimate of the rows in
// all from those of the days done. Call end when the simulation ends.
func simulateProgress(w synth.Writer, m *terminal.Meter, days int) (synth.Writer, func()) {
	if m == nil {
		return w, func() {}
	}
	mw := &meteredWriter{Writer: w, m: m, days: days, first: -1}
	return mw, func() { m.Finish(meteredName) }
}

const meteredName = "simulate"

// meteredWriter draws the progress of a simulation's batches as they are
// applied.
type meteredWriter struct {
	synth.Writer
	m     *terminal.Meter
	days  int
	first int // the first day applied; -1 before the first batch
	rows  int64
}

func (w *meteredWriter) Apply(ctx context.Context, b *synth.Batch) error {
	if err := w.Writer.Apply(ctx, b); err != nil {
		return err
	}
	if w.first < 0 {
		w.first = b.Day
	}
	for _, op := range b.Ops {
		w.rows += int64(len(op.Rows))
	}
	done := b.Day - w.first // days ended before this batch's
	if b.Progress.Day > b.Day {
		done++ // the day's last batch
	}
	var estimate int64
	if done > 0 {
		estimate = w.rows * int64(w.days) / int64(done)
	}
	w.m.Update(terminal.Progress{Name: meteredName, Step: fmt.Sprintf("day %d of %d", b.Day-w.first+1, w.days),
		Rows: w.rows, Estimate: estimate})
	return nil
}
