package engine

import (
	"context"
	"errors"
)

// ErrAuditNotWritten means an audit record could not be stored (a revoked
// INSERT, a store that went away): the action it records fails with it,
// never silently. An Auditor's error when its record was not written
// matches it; Class names it audit_not_written.
var ErrAuditNotWritten = errors.New("audit record not written")

// StoreError marks a failure in the store (the PostgreSQL ehrsync writes
// to: positions, leases, rows) as opposed to the source, so that operators
// and retries can tell the two apart. Class names one whose cause is a
// lost or refused connection store_unavailable, and IsTransient retries it.
type StoreError struct{ Err error }

func (e *StoreError) Error() string { return e.Err.Error() }
func (e *StoreError) Unwrap() error { return e.Err }

// storeErr marks err, when not nil, as the store's.
func storeErr(err error) error {
	if err == nil {
		return nil
	}
	var se *StoreError
	if errors.As(err, &se) {
		return err
	}
	return &StoreError{Err: err}
}

// Cancel is why a run was canceled, for context.WithCancelCause: who asked
// (an operator, "daemon") and why. A run that ends because its context was
// canceled is logged as canceled, with these, not as failed. Its text is
// safe to log.
type Cancel struct {
	By  string
	Why string
}

func (c *Cancel) Error() string { return "canceled by " + c.By + ": " + c.Why }

// canceled reports whether err ended a run because ctx was canceled (not a
// deadline: a timeout is a failure), with who and why as log attributes:
// those of ctx's *Cancel cause, or the cause's text.
func canceled(ctx context.Context, err error) ([]any, bool) {
	if !errors.Is(err, context.Canceled) || !errors.Is(ctx.Err(), context.Canceled) {
		return nil, false
	}
	cause := context.Cause(ctx)
	var c *Cancel
	if errors.As(cause, &c) {
		return []any{"by", c.By, "why", c.Why}, true
	}
	return []any{"why", cause.Error()}, true
}
