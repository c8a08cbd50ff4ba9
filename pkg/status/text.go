package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/terminal"
)

// Problem is a table that needs an operator.
type Problem struct {
	Org, Table string
	// What is wrong: its state (failing, expired, corrupt) or "stale".
	What string
	// Detail says what happened and what to do, for people.
	Detail string
}

func (p Problem) String() string { return p.Org + "/" + p.Table + " (" + p.What + ")" }

// Attention lists the tables that need an operator: failing, expired or
// corrupt, stale, or with the change lake behind the store (a chunk has
// waited in the lake outbox longer than the staleness threshold); none
// when all is well.
func (r *Report) Attention() []Problem {
	var out []Problem
	for _, o := range r.Orgs {
		for _, t := range o.Tables {
			switch t.State {
			case StateFailing, StateExpired:
				class := ""
				if t.LastRun != nil {
					class = t.LastRun.ErrorClass
				}
				d := fmt.Sprintf("%s since %s (%s)", t.State, t.FailingSince.Format(time.RFC3339), plural(t.Failures, "failed attempt"))
				if class != "" {
					d += ": " + class
				}
				if fix := fixOf(class, o.Name, t.Name); fix != "" {
					d += "; fix: " + fix
				}
				out = append(out, Problem{Org: o.Name, Table: t.Name, What: string(t.State), Detail: d})
			case StateCorrupt:
				out = append(out, Problem{Org: o.Name, Table: t.Name, What: string(t.State),
					Detail: "its saved position does not decode (written by a newer ehrsync, or edited); fix: " + resetFix(o.Name, t.Name)})
			}
			if l := t.Lake; l != nil && l.Behind {
				out = append(out, Problem{Org: o.Name, Table: t.Name, What: "lake behind",
					Detail: fmt.Sprintf("%s (%s, %s) committed to the store have waited for the change lake since %s, longer than %s: "+
						"the lake's flushes fail or do not run; the run's log names why (lake_failed); fix it, then ehrsync lake flush --config FILE",
						plural(int(l.Waiting.Chunks), "chunk"), plural(int(l.Waiting.Rows), "row"), size(l.Waiting.Bytes),
						l.Waiting.Since.Format(time.RFC3339), span(time.Duration(t.StaleAfterSeconds*float64(time.Second))))})
			}
			if t.Stale {
				out = append(out, Problem{Org: o.Name, Table: t.Name, What: "stale",
					Detail: fmt.Sprintf("last synced %s ago, longer than %s: check that a daemon (ehrsync run) or a scheduled ehrsync sync runs it",
						span(r.At.Sub(t.SyncedAt)), span(time.Duration(t.StaleAfterSeconds*float64(time.Second))))})
			}
		}
	}
	return out
}

// engineFixes are the fixes of the engine's own error classes
// (engine.Class); the source's are source.Classes'.
var engineFixes = map[string]string{
	"position_expired": "the source no longer holds the changes after the saved position (on_expired: fail): " +
		"reset the position to re-snapshot the table (%s), or set on_expired: resnapshot",
	"store_unavailable":     "check that the store is up and reachable from where ehrsync runs (ehrsync check)",
	"audit_not_written":     "check that the writer role may INSERT into ehrsync.audit (docs/operations-store.md)",
	"source_schema_changed": "the source table changed: the run's log names the column and the fix (the table's columns allow-list)",
	"run_timeout":           "the table's run took longer than defaults.run_timeout: raise it, or lower the batch size",
	"duplicate_source_keys": "the source sent one key twice during the table's first snapshot, so its primary key cannot be built " +
		"(the run's log names the query that finds them): fix the source, empty the store table (TRUNCATE), then %s",
	"lake_failed": "the store has the changes, the change lake does not yet: they wait in the table's lake outbox. " +
		"The run's log names the cause (storage unreachable, credentials, catalog); fix it, then ehrsync lake flush --config FILE, or wait for the next run",
}

// fixOf is what to do about a failure of class, for org's table.
func fixOf(class, org, table string) string {
	if f, ok := engineFixes[class]; ok {
		if strings.Contains(f, "%s") {
			return fmt.Sprintf(f, resetFix(org, table))
		}
		return f
	}
	for _, c := range source.Classes() {
		if c.Code == class {
			return c.Fix
		}
	}
	return ""
}

func resetFix(org, table string) string {
	return fmt.Sprintf("ehrsync positions reset --config FILE --org %s --table %s --confirm %s/%s", org, table, org, table)
}

// WriteJSON writes the report as one indented JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}

