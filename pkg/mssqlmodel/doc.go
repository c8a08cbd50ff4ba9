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
//   - VIEW DATABASE STATE denied is error 262 ("VIEW DATABASE STATE
//     permission denied in database '<db>'."), the first of the two errors
//     SQL Server sends (297 follows, which go-mssqldb reports as the
//     error's Number); tdstest carries one error per statement.
//   - Metadata visibility: catalog views, OBJECT_ID, COL_LENGTH and
//     HAS_PERMS_BY_NAME see the objects the login has some permission on;
//     sys.tables lists user tables only (not the cdc schema's tables).
//   - A capture instance's gating role is enforced on direct reads of its
//     change table (error 229), as ehrsync's CheckReadable expects; SQL
//     Server documents it for the change data functions.
//
// Not modelled (each fails loudly as a Go error naming it): DML and DDL
// through SQL, GROUP BY, HAVING, UNION, LIKE, window functions, APPLY,
// RIGHT and FULL joins, table-valued functions (cdc.fn_cdc_get_*_changes),
// stored procedures (sys.sp_cdc_help_change_data_capture), other
// databases' objects (msdb.dbo.cdc_jobs), catalog views and DMVs beyond
// those the inventory reads.
//
// See cdc.go, ct.go and perms.go for Change Data Capture, Change Tracking
// and permissions.
package mssqlmodel
