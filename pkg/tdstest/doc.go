// Package tdstest is a SQL Server stand-in for tests: a loopback server
// that speaks TDS 7.4 (and TDS 8.0 strict) to go-mssqldb exactly as SQL
// Server 2016-2022 does, and answers each statement through a Handler.
// Package mssqlmodel holds SQL Server's semantics behind it.
//
// Start a server in a test and point go-mssqldb at it:
//
//	s := tdstest.Start(t, tdstest.Config{Handler: h})
//	db, _ := sql.Open("sqlserver", "sqlserver://sa:pw@"+s.Addr()+"?encrypt=disable")
//
// # What the server does
//
// Connection: PRELOGIN (VERSION, ENCRYPTION, INSTOPT, THREADID, MARS off)
// and its encryption negotiation as SQL Server answers it (see
// Encryption): TLS handshake records carried inside PRELOGIN packets, then
// TLS on the stream, either for the whole session or for the LOGIN7 packet
// only (a client's encrypt=false). TDS 8.0 strict: TLS first on the raw
// connection with ALPN "tds/8.0", PRELOGIN inside it. A self-signed
// certificate for "localhost" and 127.0.0.1 is generated per server unless
// Config.Certificate is given; CertPEM is its PEM for the client's
// "certificate" option.
//
// Login: LOGIN7 with SQL authentication (user, password, database, app
// name, server name, packet size, ApplicationIntent=ReadOnly), checked
// against Config.Users and Config.Databases with SQL Server's errors
// (18456; 4060 then 18456). The answer is SQL Server's: ENVCHANGE
// database, INFO 5701, ENVCHANGE collation, language and packet size,
// INFO 5703, LOGINACK (TDS 7.4, "Microsoft SQL Server", Config.Version),
// DONE. Config.Route adds the routing ENVCHANGE and ends the connection,
// as a read-only routing listener does.
//
// Requests: SQL batches (ALL_HEADERS, UCS-2 text) and RPCs: sp_executesql
// by id or name (its statement goes to Request.SQL, its @params
// declarations are checked against the parameters' names with SQL
// Server's errors 8144, 8145 and 8178) and any other procedure by name
// (Request.Proc). Every parameter type go-mssqldb sends is decoded into a
// Param (see Param and Request); a char or varchar parameter is decoded in
// its collation's code page, or the server's when the collation is all
// zeros as go-mssqldb sends it. Transaction manager requests (BEGIN,
// COMMIT, ROLLBACK, with isolation level) keep Session.InTransaction and
// Session.Isolation, call a TxHandler, and answer ENVCHANGE 8, 9 or 10
// with an 8-byte transaction descriptor. A request with the reset
// connection flag (a pooled connection's reuse) rolls back an open
// transaction, restores the login's database and READ COMMITTED, and is
// acknowledged with ENVCHANGE 18; Session.Values is kept.
//
// Answers: for each Result, its Info messages, COLMETADATA with the TYPE_INFO
// SQL Server sends for the column's type, ROW tokens, and DONE with its
// row count; in an RPC, DONEINPROC for each result, then RETURNSTATUS and
// DONEPROC. A no-column Result is a DONE with RowsAffected. Rows are
// encoded as they are written, in packets of the negotiated size, so a
// Result's Stream can send millions of rows without holding them. A
// Handler may return results and an error together: the results are sent,
// then the error, as for a batch whose later statement fails. An *Error
// is an ERROR token (class 20 or more also closes the connection, as a
// fatal error does); another error is sent as error 50000 class 16 and
// recorded in Server.Errors, as is a value that does not match its
// column's type (error texts name the column and type, never a value).
// If the Handler changes Session.Database or Session.InTransaction (a USE
// or BEGIN TRAN statement) the answer carries the ENVCHANGE that tells the
// client.
//
// Values: the Go representation of each type is listed in handler.go; the
// CLR types hierarchyid, geometry and geography are []byte (UDT, PLP).
// datetime is rounded to 1/300 s as SQL Server rounds (.xx0, .xx3, .xx7),
// smalldatetime to the minute (29.998 s down, 29.999 s up), time,
// datetime2 and datetimeoffset to their scale. A char or varchar value
// with a character its code page lacks sends '?'. char(n) values are sent
// as given (not padded).
//
// Attention: a client's cancel (an attention packet) cancels the ctx of
// the running Handle and Stream, stops the answer at the next row, and is
// acknowledged with DONE_ATTN, in the answer or, when the answer had
// ended, in a message of its own; the connection stays usable.
//
// Faults (Server.Inject): DelayFirstRow, StallAfter, DropConnection,
// DropAfter for statements; Garbage and HTTP for the next connection.
//
// # What it does not do
//
// No SQL: statements mean what the Handler makes of them. No MARS, no
// Windows (SSPI) or Azure AD authentication, no Always Encrypted, no
// bulk load (INSERT BULK), no table-valued or sql_variant parameters,
// no output parameter values (RETURNVALUE), no cursors or prepared
// statements beyond passing sp_prepare and the like to the Handler by
// name, no double-byte code pages (932, 936, 949, 950) for char data, no
// UTF-8 collations.
package tdstest
