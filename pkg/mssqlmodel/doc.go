// Package mssqlmodel is an in-process SQL Server database with SQL Server's
// semantics for the statements ehrsync sends: the tdstest.Handler behind
// the TDS test server (package tdstest), so that every SQL Server path of
// ehrsync runs through the real go-mssqldb driver in plain `go test`
// (DESIGN.md §5). It is a test double: it must never be used outside
// tests.
//
// # What it holds
//
// Tables (CreateTable, with computed columns), written by Go transactions
// (Begin, Tx.Insert/Update/Delete, Commit, Rollback) whose writes are
// invisible until they commit; rowversion columns filled from the
// database's counter (@@DBTS) at write time, with MIN_ACTIVE_ROWVERSION();
// Change Data Capture (EnableCDCDatabase, EnableCDC, Harvest, CleanupCDC)
// with change tables, LSNs, seqvals and command ids, cdc.lsn_time_mapping
// and the capture agent's DMVs; Change Tracking (EnableCTDatabase,
// EnableCT, CleanupCT, Truncate) with versions and net operations; a
// per-login permission model (AddLogin, Grant, Deny); a settable clock and
// server time zone.
//
// # How it answers
//
// Handle parses each statement (a recursive-descent parser for the T-SQL
// subset ehrsync's statements use, parser.go), recognises its shape in the
// Inventory from what it reads and calls, and evaluates it with a general
// evaluator over rows (eval.go): FROM user tables, cdc tables, catalog
// views and DMVs synthesised from the model's state, and CHANGETABLE;
// joins, WHERE, aggregates, ORDER BY and TOP in SQL Server's order and
// three-valued logic. A statement outside the inventory, or a construct
// the model does not evaluate, is a Go error naming it (tdstest turns it
// into a loud test failure); SQL Server's own failures are *tdstest.Error
// with SQL Server's numbers and texts, never quoting row values.
//
// # SQL Server semantics, and what is approximated
//
//   - Values and types: handler.go's Go representation; comparisons and
//     ORDER BY convert by data type precedence; decimals are exact
//     (math/big) and round half away from zero to their scale; integer
//     overflow is error 8115; NULL is three-valued.
//   - uniqueidentifier compares by byte groups (bytes 10-15, 8-9, 6-7, 4-5,
//     0-3 of the storage/wire order, each group bytewise, as SqlGuid does).
//   - varchar and nvarchar compare in SQL_Latin1_General_CP1_CI_AS,
//     approximated (collation.go): case-insensitive, accent-sensitive,
//     trailing spaces ignored, apostrophe and hyphen ignored by the sort
//     but kept by equality; varchar holds code page 1252 only (others
//     become '?', without SQL Server's best-fit mappings); a varchar
//     parameter's value is what its bytes read in code page 1252.
//   - datetime rounds to its 1/300 s tick, smalldatetime to the minute,
//     datetime2(n), time(n) and datetimeoffset(n) to n digits; a datetime
//     compared with a datetime2 converts to datetime2(7).
//   - Readers behave as READ COMMITTED under READ_COMMITTED_SNAPSHOT; a
//     SNAPSHOT transaction reads the state of its first statement.
//     Sessions only read: DML through SQL is not modelled.
//   - Binary values compare with the shorter padded by zero bytes.
//
// See cdc.go, ct.go and perms.go for Change Data Capture, Change Tracking
// and permissions.
package mssqlmodel
