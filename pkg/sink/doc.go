// Package sink writes change batches into the store, the PostgreSQL
// database that analytics services read, and moves each table's position in
// the same transaction as the rows it covers: there is no way to save a
// position without its rows.
//
// Sink.Prepare returns a Target: one source table in one organization's
// schema. It creates the table (and its change log, with
// TableOptions.ChangeLog) from the catalog, adds columns new at the source
// and widens a store column only when it then holds every source value
// (prepare.go, holds.go). Each change batch (the contract in package
// schemas) is then one chunk, one transaction on a store connection of its
// own, taken in three steps (Pending, pending.go):
//
//   - Begin checks the batch, reserves the commit's position-history id and
//     decides how the rows go in;
//   - Write copies the rows with binary COPY, from the Arrow columns
//     (encode.go) or through pgx's encoder (copy.go): straight into the
//     target for a snapshot chunk into an empty table (direct.go), and
//     otherwise into a temporary staging table, from which one statement
//     collapses them to the last change per key in source order, deletes
//     (or soft-deletes) and upserts (apply.go). A staged chunk whose keys
//     are disjoint from those of the chunk committing before it is upserted
//     here, while that one commits; one that shares some keys with it
//     upserts the others here and the shared ones at commit (keys.go);
//   - Commit claims the position (compare-and-set on the position the batch
//     was read from), applies staged rows not yet applied, appends the
//     changes to the change log, moves the position, queues a NOTIFY for
//     downstream listeners (notify.go) and commits.
//
// Target.Apply takes the three steps in a row. Target.Reconcile finds the
// rows deleted at the source that the table's strategy cannot see
// (reconcile.go).
package sink
