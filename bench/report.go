package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"text/tabwriter"
)

// WriteJSON writes the report to path, creating its directory.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) error {
	fmt.Fprintf(w, "%d rows of %.0f bytes, %d CPUs (%s), PostgreSQL %s, %s; median of %d trials\n\n",
		r.Rows, r.RowBytes, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.Postgres, r.Machine.Go, r.Trials)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "SCENARIO\tROWS\tSECONDS\tROWS/S\tMB/S\tCPU µs/ROW\tPG CPU µs/ROW\tALL CPU µs/ROW\tCPU-BOUND S\tPEAK RSS MB\tCHECKED\t")
	for _, s := range r.Scenarios {
		rss := "-"
		if s.PeakRSSMB > 0 {
			rss = fmt.Sprintf("%.0f", s.PeakRSSMB)
		}
		pg, all, bound := "-", "-", "-"
		if s.TotalCPUMicrosPerRow > 0 {
			pg = fmt.Sprintf("%.2f", s.ServerCPUMicrosPerRow)
			all = fmt.Sprintf("%.2f", s.TotalCPUMicrosPerRow)
			bound = fmt.Sprintf("%.2f", s.CPUBoundSeconds)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.0f\t%.1f\t%.2f (%s)\t%s\t%s\t%s\t%s\t%s\t\n",
			s.Name, s.Rows, s.Seconds, s.RowsPerSec, s.MBPerSec, s.CPUMicrosPerRow, s.CPUOf, pg, all, bound, rss, s.Verified)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nPG CPU: the PostgreSQL server's (source and store); ALL CPU: every process's; CPU-BOUND S: ALL CPU over the %d CPUs, the least time the scenario's work can take here\n", r.Machine.CPUs)
	for _, s := range r.Scenarios {
		if s.SourceCPUMicrosPerRow > 0 {
			fmt.Fprintf(w, "%s: the SQL Server stand-in (this process) used %.2f µs of CPU per row\n", s.Name, s.SourceCPUMicrosPerRow)
		}
		if s.LakeMB > 0 {
			fmt.Fprintf(w, "%s: the lake holds %.1f MB of Parquet, %.1f MB/s of the scenario's seconds\n", s.Name, s.LakeMB, s.LakeMBPerSec)
		}
	}
	for _, s := range r.Scenarios {
		if len(s.TrialSeconds) > 0 {
			fmt.Fprintf(w, "%s trials (s):", s.Name)
			for _, t := range s.TrialSeconds {
				fmt.Fprintf(w, " %.2f", t)
			}
			fmt.Fprintf(w, "; CPU µs/row:")
			for _, c := range s.TrialCPUMicrosPerRow {
				fmt.Fprintf(w, " %.2f", c)
			}
			fmt.Fprintln(w)
		}
	}
	names := make([]string, 0, len(r.Ratios))
	for n := range r.Ratios {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w)
	for _, n := range names {
		fmt.Fprintf(w, "%s = %.2f\n", n, r.Ratios[n])
	}
	_, err := fmt.Fprintf(w, "total %.0f s\n", r.TotalSeconds)
	return err
}
