package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Class names a failed run's error class for metrics labels, audit records
// and the admin API: a stable code, source.Classify's or one of the
// engine's own (position_expired, position_moved, canceled,
// store_unavailable, audit_not_written, source_schema_changed,
// duplicate_source_keys, run_timeout). It is decided on error types, sentinels and SQLSTATEs,
// never on error text. "" for nil.
func Class(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, extractors.ErrExpired):
		return "position_expired"
	case errors.Is(err, watermarks.ErrPositionMoved):
		return "position_moved"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case storeUnavailable(err):
		return "store_unavailable"
	case errors.Is(err, ErrAuditNotWritten):
		return "audit_not_written"
	case errors.Is(err, schemas.ErrSourceChanged):
		return "source_schema_changed"
	case errors.As(err, new(*sink.KeyBuildError)):
		return "duplicate_source_keys"
	case errors.Is(err, ErrLake):
		return "lake_failed"
	}
	// Connect and query timeouts also match context.DeadlineExceeded: the
	// source's classes come first; a deadline nothing else explains is the
	// run's own.
	c := source.Classify(err)
	if c == source.ClassUnknown && errors.Is(err, context.DeadlineExceeded) {
		return "run_timeout"
	}
	return c.Code
}

// IsTransient reports whether a failed run is worth retrying with backoff:
// timeouts, deadlocks, dropped connections (source.IsTransient), a store
// that is down or restarting, a catalog race in the store, and a position
// moved under the run by another runner or an operator (the retry starts
// from the new position). Never login, permission or configuration
// failures, an expired position, or a canceled run.
func IsTransient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, extractors.ErrExpired):
		return false
	case errors.Is(err, watermarks.ErrPositionMoved), catalogRace(err), storeUnavailable(err):
		return true
	}
	return source.IsTransient(err)
}

// catalogRace reports a unique violation on a PostgreSQL system catalog
// index (pg_namespace_nspname_index, pg_type_typname_nsp_index, ...): two
// sessions ran the same CREATE ... IF NOT EXISTS at once in the store; a
// retry finds the object there.
func catalogRace(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "23505" && strings.HasPrefix(pg.ConstraintName, "pg_")
}

// storeUnavailable reports a store failure (a *StoreError) caused by a
// refused, lost or shut-down connection, or by a connection pgx closed
// after such a failure (pgconn.ErrConnClosed): the store's server is down
// or restarting, and a retry will find it back.
func storeUnavailable(err error) bool {
	var se *StoreError
	if !errors.As(err, &se) {
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	var pg *pgconn.PgError
	switch {
	case errors.Is(se.Err, pgconn.ErrConnClosed), errors.As(se.Err, &ce), errors.As(se.Err, &ne),
		errors.Is(se.Err, io.EOF), errors.Is(se.Err, io.ErrUnexpectedEOF), errors.Is(se.Err, net.ErrClosed),
		pgconn.SafeToRetry(se.Err):
		return true
	case errors.As(se.Err, &pg):
		// 57P01-57P03: shutting down, crashed, not yet accepting; class 08:
		// connection exceptions.
		return strings.HasPrefix(pg.Code, "57P") || strings.HasPrefix(pg.Code, "08")
	}
	return false
}
