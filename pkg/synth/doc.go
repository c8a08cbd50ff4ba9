// Package synth is the synthetic NextGen source: DDL for the catalog's tables
// in two dialects and a seeded workload generator of denied claims.
//
// # DDL
//
// PostgresDDL (and CreatePostgres) create the catalog's tables in PostgreSQL,
// the source of the demo and of the tests here: the closest PostgreSQL type
// per SQL Server type, the catalog's primary keys, and the rowversion column
// (row_timestamp) as a bigint that a BEFORE INSERT OR UPDATE trigger sets to
// the writing transaction's id (pg_current_xact_id). All rows written by one
// transaction share that value, and an extractor bounds its reads exactly with
// pg_snapshot_xmin(pg_current_snapshot()), the PostgreSQL analogue of
// MIN_ACTIVE_ROWVERSION(). Every table with a rowversion column has an index
// on it, and every table with a modify_timestamp an index on
// (modify_timestamp, key), so high-water-mark reads seek.
//
// SQLServerDDL emits the T-SQL for a staging SQL Server: the exact catalog
// types, primary keys, rowversion, CDC on claims and reason_code_links and
// Change Tracking on charges, transactions, trans_detail and
// reason_code_links (by default; see SQLServerOptions).
//
// # Workload
//
// A Generator simulates a group of practices day by day (DOMAIN.md §4-5):
// registrations, charge entry and claims, claim submission, ERA batches
// imported per payer (some held unposted, then posted; 1-3% of the unposted
// ones hard-deleted and re-imported), denials by CARC category, rebills and
// appeals, write-offs, payer take-backs, secondary claims and patient
// payments. Each day is several source transactions (Batch), never one.
//
// Everything is a pure function of Options: every random decision about an
// encounter is drawn, when the encounter is registered, from a PCG stream
// keyed by the seed and the encounter's (day, practice, index), and every
// GUID is a hash of the seed and what the row is. So the same Options give
// the same rows, and the state of a simulation at the start of day D (the
// encounters whose claims are still open) is rebuilt without reading the
// database, by re-planning the encounters of the HorizonDays days before D.
//
// # Continuing a simulation
//
// The only state kept in the source is one row of the synth_state table (in
// the catalog's schema, created by the DDL; not part of the catalog): the
// Options as JSON and the next (day, batch) to apply, written by each batch's
// own transaction. Simulate reads it and continues where the last run
// stopped, even in the middle of a day after a crash; `ehrsync simulate
// --days 1` run again the next day appends one more simulated day.
//
// # Values
//
// Batch rows carry nil, string, int64, bool, time.Time, UUID and Amount;
// the writers convert them for their driver. Simulated times are local
// wall-clock readings in UTC, on SQL Server datetime's 1/300 s ticks. Row
// values are never logged.
package synth
