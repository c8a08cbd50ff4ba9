package source_test

import (
	"database/sql"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	mssql "github.com/microsoft/go-mssqldb"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/source"
)

// TestRedactTakesValuesOutOfDriverErrors: messages that quote a value (a
// failed cast or conversion on a row) lose the value but keep their shape,
// their SQLSTATE or error number and their place in the error chain; other
// errors are untouched.
func TestRedactTakesValuesOutOfDriverErrors(t *testing.T) {
	const v = "Rdx-S3ntinel-\"quoted\" 'too'"
	pg := func(code, msg string) error {
		return &pgconn.PgError{Severity: "ERROR", Code: code, Message: msg, Detail: "Failing row contains (" + v + ")"}
	}
	ms := func(n int32, msg string) error { return mssql.Error{Number: n, Class: 16, Message: msg} }
	for _, tc := range []struct {
		name    string
		err     error
		want    string // "" when the error is returned as it is
		changed bool
	}{
		{"pg invalid input syntax", pg("22P02", `invalid input syntax for type integer: "`+v+`"`), `invalid input syntax for type integer: "[redacted]" (SQLSTATE 22P02)`, true},
		{"pg out of range", pg("22003", `value "`+v+`" is out of range for type integer`), `value "[redacted]" is out of range for type integer`, true},
		{"pg datetime", pg("22008", `date/time field value out of range: "`+v+`"`), `date/time field value out of range: "[redacted]"`, true},
		{"pg encoding", pg("22021", `invalid byte sequence for encoding "UTF8": 0xe2 0x28 0xa1`), `invalid byte sequence for encoding "[redacted]": [redacted]`, true},
		{"pg wrapped", fmt.Errorf("query dbo.x: %w", pg("22P02", `invalid input syntax for type uuid: "`+v+`"`)), `query dbo.x: ERROR: invalid input syntax for type uuid: "[redacted]" (SQLSTATE 22P02)`, true},
		{"pg permission", pg("42501", `permission denied for table claims`), "", false},
		{"pg relation", pg("42P01", `relation "dbo.x" does not exist`), "", false},
		{"mssql conversion", ms(245, `Conversion failed when converting the varchar value '`+v+`' to data type int.`), `Conversion failed when converting the varchar value '[redacted]' to data type int.`, true},
		{"mssql overflow", ms(248, `The conversion of the varchar value '`+v+`' overflowed an int column.`), `The conversion of the varchar value '[redacted]' overflowed an int column.`, true},
		{"mssql truncated", ms(2628, `String or binary data would be truncated in table 'db.dbo.t', column 'c'. Truncated value: '`+v+`'.`), `String or binary data would be truncated in table '[redacted]'.`, true},
		{"mssql duplicate key", ms(2627, `Violation of PRIMARY KEY constraint 'pk'. The duplicate key value is (`+v+`).`), `The duplicate key value is ([redacted])`, true},
		{"mssql login", ms(18456, `Login failed for user 'ehrsync'.`), "", false},
		{"not a driver error", sql.ErrNoRows, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := source.Redact(tc.err)
			if !tc.changed {
				require.Equal(t, tc.err, got)
				return
			}
			require.NotContains(t, got.Error(), "S3ntinel")
			require.NotContains(t, got.Error(), "0xe2")
			require.Contains(t, got.Error(), tc.want)
			require.Equal(t, tc.err, errors.Unwrap(got), "the original stays in the chain")
			var pe *pgconn.PgError
			var me mssql.Error
			require.True(t, errors.As(got, &pe) || errors.As(got, &me))
			require.Equal(t, got, source.Redact(got), "redacting twice changes nothing")
			wrapped := fmt.Errorf("read chunk 1: %w", got)
			require.NotContains(t, wrapped.Error(), "S3ntinel")
		})
	}
	require.NoError(t, source.Redact(nil))
}
