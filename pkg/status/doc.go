// Package status answers `ehrsync status` and the admin API's GET
// /admin/status: per organization and table, what happened and what is
// next, from the store, with or without a daemon running.
//
// Store records each table's attempts (it implements engine.RunRecorder)
// in ehrsync.table_runs, one row per table: its last attempt (run id,
// actor, strategy, times, outcome, error class, rows), when it last
// succeeded, and since when it has been failing. Gather reads that, the
// positions (ehrsync.positions, as watermarks.Summary: never a key or
// cursor value), the position history (the last commit that wrote rows,
// the last move), the leases held now (pkg/lease) and the organizations'
// schedules (pkg/daemon) into a Report; a daemon adds what only it knows
// (its exact next run, a run in progress, a paused schedule). A Report is
// written as a table for people (WriteText) or as JSON (WriteJSON: snake
// case, times in RFC 3339, durations in seconds), and says which tables
// need an operator (Attention): failing, expired, unreadable, or stale.
//
// A table's state comes from what happened, in this order: failing (its
// last attempts failed; expired when the failure is an expired position,
// which fails until reset under on_expired: fail), corrupt (its saved
// position does not decode), snapshotting (a snapshot pass is under way
// or about to start from a recorded position), reset (an operator or a
// backfill removed the position: the next run re-snapshots), never run,
// and synced.
//
// For a table with lake on, Table.Lake is the change lake as the store
// records it: the last lake commit (ehrsync.lake_tables: its time, claim,
// snapshot, rows appended in all, and the position it holds to, as a
// summary) and what waits in the table's lake outbox (chunks, rows,
// bytes, and when the oldest was committed). The lake is behind, and the
// table needs attention, when a chunk has waited longer than the
// staleness threshold: the store has changes the lake has not taken for
// that long.
//
// A table is stale when the store was last known current with the source
// (the later of its last successful attempt and the last commit of one of
// its chunks) longer ago than the threshold: Options.StaleAfter, by default
// three intervals of the organization's schedule.
package status
