// Package tdstest is a SQL Server stand-in for tests: a loopback server
// that speaks TDS 7.4 (and TDS 8.0 strict) to go-mssqldb exactly as SQL
// Server 2016-2022 does, and answers each statement through a Handler.
// Package mssqlmodel holds SQL Server's semantics behind it.
//
// Start a server in a test and point go-mssqldb at it:
//
//	s := tdstest.Start(t, tdstest.Config{Handler: h})
//	db, err := sql.Open("sqlserver", s.URL("sa", "pw", "database", "clinic"))
//
// Start listens on 127.0.0.1 on a free port; the test's cleanup closes the
// server and its connections and waits for their goroutines (close the
// database/sql pool first: register its cleanup after Start).
//
// # Connection
//
// PRELOGIN (VERSION, ENCRYPTION, INSTOPT, THREADID, MARS off) and its
// encryption negotiation as SQL Server answers it (Config.Encryption; see
// Encryption for the table): TLS handshake records inside PRELOGIN
// packets, then TLS on the stream, for the whole session or, for a
// client's encrypt=false against a server that does not force encryption,
// for the LOGIN7 packet only. TDS 8.0 strict: TLS first on the raw
// connection with ALPN "tds/8.0", PRELOGIN inside it; Config.NoStrict
// makes the server hang up on it as SQL Server 2019 does. A self-signed
// certificate for "localhost" and 127.0.0.1 is generated per server unless
// Config.Certificate is given; CertPEM is its PEM, for the client's
// "certificate" option (its CA file); Certificate lets another server
// present the same one. Before login the server's packets are 4096 bytes
// (so encryption needs a client packet size of at least 4096, as with SQL
// Server); after it, the client's requested size (512..32767, at most
// 16383 when encrypted).
//
// # Login
//
// LOGIN7 with SQL authentication: user, password, database, app name,
// server name, packet size and ApplicationIntent=ReadOnly reach the
// Session. Config.Users and Config.Databases are checked with SQL Server's
// errors (18456 class 14; 4060 class 11 then 18456), after which the
// server hangs up. Integrated (SSPI) logins fail with 18452. The answer is
// SQL Server's: ENVCHANGE database, INFO 5701, ENVCHANGE collation,
// language and packet size, INFO 5703, LOGINACK (TDS 7.4, "Microsoft SQL
// Server", Config.Version), DONE. Config.Route adds the routing ENVCHANGE
// (type 20) and ends the connection, as an Availability Group listener
// with read-only routing does; go-mssqldb then logs in where it points.
// Logins counts LOGIN7 packets, so that a login storm shows.
//
// # Requests
//
// SQL batches (ALL_HEADERS, UCS-2 text) go to the Handler as Request.SQL.
// RPCs: sp_executesql by id or by name has its statement in Request.SQL
// and its other parameters in Request.Params; its @params declarations are
// checked against the parameters' names with SQL Server's errors (8144,
// 8145, 8178, and 214 for a statement that is not nvarchar), and the
// Handler is not called for a rejected request. Any other procedure goes
// by name in Request.Proc with all its parameters (go-mssqldb calls a
// one-word statement that way: "dbo.GetPatient", but also "select"). Each
// parameter type go-mssqldb sends is decoded into a Param: its type as
// go-mssqldb declares it (parsed by schemas.ParseType: "nvarchar(5)",
// "datetimeoffset(7)", "time" for time(7), "nvarchar(1)" for a nil), its
// value in the Go representation of that type, and its bytes in Raw. A char
// or varchar parameter is decoded in its collation's code page, or in the
// server's when the collation is all zeros, as go-mssqldb sends it: a
// UTF-8 string bound as mssql.VarChar arrives as the CP1252 reading of its
// bytes, as on SQL Server. datetime parameters are read to the millisecond
// as go-mssqldb reads datetime values (.000, .003, .007).
//
// Transaction manager requests (database/sql's BeginTx, Commit, Rollback)
// keep Session.InTransaction and Session.Isolation (a BEGIN's level stays
// the session's, as on SQL Server), call the Handler's TxHandler methods if
// it has them (Begin gets the transaction's level: the one asked for, or
// the session's when the request leaves it unchanged), and answer
// ENVCHANGE 8, 9 or 10 with an 8-byte transaction descriptor. go-mssqldb
// sends isolation levels only this way, never as SET TRANSACTION ISOLATION
// LEVEL (which, sent as SQL, is the Handler's to honour by setting
// Session.Isolation). A request flagged to reset the connection (the
// pool's reuse of it) rolls back an open transaction, restores the login's
// database and READ COMMITTED, and is acknowledged with ENVCHANGE 18;
// Session.Values is kept.
//
// # Answers
//
// For each Result: its Info messages (INFO tokens), then, if it has
// columns, COLMETADATA with the TYPE_INFO SQL Server sends for each
// column's type, a ROW per row (Rows, then what Stream yields) and DONE
// with the count of rows sent; without columns, a DONE with RowsAffected.
// In an RPC each result ends with DONEINPROC and the answer with
// RETURNSTATUS 0 and DONEPROC, as SQL Server answers sp_executesql; in a
// batch each with DONE, the last without DONE_MORE. Rows are encoded as
// they are written, in packets of the negotiated size, without
// reflection or per-row allocation, so a Stream can send millions of rows
// without holding them.
//
// Errors: an *Error from the Handler is an ERROR token (its number, state,
// class and message, Config.ServerName, no procedure, line 1) and a DONE
// with the error bit; a class of 20 or more also closes the connection,
// as a fatal error does. Any other error is sent as error 50000 class 16
// with the error's text and recorded in Errors, as are a Stream's error
// and a value that does not match its column's type (a bug in the
// Handler: the error names the column and type, never the value). A
// Handler may return results and an error together: the results are sent,
// then the error, as for a batch whose later statement fails. If the
// Handler changes Session.Database (a USE) or Session.InTransaction (a
// BEGIN TRAN or ROLLBACK statement) the answer carries the ENVCHANGE that
// tells the client.
//
// Values: the Go representation of each type is listed in handler.go; the
// CLR types hierarchyid, geometry and geography are []byte (UDT, PLP).
// datetime is rounded to 1/300 s as SQL Server rounds (.xx0, .xx3, .xx7),
// smalldatetime to the minute (29.998 s down, 29.999 s up), time, datetime2
// and datetimeoffset to their scale; date and time values must have no
// time of day and no date respectively. A char or varchar value is encoded
// in the column's code page (Column.Collation, or the server's), a
// character the code page lacks becoming '?' as SQL Server converts it;
// char(n) and nchar(n) values are sent as given, not padded. A decimal's
// text may not have more fractional digits than its scale (unless zeros)
// nor more digits than its precision. text, ntext and image carry the
// table name of Column.Table and a text pointer; rowversion is binary(8)
// with user type 80 (timestamp), as SQL Server sends it; xml and the (max)
// types are PLP streams in 8000-byte chunks. A Variant holds any type but
// the (max) types, text, ntext, image, xml, rowversion and the CLR types;
// a char, varchar, binary or varbinary base type without a length takes
// any length.
//
// # Attention
//
// A client's cancel (an attention packet) cancels the ctx of the running
// Handle and Stream, stops the answer at the next row or wait, and is
// acknowledged with DONE_ATTN: in the answer, or, when the answer had
// already ended, in a message of its own. The connection stays usable: the
// pool reuses it (go-mssqldb takes a context deadline, unlike a cancel,
// for a broken connection and opens another).
//
// # Faults
//
// Server.Inject queues a Fault for the next statement it matches
// (DelayFirstRow, StallAfter, DropConnection, DropAfter, narrowed with On
// or When) or for the next new connection (Garbage, HTTP). Reached tells
// when it took effect; Release ends a stall.
//
// # What it does not do
//
// No SQL: statements mean what the Handler makes of them. No MARS, no
// Windows (SSPI) or Azure AD authentication, no Always Encrypted, no bulk
// load (INSERT BULK), no table-valued, sql_variant or CLR parameters, no
// output parameter values (RETURNVALUE), no NBCROW, no cursors or prepared
// statements beyond passing sp_prepare and the like to the Handler by
// name, no more than one RPC per request, no double-byte code pages (932,
// 936, 949, 950) and no UTF-8 collations for char data, no session
// recovery or other FEATUREEXT (go-mssqldb asks for none by default).
// Close waits for Handlers: one that ignores its ctx delays it.
package tdstest
