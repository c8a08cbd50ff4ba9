package daemon

import (
	"context"
	"errors"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Class names an error's class for metrics labels, audit records and the
// admin API: a stable code (source.Classify's, or one of the engine's own:
// position_expired, position_moved, canceled, run_timeout), never error
// text. "" for nil.
func Class(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, engine.ErrExpired):
		return "position_expired"
	case errors.Is(err, watermarks.ErrPositionMoved):
		return "position_moved"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, schemas.ErrSourceChanged):
		return "source_schema_changed"
	}
	// Connect and query timeouts also match context.DeadlineExceeded: the
	// source's classes come first; a deadline nothing else explains is the
	// run's own.
	c := source.Classify(err)
	if c.Code == "unclassified" && errors.Is(err, context.DeadlineExceeded) {
		return "run_timeout"
	}
	return c.Code
}

// Transient reports whether a failed run is worth retrying with backoff:
// timeouts, deadlocks, dropped connections (source.IsTransient), and a
// position moved under the run by another runner or an operator (the retry
// starts from the new position). Never login, permission or configuration
// failures, and never a canceled run.
func Transient(err error) bool {
	switch {
	case err == nil, errors.Is(err, context.Canceled), errors.Is(err, engine.ErrExpired):
		return false
	case errors.Is(err, watermarks.ErrPositionMoved), catalogRace(err):
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
