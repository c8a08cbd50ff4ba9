package terminal

import (
	"fmt"
	"strings"
	"sync"
	"time"
)

// Progress is one task's progress: what a progress line shows of it.
type Progress struct {
	Name     string // what runs: "st-mary dbo.claims"
	Step     string // where it is, for a task of steps: "day 3 of 10"
	Rows     int64  // rows so far
	Estimate int64  // rows expected in all; 0 unknown
	Elapsed  time.Duration
	Note     string // shown in parentheses: "resumed"
	Done     bool
}

// RowsPerSec is the average rate since the start; 0 before any time passed.
func (p Progress) RowsPerSec() float64 {
	if s := p.Elapsed.Seconds(); s > 0 {
		return float64(p.Rows) / s
	}
	return 0
}

// ETA is the time left at the average rate; 0 when unknown (no estimate,
// no rate yet, past the estimate, done).
func (p Progress) ETA() time.Duration {
	rate := p.RowsPerSec()
	if p.Done || p.Estimate <= p.Rows || rate <= 0 {
		return 0
	}
	return time.Duration(float64(p.Estimate-p.Rows) / rate * float64(time.Second))
}

// String is the progress on one line, its name and step escaped:
// "st-mary dbo.claims: 1200 rows of ~5000 (24%), 400 rows/s, 3s elapsed,
// ETA 9s (resumed)", ending ", done" when done.
func (p Progress) String() string {
	var b strings.Builder
	b.WriteString(Escape(p.Name))
	if p.Step != "" {
		b.WriteString(" " + Escape(p.Step))
	}
	fmt.Fprintf(&b, ": %d rows", p.Rows)
	if p.Estimate > 0 {
		fmt.Fprintf(&b, " of ~%d (%.0f%%)", p.Estimate, p.fraction()*100)
	}
	fmt.Fprintf(&b, ", %.0f rows/s, %s elapsed", p.RowsPerSec(), p.Elapsed.Round(time.Second))
	if eta := p.ETA().Round(time.Second); eta > 0 {
		fmt.Fprintf(&b, ", ETA %s", eta)
	}
	if p.Note != "" {
		b.WriteString(" (" + Escape(p.Note) + ")")
	}
	if p.Done {
		b.WriteString(", done")
	}
	return b.String()
}

// Bar is String after a bar of the fraction done, when there is an
// estimate: "[######..................] st-mary dbo.claims: ...".
func (p Progress) Bar() string {
	if p.Estimate <= 0 {
		return p.String()
	}
	const width = 20
	n := int(p.fraction() * width)
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "] " + p.String()
}

// fraction is the part done, at most 1.
func (p Progress) fraction() float64 {
	return min(float64(p.Rows)/float64(p.Estimate), 1)
}

// Meter shows the progress of running tasks on a console's status line:
// one task with its bar, several side by side. It redraws at most every
// 200ms (a task starting, finishing or changing step redraws at once), and draws nothing
// on a console that is not a terminal. It is safe for concurrent use.
type Meter struct {
	c     *Console
	now   func() time.Time
	every time.Duration

	mu    sync.Mutex
	tasks []*task // running, in the order they started
	drawn time.Time
}

type task struct {
	p     Progress
	start time.Time
}

// NewMeter returns a meter drawing on c.
func NewMeter(c *Console) *Meter {
	return &Meter{c: c, now: time.Now, every: 200 * time.Millisecond}
}

// Update sets the progress of the task p.Name, starting it when it is new.
// Its Elapsed is the meter's: the time since the task started.
func (m *Meter) Update(p Progress) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	t := m.find(p.Name)
	force := t == nil || t.p.Step != p.Step
	if t == nil {
		t = &task{start: now}
		m.tasks = append(m.tasks, t)
	}
	t.p = p
	if force || now.Sub(m.drawn) >= m.every {
		m.draw(now)
	}
}

// Finish ends the task name: it leaves the status line, which is removed
// with the last task.
func (m *Meter) Finish(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, t := range m.tasks {
		if t.p.Name == name {
			m.tasks = append(m.tasks[:i], m.tasks[i+1:]...)
			m.draw(m.now())
			return
		}
	}
}

func (m *Meter) find(name string) *task {
	for _, t := range m.tasks {
		if t.p.Name == name {
			return t
		}
	}
	return nil
}

// draw shows the running tasks as they are at now.
func (m *Meter) draw(now time.Time) {
	m.drawn = now
	parts := make([]string, len(m.tasks))
	for i, t := range m.tasks {
		p := t.p
		p.Elapsed = now.Sub(t.start)
		parts[i] = p.String()
		if len(m.tasks) == 1 {
			parts[i] = p.Bar()
		}
	}
	m.c.SetStatus(strings.Join(parts, " | "))
}
