package source

import (
	"errors"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"
	mssql "github.com/microsoft/go-mssqldb"
)

// Redacted replaces a value a database's error message quoted.
const Redacted = "[redacted]"

// RedactedError is a database error whose message quoted a value (a row
// value, when a cast or conversion fails on a row): its text has the value
// replaced by [Redacted], and it unwraps to the original, so errors.As,
// SQLSTATE and error-number decisions ([Classify], IsTransient) see the
// same error as before.
type RedactedError struct {
	err  error
	text string
}

func (e *RedactedError) Error() string { return e.text }
func (e *RedactedError) Unwrap() error { return e.err }

var (
	// A value in double (PostgreSQL) or single (SQL Server) quotes; greedy,
	// so a value holding the quote character is covered whole.
	doubleQuoted = regexp.MustCompile(`(?s)"(.*)"`)
	singleQuoted = regexp.MustCompile(`(?s)'(.*)'`)
	// SQL Server's duplicate key value is (...).
	keyValue = regexp.MustCompile(`(?s)value is \(.*\)`)
	// PostgreSQL's invalid byte sequence for encoding "UTF8": 0xe2 0x28.
	hexBytes = regexp.MustCompile(`0x[0-9a-fA-F]+( 0x[0-9a-fA-F]+)*`)
)

// Redact returns err with the values a source database's message may quote
// taken out: PostgreSQL data exceptions and integrity violations (SQLSTATE
// classes 22 and 23: invalid input syntax for type integer: "...", value
// "..." is out of range, ...) and SQL Server errors about a value
// (conversion failed when converting the varchar value '...', truncated
// value '...', duplicate key value is (...)). Any other error is returned
// as it is; nil is nil. Call it where a driver's error enters ehrsync,
// before wrapping it: a wrapped message cannot be taken back.
func Redact(err error) error {
	if err == nil {
		return nil
	}
	var already *RedactedError
	if errors.As(err, &already) {
		return err
	}
	text := err.Error()
	var pg *pgconn.PgError
	if errors.As(err, &pg) && (strings.HasPrefix(pg.Code, "22") || strings.HasPrefix(pg.Code, "23") || strings.Contains(pg.Message, "value")) {
		msg := doubleQuoted.ReplaceAllString(pg.Message, `"`+Redacted+`"`)
		msg = hexBytes.ReplaceAllString(msg, Redacted)
		if msg != pg.Message {
			return &RedactedError{err: err, text: strings.ReplaceAll(text, pg.Message, msg)}
		}
		return err
	}
	var ms mssql.Error
	if errors.As(err, &ms) && (strings.Contains(ms.Message, "value") || strings.Contains(ms.Message, "onversion")) {
		msg := keyValue.ReplaceAllString(ms.Message, "value is ("+Redacted+")")
		msg = singleQuoted.ReplaceAllString(msg, "'"+Redacted+"'")
		if msg != ms.Message {
			return &RedactedError{err: err, text: strings.ReplaceAll(text, ms.Message, msg)}
		}
	}
	return err
}
