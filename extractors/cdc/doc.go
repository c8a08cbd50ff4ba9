// Package cdc is the SQL Server Change Data Capture extractor: it reads a
// table's changes from its change tables (cdc.<capture instance>_CT) in
// (__$start_lsn, __$command_id, __$seqval, __$operation) order, in bounded
// chunks, one query per chunk, through a small SQL layer (Source, which
// SQLServer implements).
// __$command_id is the order of the changes within a transaction; Microsoft
// documents that __$seqval must not be used for ordering (KB 3030352: an
// update's delete and insert may be out of seqval order, P4).
//
// # Windows
//
// Each Open fixes the window's upper bound once: the highest LSN the
// capture agent has harvested (MAX(start_lsn) of cdc.lsn_time_mapping).
// Everything at or below it is final in the change tables. A stopped
// capture agent freezes the bound, so runs see nothing although the
// table changes; nothing is lost (the position never passes unharvested
// commits), but CheckAgent must say so (PITFALLS.md P6).
//
// # Positions
//
// Positions are watermarks.CDC. At a transaction boundary, CDC{LSN}:
// everything up to and including that transaction is applied. A chunk that
// ends inside a transaction (all its rows share one __$start_lsn) records
// the exact (LSN, CommandID, Seqval, Op) of its last row and the next read resumes
// after exactly that row, never after the LSN (P4). A chunk that reads the
// rest of the window moves the position to the window's bound, so an idle
// table advances every run (in a chunk with no rows) and never ages out of
// retention (P3). Rows carry _ehrsync_source_pos =
// start_lsn||command_id||seqval||operation (SourcePos), so the store
// de-duplicates replays.
//
// # Capture instances and expiry
//
// A table has one or two capture instances, found by object id, never by
// the name <schema>_<table>. A run reads from the newest instance whose
// start LSN is at or before the position; when a newer instance (created
// after a schema change, with the new columns) starts inside the window,
// the run reads the old one up to that start and switches (P7). Columns
// the instance does not capture are NULL; a key column it does not capture
// is an error. Before every read (and after it, against a concurrent
// cleanup), the position is checked against the instance's own minimum LSN
// (sys.fn_cdc_get_min_lsn): below it, rows may be gone, and Open or Next
// returns an *extractors.ExpiredError (P1).
//
// # Rows
//
// Inserts (operation 2) are OpInsert, update after-images (4) OpUpdate,
// deletes (1) OpDelete; before-images (3) are not read. Delete images may
// carry NULLs in NOT NULL columns, and computed columns are NULL in every
// change row (P16): neither is an error. The organization filter keeps
// inserts and updates of the practices and every delete (a delete image's
// practice column may be NULL; deleting a key the store does not hold is a
// no-op).
//
// # First run
//
// With no position, Open records the start (the highest harvested LSN, or
// the newest instance's start LSN when CDC was enabled after the agent's
// last harvest) before anything is read, then runs a keyset snapshot
// (snapshot.Extractor.Begin) whose positions are
// watermarks.Snapshot{LastKey, Resume: that start}, with
// Reason ReasonSnapshot (P8). The next run replays from the start; full
// images applied by key converge.
//
// # Grants
//
// The login needs SELECT on the cdc schema's change tables, lsn_time_mapping,
// change_tables and captured_columns (db_datareader suffices when the
// capture instances have no gating role; otherwise membership of that role,
// P17), and VIEW DATABASE STATE for CheckAgent.
package cdc