// WriteText writes the report for people: one line per table, then a line
// per table that needs an operator. Names are escaped for a terminal
// (terminal.Escape); positions are their summaries.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "status as of %s (from the %s)\n", r.At.Format(time.RFC3339), r.From)
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	for _, o := range r.Orgs {
		if d := o.Daemon; d != nil {
			fmt.Fprintf(w, "%s: daemon %s", terminal.Escape(o.Name), d.State)
			if d.Queued {
				fmt.Fprint(w, ", a run queued")
			}
			if !d.Paused && !d.NextRun.IsZero() {
				fmt.Fprintf(w, ", next run %s", d.NextRun.UTC().Format(time.RFC3339))
			}
			fmt.Fprintln(w)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\nORG\tTABLE\tSTRATEGY\tSTATE\tPOSITION\tLAST RUN\tRESULT\tROWS\tSYNCED\tLAST CHANGE\tNEXT RUN\tLEASE")
	counts := map[State]int{}
	n := 0
	for _, o := range r.Orgs {
		for _, t := range o.Tables {
			counts[t.State]++
			n++
			state := strings.ReplaceAll(string(t.State), "_", " ")
			if t.Stale {
				state += ", stale"
			}
			pos := "-"
			if t.Position != nil {
				pos = terminal.Escape(t.Position.Text)
			}
			lastRun, result, rows := "-", "-", "-"
			if l := t.LastRun; l != nil {
				lastRun, result, rows = ago(r.At, l.FinishedAt), l.Outcome, fmt.Sprint(l.Rows)
				if l.ErrorClass != "" && l.Outcome != OutcomeCanceled {
					result += ": " + l.ErrorClass
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", terminal.Escape(o.Name), terminal.Escape(t.Name),
				t.Strategy, state, pos, lastRun, result, rows, ago(r.At, t.SyncedAt), ago(r.At, t.LastChangeAt),
				next(r.At, t, o.Daemon), leaseText(t.Lease))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if err := r.writeLake(w); err != nil {
		return err
	}
	problems := r.Attention()
	var parts []string
	for _, s := range []State{StateSynced, StateSnapshotting, StateFailing, StateExpired, StateCorrupt, StateReset, StateNeverRun} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], strings.ReplaceAll(string(s), "_", " ")))
		}
	}
	fmt.Fprintf(w, "\n%d tables: %s; %d need attention\n", n, strings.Join(parts, ", "), len(problems))
	for _, p := range problems {
		fmt.Fprintf(w, "  %s %s: %s\n", terminal.Escape(p.Org), terminal.Escape(p.Table), terminal.Escape(p.Detail))
	}
	return nil
}

// next is a table's NEXT RUN column.
func next(at time.Time, t Table, d *DaemonOrg) string {
	switch {
	case d != nil && d.Paused:
		return "paused"
	case t.NextRun.IsZero():
		return "-"
	case t.Overdue:
		return "overdue (was due " + span(at.Sub(t.NextRun)) + " ago)"
	case t.NextRun.Before(at):
		return "due now"
	}
	return "in " + span(t.NextRun.Sub(at))
}

func leaseText(l *Lease) string {
	switch {
	case l == nil:
		return "-"
	case l.Holder != "":
		return "held by " + terminal.Escape(l.Holder)
	}
	return fmt.Sprintf("held (store pid %d)", l.PID)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// ago is how long before at t was, for people; "-" for no time.
func ago(at, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return span(at.Sub(t)) + " ago"
}

// span is a duration for people: seconds under a minute, then minutes,
// then hours and minutes, then days and hours.
func span(d time.Duration) string {
	d = max(d, 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
}

// writeLake writes the tables with lake on: the lake's last commit, the
// rows it holds, the position it holds to (its summary) and what waits in
// the outbox. Nothing when no table has lake on.
func (r *Report) writeLake(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	n := 0
	for _, o := range r.Orgs {
		for _, t := range o.Tables {
			l := t.Lake
			if l == nil {
				continue
			}
			if n == 0 {
				fmt.Fprintln(tw, "\nORG\tTABLE\tLAKE COMMIT\tCLAIM\tLAKE ROWS\tLAKE POSITION\tWAITING")
			}
			n++
			pos := "-"
			switch {
			case l.PositionUnreadable:
				pos = "unreadable"
			case l.Position != nil:
				pos = terminal.Escape(l.Position.Text)
			}
			commit := "never"
			if !l.CommittedAt.IsZero() {
				commit = ago(r.At, l.CommittedAt)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\n", terminal.Escape(o.Name), terminal.Escape(t.Name),
				commit, l.Claim, l.Rows, pos, waiting(r.At, l))
		}
	}
	return tw.Flush()
}

// waiting is a lake's WAITING column.
func waiting(at time.Time, l *Lake) string {
	wt := l.Waiting
	if wt.Chunks == 0 {
		return "nothing"
	}
	s := fmt.Sprintf("%s, %s, %s, oldest %s", plural(int(wt.Chunks), "chunk"), plural(int(wt.Rows), "row"), size(wt.Bytes), ago(at, wt.Since))
	if l.Behind {
		s += " (behind)"
	}
	return s
}

// size is a byte count for people.
func size(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
