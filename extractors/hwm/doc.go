// Package hwm is the high-water-mark extractor: it reads the rows whose
// cursor column moved past the saved position, in cursor order, in bounded
// chunks, one query per chunk.
//
// # Cursors
//
// The cursor is the table's row-version column by default, or a configured
// date-time column (NextGen's modify_timestamp). Three kinds:
//
// SQL Server rowversion. The database-wide counter SQL Server bumps on every
// insert and update. It is assigned when a row is written, not when its
// transaction commits, so a reader that saw version 100 committed may later
// find an uncommitted 90 commit (PITFALLS.md P10). Each Open therefore takes
// one upper bound, MIN_ACTIVE_ROWVERSION() (the lowest version any active
// transaction holds; @@DBTS+1 when none), and reads only
// from < rowversion < bound: everything below the bound is final. SQL Server
// promises unique versions, but SELECT INTO and restored or replicated
// tables can repeat them, so reads page by (version, key) (PITFALLS.md P9).
//
// PostgreSQL transaction-id row version. PostgreSQL has no rowversion; the
// synthetic NextGen source keeps row_timestamp, a bigint set on every insert
// and update to the writing transaction's id (pg_current_xact_id()). Each
// Open takes one bound, the xmin of a fresh snapshot
// (pg_snapshot_xmin(pg_current_snapshot())): every transaction id below it
// has committed or aborted, and no running or future transaction can be
// assigned one below it. Reading from < v < bound is therefore exact: no row
// below the bound can appear or change after it is read. A long-running open
// transaction holds the bound back, so rows committed after it wait for the
// next run behind it; none are lost. All rows of one transaction share one
// value, so reads page tie-safely by (v, key) (PITFALLS.md P9). A PostgreSQL
// row version must hold transaction ids this way; one filled from a sequence
// is assigned at write time with no such bound and is not supported.
//
// Timestamp (datetime, datetime2, datetimeoffset; PostgreSQL timestamp,
// timestamptz). Application-set, many rows share a value, and a transaction
// may commit long after it stamped its rows. Reads page by (cursor, key)
// (P9) with no upper bound, and every Open starts LookBack before the saved
// cursor: rows stamped inside the look-back window, including rows of
// transactions that were still open during the previous run, are read again
// (P10). Re-reading is harmless: rows are full images applied by key. The
// re-read part (the overlap, up to the saved (cursor, key)) keeps the saved
// position, so a position never moves backwards. A transaction open longer
// than LookBack whose rows carry a stamp older than the saved cursor is
// missed: set LookBack above the source's longest write transaction. Rows
// whose cursor is NULL are seen only by snapshots. Cursor values round-trip
// exactly (SQL Server datetime as 1/300 s ticks, datetime2 to 100 ns,
// PITFALLS.md P14).
//
// # Positions and chunks
//
// Positions are watermarks.Cursor{Column, Value, Key}: everything with
// (cursor, key) <= (Value, Key) is applied (Key empty: cursor <= Value). For
// row versions the chunks carry the last row's (version, key), and the
// chunk that ends the window carries Cursor{Value: bound-1} with no key:
// everything below the bound is done. A window with no rows moves the
// position there in a chunk with a nil Batch, so an idle table's position
// still advances (PITFALLS.md P3); it moves only when that is a real
// advance. Timestamp cursors have no bound and move only with rows.
//
// First run (nil position): the extractor records the incremental start
// first (the row-version bound, or MAX of the timestamp cursor), then runs a
// keyset snapshot (package snapshot) whose positions are
// watermarks.Snapshot{LastKey, Resume: that start}, with Reason
// ReasonSnapshot (PITFALLS.md P8). The snapshot's last chunk moves the
// position to Resume, and the run ends: the next run reads incrementally
// from Resume, replaying everything that changed during the snapshot. A
// saved Snapshot position continues its snapshot the same way.
//
// # Deletes
//
// A high-water mark cannot see deletes: a deleted row leaves no row to
// read (PITFALLS.md P11). SeesDeletes reports false so that plans and
// `ehrsync check` say so; a periodic key reconciliation (snapshot.KeysOnly)
// removes rows gone at the source.
//
// # Isolation and bounds
//
// Every query is one autocommit statement at READ COMMITTED (the default of
// both servers), with the organization filter and the column allow-list
// pushed down, at most ChunkRows rows (TOP/LIMIT) and about ChunkBytes
// Arrow bytes, under QueryTimeout.
package hwm
