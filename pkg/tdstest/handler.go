package tdstest

import (
	"context"
	"fmt"

	"github.com/ehrsync/ehrsync/schemas"
)

// The contract between the protocol server (this package) and what answers
// its statements (a Handler, such as package mssqlmodel).
//
// Values cross it as Go values chosen by the SQL Server type of the column or
// parameter (schemas.Type, dialect schemas.SQLServer), NULL as nil:
//
//	bit                                     bool
//	tinyint, smallint, int, bigint          int64
//	decimal, numeric, money, smallmoney     string, plain decimal text ("-12.50")
//	float, real                             float64
//	uniqueidentifier                        []byte, 16 bytes in SQL Server's
//	                                        wire (storage) order, as go-mssqldb
//	                                        returns it to database/sql
//	date, datetime, datetime2,              time.Time in UTC (the values carry
//	smalldatetime                           no zone at the server)
//	time                                    time.Time on 0001-01-01 UTC
//	datetimeoffset                          time.Time with its offset's zone
//	char, varchar, text                     string (UTF-8 in Go; on the wire in
//	                                        the column's or parameter's
//	                                        collation, CP1252 for
//	                                        SQL_Latin1_General_CP1_CI_AS)
//	nchar, nvarchar, ntext, xml             string
//	binary, varbinary, image, rowversion    []byte
//	sql_variant                             Variant

// Column is one column of a result set.
type Column struct {
	Name     string
	Type     schemas.Type
	Nullable bool
	// Collation, if set, is the collation of a char, varchar or text column
	// (its values are encoded in its code page); nil means the server's.
	Collation *Collation
	// Table is the table name SQL Server sends with a text, ntext or image
	// column's metadata ("dbo.notes"; "" sends none).
	Table string
}

// Result is one result set: its columns and rows, each row one value per
// column (see the table above). A Result with no Columns is a statement that
// returns no rows; RowsAffected is its DONE count.
type Result struct {
	Columns      []Column
	Rows         [][]any
	RowsAffected int64
	// Stream, if set, yields further rows after Rows, one per call, while
	// the server writes them, so that a large result is never held in
	// memory: it fills row (len(Columns) values, the same slice on every
	// call) and returns true, or returns false when there are no more. ctx
	// is cancelled when the client cancels the statement. An error ends
	// the result and is sent as a Handler's error is.
	Stream func(ctx context.Context, row []any) (bool, error)
	// Info are INFO messages (PRINT, warnings) sent before the result.
	Info []Error
}

// Variant is a sql_variant value: the base type it holds and the value, in
// that type's Go representation.
type Variant struct {
	Type  schemas.Type
	Value any
}

// Param is one parameter of an RPC request (sp_executesql's @p1, @p2 ...),
// decoded from its TYPE_INFO as the client sent it.
type Param struct {
	Name string // "@p1"; "" for a positional parameter
	// Type is the type the client declared: "nvarchar" with Length 4000,
	// "varchar" with its length, "bigint", "uniqueidentifier", "datetime",
	// "datetime2" with Precision 7, "varbinary" with Length or Max ...
	Type schemas.Type
	// Collation is the collation the client sent with a char or varchar
	// parameter (nil for other types).
	Collation *Collation
	// Value is the decoded value. A varchar parameter's bytes are decoded
	// in its collation's code page, as SQL Server reads them: UTF-8 bytes
	// sent in a CP1252 collation arrive as mojibake, exactly as on a real
	// server.
	Value  any
	Raw    []byte // the value's bytes as sent (nil for NULL)
	Output bool
}

// Collation is a TDS collation (5 bytes on the wire).
type Collation struct {
	LCID       uint32 // low 20 bits: the locale id (0x0409 en-US)
	Flags      uint8  // ignore case, accent, width, kana ...
	Version    uint8
	SortID     uint8 // SQL collations: 52 is SQL_Latin1_General_CP1_CI_AS
	CodePage   int   // derived: 1252 for the collations above
	IgnoreCase bool  // derived
}

// Session is one client connection's state after login. Handlers may read
// it; the server owns it.
type Session struct {
	ID             int
	User           string
	Database       string
	AppName        string
	ReadOnlyIntent bool   // LOGIN7 ApplicationIntent=ReadOnly
	ServerName     string // the server name the client sent in LOGIN7
	InTransaction  bool
	Isolation      Isolation // of the open transaction, or the session's level
	Encrypted      bool
	TDSVersion     uint32
	PacketSize     int
	Values         map[string]any // for handlers: per-session state of their own
}

// Isolation is a transaction isolation level as TDS's transaction manager
// request carries it.
type Isolation uint8

// Isolation levels (MS-TDS 2.2.6.9).
const (
	IsolationUnchanged Isolation = iota
	IsolationReadUncommitted
	IsolationReadCommitted
	IsolationRepeatableRead
	IsolationSerializable
	IsolationSnapshot
)

// Request is one statement: a SQL batch (SQL, no Params) or an RPC
// (sp_executesql's statement in SQL and its parameters in Params; another
// procedure's name in Proc).
type Request struct {
	SQL     string
	Proc    string // "" for a batch or sp_executesql
	Params  []Param
	Session *Session
}

// Handler answers statements. Handle returns the result sets to send in
// order, or an error: an *Error is sent as SQL Server's ERROR token with
// its number, state and class; any other error is sent as error 50000,
// class 16, with the error's text, and is also reported by the server's
// Errors (a statement a model does not know must fail the test loudly).
// Handle is called from one goroutine per connection, concurrently across
// connections. ctx is cancelled when the client sends an attention (cancel)
// or the connection closes.
type Handler interface {
	Handle(ctx context.Context, req *Request) ([]Result, error)
}

// TxHandler is an optional ability of a Handler: it is told of transaction
// manager requests (database/sql BeginTx, Commit, Rollback). Without it the
// server only tracks Session.InTransaction.
type TxHandler interface {
	Begin(s *Session, iso Isolation) error
	Commit(s *Session) error
	Rollback(s *Session) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) ([]Result, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, req *Request) ([]Result, error) { return f(ctx, req) }

// Error is a SQL Server error as the ERROR token carries it.
type Error struct {
	Number  int32
	State   uint8
	Class   uint8
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("mssql error %d (state %d, class %d): %s", e.Number, e.State, e.Class, e.Message)
}
