// Package tdstest is a SQL Server stand-in for tests: a loopback server
// that speaks TDS 7.4 (and TDS 8.0 strict) to go-mssqldb exactly as SQL
// Server 2016-2022 does, and answers each statement through a Handler.
// Package mssqlmodel holds SQL Server's semantics behind it.
package tdstest
