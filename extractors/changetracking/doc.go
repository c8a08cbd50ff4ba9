// Package changetracking is the SQL Server Change Tracking extractor: it
// reads the keys changed since the saved version from
// CHANGETABLE(CHANGES table, @from), joined to the table's current rows,
// in key order, in bounded chunks.
//
// # Windows and positions
//
// Positions are watermarks.CT{Version, To, LastKey}: every change up to and
// including Version is applied. Each run that starts from CT{Version: v}
// takes its upper bound once, to = CHANGE_TRACKING_CURRENT_VERSION(), and
// reads the window (v, to]: the keys whose last change has
// v < SYS_CHANGE_VERSION <= to, in key order, at most ChunkRows rows (and
// about ChunkBytes Arrow bytes) per chunk. A chunk inside the window leaves
// CT{Version: v, To: to, LastKey: last key}; a crash resumes after that key
// with the same To, never re-taking the bound. The chunk that ends the
// window leaves CT{Version: to}. A key changed again after to carries a
// version above to and is read by the next window.
//
// An idle table (nothing in its window while the database moved on) still
// gets one chunk with a nil Batch that moves its position to CT{Version:
// to}, so it never ages out of the retention period (PITFALLS.md P3). When
// nothing committed since the saved version, a run has no chunk at all.
//
// # Validity (PITFALLS.md P2)
//
// Cleanup and TRUNCATE TABLE raise CHANGE_TRACKING_MIN_VALID_VERSION of a
// table. Open and every chunk read first check that the saved version is
// not below it, and the source reports it again after (or, with snapshot
// isolation, in the same snapshot as) the read: the minimum only rises, so
// a value still at or below the window's start after the read proves that
// cleanup removed nothing the read needed. A saved version below it is an
// *extractors.ExpiredError (errors.Is extractors.ErrExpired): changes were lost at
// the source, the table must be re-snapshotted; the position never moves
// past the gap silently.
//
// # Row images (PITFALLS.md P16)
//
// Rows are full images by key. While the key exists in the table, the row
// carries the current row (OpInsert for SYS_CHANGE_OPERATION I, OpUpdate
// for U, and for D when the key was inserted again since). Once the key is
// gone the row is a delete: OpDelete with the key alone, every other column
// NULL, whatever its declared nullability. SeesDeletes reports true.
//
// The column allow-list is pushed down as the select list, the
// organization filter into the join to the current rows: a changed key
// whose row belongs to another practice reads as gone, a key-only delete.
// Deletes cannot be filtered (the deleted row's practice is gone with it),
// so they pass unfiltered, carrying only a key; the store's delete of a key
// it does not hold is a no-op. The same rule removes a row that moved from
// the organization's practice to another. The cost is one key-only row per
// changed key of other practices in the window.
//
// # Isolation
//
// Without snapshot isolation each statement runs at READ COMMITTED, and
// the result is still exact by the replay argument: rows are full images
// applied by key; a row changed while a window is read either shows its
// newest image or carries a version above the window's bound and is read
// again by the next window. When the database allows snapshot isolation
// (sys.databases.snapshot_isolation_state = 1), the SQLServer source runs
// each chunk's read and its validity check in one SNAPSHOT transaction, as
// Microsoft recommends.
//
// # First run (PITFALLS.md P8)
//
// With no saved position the extractor reads
// CHANGE_TRACKING_CURRENT_VERSION() first, then runs a keyset snapshot
// (package snapshot, at READ COMMITTED, in short chunks) whose positions
// are watermarks.Snapshot{LastKey, Resume: CT{Version: that version}}, with
// Reason ReasonSnapshot. The snapshot's last chunk moves the position to
// Resume; the next run replays everything that changed during the
// snapshot. The retention period must exceed the snapshot's duration, or
// the next run finds the position expired.
//
// # Set-up and permissions (PITFALLS.md P17)
//
// Change Tracking needs ALTER DATABASE … SET CHANGE_TRACKING = ON, ALTER
// TABLE … ENABLE CHANGE_TRACKING, and for the login SELECT and VIEW CHANGE
// TRACKING on the table. Without VIEW CHANGE TRACKING,
// CHANGE_TRACKING_MIN_VALID_VERSION reads NULL exactly as for an untracked
// table; the extractor then probes (Source.Probe) and fails with a
// *SetupError (errors.Is ErrNotReadable) that names each missing piece and
// the statement that fixes it, e.g.
// GRANT VIEW CHANGE TRACKING ON [dbo].[claims] TO [ehrsync];
//
// # The SQL layer
//
// The extractor reads through Source (four methods), which SQLServer
// implements over a go-mssqldb pool. The tests run it against SQL Server's
// Change Tracking held in a model (pkg/mssqlmodel) and served over TDS.
package changetracking
