package cdc

import (
	"context"
	"fmt"
	"time"
)

// Health is the capture agent's health as `ehrsync check` reports it (P6).
type Health struct {
	Status AgentStatus
	// Stale is true when the highest harvested LSN lags the database's
	// activity: committed log the agent has not harvested, no log scan for
	// longer than the allowed lag, or capture errors.
	Stale bool
	// Reason says why Stale, or why the health is unknown; "" when healthy.
	Reason string
}

// CheckAgent reports whether src's capture agent keeps up: a stopped or
// stalled agent makes a busy table look idle, because the window's bound
// (the highest harvested LSN) stops moving (P6). maxLag is how long the
// agent may go without finishing a log scan (the capture job polls every 5
// seconds by default). A source without the AgentProber ability, or a login
// without the needed grant, gives a Health whose Reason says so; it is not
// an error.
func CheckAgent(ctx context.Context, src Source, maxLag time.Duration) (Health, error) {
	p, ok := src.(AgentProber)
	if !ok {
		return Health{Reason: "this source cannot report on its capture agent"}, nil
	}
	st, err := p.Agent(ctx)
	if err != nil {
		return Health{}, fmt.Errorf("check capture agent: %w", err)
	}
	h := Health{Status: st}
	switch {
	case st.Unknown != "":
		h.Reason = "capture agent health unknown: " + st.Unknown
	case st.Errors > 0:
		h.Stale, h.Reason = true, fmt.Sprintf("the capture job reports %d errors (sys.dm_cdc_errors)", st.Errors)
	case st.HarvestedLSN.IsZero():
		h.Stale, h.Reason = true, "the capture job has harvested nothing: is SQL Server Agent running?"
	case st.SinceScan > maxLag:
		h.Stale, h.Reason = true, fmt.Sprintf("no log scan for %s: the capture job is stopped or stalled", st.SinceScan.Round(time.Second))
	case st.SinceScan < 0:
		h.Reason = "capture agent health unknown: no finished log scan on record (the server restarted or failed over, or this is an Availability Group secondary)"
	}
	return h, nil
}
