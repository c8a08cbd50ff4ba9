package engine

import (
	"errors"
	"fmt"
)

// ErrExpired means a table's saved position is no longer readable at the
// source: CDC cleanup raised the capture instance's minimum LSN past it
// (PITFALLS P1), or Change Tracking's minimum valid version passed it (P2).
// Changes were lost at the source, so the table must be re-snapshotted (or
// fail, by table policy); it is never skipped silently.
var ErrExpired = errors.New("position expired at the source")

// ExpiredError says which position expired and why. It matches ErrExpired.
type ExpiredError struct {
	Table  string // qualified source table name
	Reason string // e.g. "saved LSN 0x… is below capture instance dbo_claims's minimum 0x…"
}

func (e *ExpiredError) Error() string {
	return fmt.Sprintf("%s: position expired at the source: %s", e.Table, e.Reason)
}

// Is makes errors.Is(err, ErrExpired) true.
func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

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
