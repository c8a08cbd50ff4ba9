// Package watermarks holds the typed positions that say where a table's sync
// stands, their JSON codec, and the store of positions and their history in
// the store database's ehrsync schema.
//
// # Positions
//
// A Position is one of four kinds, each a plain value type:
//
//   - CDC: a SQL Server Change Data Capture position, an LSN at a transaction
//     boundary or, inside a transaction, the exact (LSN, command id, seqval,
//     operation) of the last row applied (PITFALLS P4).
//   - CT: a Change Tracking version, with the progress through the version
//     window being read.
//   - Cursor: a high-water mark on a column, paged tie-safely by (cursor, key)
//     (PITFALLS P9).
//   - Snapshot: a keyset snapshot in progress, with the incremental position
//     recorded before its first read (PITFALLS P8).
//
// Cursor and key values are Values: typed SQL values that keep their source
// type exactly enough to round-trip and to be bound back as a parameter of the
// column's type (PITFALLS P14, P15).
//
// # Codec
//
// Encode and Decode convert positions to and from a canonical JSON document:
// equal positions encode to equal bytes, which is what the store's
// compare-and-set relies on. The document carries a "kind" and a format
// version "v"; Decode is strict and rejects unknown kinds, unknown fields,
// newer versions and malformed values, naming the field at fault.
//
// # PHI
//
// Key values and timestamp cursor values are row data. String and the
// errors of this package never contain them (they show LSNs, versions and
// row-version numbers, the database's counters), so positions can be logged
// and wrapped into errors freely. Summarize gives a position's Summary (the
// same, as fields), what the audit records and the admin API answers.
// Display shows the cursor's value whatever its type, never key values, for
// an operator's terminal (positions list, the sync report). Detail,
// Value.Text and the JSON form (Encode) show every value, for an operator's
// "positions show" and the store's own tables only: never log their output,
// nor put it in an audit record or an API response.
//
// # Store
//
// Store keeps the current position of each (org, table) and the history of
// every move. Store.Advance is a compare-and-set that runs inside the
// caller's transaction, so a position is saved only together with the rows it
// covers (PITFALLS P5).
package watermarks
