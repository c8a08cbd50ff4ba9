package engine

import (
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
