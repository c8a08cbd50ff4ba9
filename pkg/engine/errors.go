package engine

import (
	"errors"
)

// StoreError marks a failure in the store (the PostgreSQL ehrsync writes
// to: positions, leases, rows) as opposed to the source, so that operators
// and retries can tell the two apart. The daemon classes one whose cause is
// a lost or refused connection store_unavailable, and retries it.
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
