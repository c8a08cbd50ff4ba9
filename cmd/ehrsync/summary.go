package main

import (
	"encoding/json"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/watermarks"
)

// summarySchemaVersion is the version of the --json summary of sync and
// backfill; it changes when a key changes meaning or goes away.
const summarySchemaVersion = 1

// runSummary is the --json output of sync and backfill: per organization
// and table what the run did. It carries no row values: positions are
// summaries (watermarks.Summary), errors their text and class.
type runSummary struct {
	SchemaVersion int          `json:"schema_version"`
	OK            bool         `json:"ok"` // no organization or table failed: the exit code is 0
	Orgs          []orgSummary `json:"orgs"`
}

type orgSummary struct {
	Org   string `json:"org"`
	RunID string `json:"run_id,omitempty"`
	// Result is ok, failed (the organization's run failed before its
	// tables: Error says why) or stopped (canceled before every table ran).
	Result     string         `json:"result"`
	Error      string         `json:"error,omitempty"`
	ErrorClass string         `json:"error_class,omitempty"`
	Tables     []tableSummary `json:"tables"`
}

type tableSummary struct {
	Table string `json:"table"`
	// RunID is the run's id in the position history and the audit.
	RunID    string `json:"run_id,omitempty"`
	Strategy string `json:"strategy,omitempty"`
	// Result is ok, failed, canceled (interrupted: the next run resumes
	// from the last committed chunk), or skipped (another runner held the table's
	// lease).
	Result   string `json:"result"`
	Rows     int64  `json:"rows"`
	Inserted int64  `json:"inserted"`
	Updated  int64  `json:"updated"`
	// Deleted counts the reconciliation's deletes too.
	Deleted         int64               `json:"deleted"`
	Reconciled      *reconcileSummary   `json:"reconciled,omitempty"`
	PositionExpired bool                `json:"position_expired,omitempty"`
	DurationSeconds float64             `json:"duration_seconds"`
	Position        *watermarks.Summary `json:"position"`
	Error           string              `json:"error,omitempty"`
	ErrorClass      string              `json:"error_class,omitempty"`
}

type reconcileSummary struct {
	SourceKeys int64 `json:"source_keys"`
	Deleted    int64 `json:"deleted"`
}

// summarize is the --json summary of organization runs.
func summarize(results []engine.OrgResult) runSummary {
	s := runSummary{SchemaVersion: summarySchemaVersion, OK: failures(results) == nil, Orgs: []orgSummary{}}
	for _, r := range results {
		o := orgSummary{Org: r.Org, RunID: r.RunID, Result: "ok", Tables: []tableSummary{}}
		switch {
		case r.Err != nil:
			o.Result, o.Error, o.ErrorClass = "failed", r.Err.Error(), engine.Class(r.Err)
		case r.Stopped:
			o.Result = "stopped"
		}
		for _, t := range r.Tables {
			o.Tables = append(o.Tables, summarizeTable(t))
		}
		for _, name := range r.Skipped {
			o.Tables = append(o.Tables, tableSummary{Table: name, Result: "skipped"})
		}
		s.Orgs = append(s.Orgs, o)
	}
	return s
}

// summarizeTable is one table run's summary.
func summarizeTable(t engine.TableResult) tableSummary {
	ts := tableSummary{Table: t.Table, RunID: t.RunID, Strategy: t.Strategy, Result: "ok", Rows: t.Totals.Rows, Inserted: t.Totals.Inserted,
		Updated: t.Totals.Updated, Deleted: deleted(t), PositionExpired: t.Expired, DurationSeconds: t.Duration.Seconds(),
		Position: watermarks.Summarize(t.To)}
	if t.Reconciled != nil {
		ts.Reconciled = &reconcileSummary{SourceKeys: t.Reconciled.SourceKeys, Deleted: t.Reconciled.Deleted}
	}
	if t.Err != nil {
		ts.Result, ts.Error, ts.ErrorClass = tableOutcome(t.Err), t.Err.Error(), engine.Class(t.Err)
	}
	return ts
}

// printJSON prints v as indented JSON on stdout, < > & as themselves.
func printJSON(env *environment, v any) error {
	enc := json.NewEncoder(env.stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// tableOutcome is a table run's result when it ended with err: canceled
// when the run was interrupted (Ctrl-C, SIGTERM), failed otherwise.
func tableOutcome(err error) string {
	if engine.Class(err) == "canceled" {
		return "canceled"
	}
	return "failed"
}
