package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/ehrsync/ehrsync/pkg/terminal"
)

// WriteJSON writes the report as indented JSON (schema: SchemaVersion, see
// docs/operations-connect.md).
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report as tables for people. Organization, table
// and column names are escaped for the terminal (terminal.Escape): a name
// with a control character cannot rewrite what the report shows.
func (r Report) WriteText(w io.Writer) error {
	if st := r.Store; st != nil {
		fmt.Fprintf(w, "store: %s\n", state(st.Healthy))
		if err := writeSteps(w, st.Warnings, st.Steps); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	if l := r.Lake; l != nil {
		fmt.Fprintf(w, "lake: %s (warehouse %s)\n", state(l.Healthy), terminal.Escape(l.Warehouse))
		if err := writeSteps(w, l.Warnings, l.Steps); err != nil {
			return err
		}
		fmt.Fprintln(w)
	}
	for _, o := range r.Orgs {
		fmt.Fprintf(w, "org %s (%s via %s): %s\n", terminal.Escape(o.Name), o.Dialect, o.Via, state(o.Healthy))
		if err := writeSteps(w, o.Warnings, o.Steps); err != nil {
			return err
		}
		if len(o.Tables) > 0 {
			tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "  TABLE\tRESULT\tEXISTS\tKEY\tCDC\tCT\tPERMISSIONS\tSTRATEGY")
			for _, t := range o.Tables {
				fmt.Fprintf(tw, "  %s\t%s\t%t\t%s\t%s\t%s\t%s\t%s\n", terminal.Escape(t.Name), t.Status, t.Exists, orDash(terminal.Escape(strings.Join(t.Key, ","))),
					orDash(t.CDC), orDash(t.CT), permText(t.Permissions), orDash(t.Strategy))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, t := range o.Tables {
				t.Name = terminal.Escape(t.Name)
				if t.Why != "" {
					fmt.Fprintf(w, "  %s: %s", t.Name, t.Why)
					if t.Blind != "" {
						fmt.Fprintf(w, "; cannot see %s", t.Blind)
					}
					fmt.Fprintln(w)
				}
				for _, n := range t.Notes {
					fmt.Fprintf(w, "  %s: note: %s\n", t.Name, n)
				}
				for _, p := range t.Problems {
					writeProblem(w, t.Name, p)
				}
				for _, p := range t.Permissions {
					switch {
					case p.Granted == nil && p.Needed:
						fmt.Fprintf(w, "  %s: %s could not be checked with this login's rights; if missing: %s\n", t.Name, p.Name, p.Grant)
					case p.Granted != nil && !*p.Granted && !p.Needed && p.Grant != "":
						// Not needed by the planned strategy, but what a
						// better one (CDC, Change Tracking) lacks.
						fmt.Fprintf(w, "  %s: %s: no (not needed by the planned strategy; CDC or Change Tracking would need it): %s\n", t.Name, p.Name, p.Grant)
					}
				}
			}
		}
		fmt.Fprintln(w)
	}
	return nil
}

func state(healthy bool) string {
	if healthy {
		return "HEALTHY"
	}
	return "UNHEALTHY"
}

// writeSteps writes a section's warnings, its steps as a table, and each
// failed step's problem with its fix.
func writeSteps(w io.Writer, warnings []string, steps []Step) error {
	for _, wn := range warnings {
		fmt.Fprintf(w, "  WARNING: %s\n", wn)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tRESULT\tTIME\tDETAIL")
	for _, s := range steps {
		fmt.Fprintf(tw, "  %s\t%s\t%dms\t%s\n", s.Name, s.Status, s.DurationMS, s.Detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range steps {
		if s.Problem != nil {
			writeProblem(w, s.Name, *s.Problem)
		}
	}
	return nil
}

func writeProblem(w io.Writer, where string, p Problem) {
	fmt.Fprintf(w, "  %s: [%s] %s\n    fix: %s\n", terminal.Escape(where), p.Code, p.Cause, p.Fix)
	if p.Grant != "" {
		fmt.Fprintf(w, "    grant: %s\n", p.Grant)
	}
}

func permText(ps []Permission) string {
	var parts []string
	for _, p := range ps {
		mark := "?"
		if p.Granted != nil {
			mark = "no"
			if *p.Granted {
				mark = "yes"
			}
		}
		parts = append(parts, p.Name+"="+mark)
	}
	return orDash(strings.Join(parts, " "))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
