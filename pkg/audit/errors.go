package audit

import (
	"errors"
	"fmt"

	"github.com/ehrsync/ehrsync/pkg/engine"
)

// WriteError is a record that could not be stored (a revoked INSERT, a
// store that went away), with its cause: the action it records fails with
// it, never silently. It matches engine.ErrAuditNotWritten.
type WriteError struct{ Err error }

func (e *WriteError) Error() string {
	return "audit record not written to ehrsync.audit: " + e.Err.Error()
}
func (e *WriteError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, engine.ErrAuditNotWritten) true.
func (e *WriteError) Is(target error) bool { return target == engine.ErrAuditNotWritten }

// ErrBroken means the audit's hash chain does not verify: a row was edited,
// removed or inserted other than by ehrsync. errors.As gives the
// *BrokenError with the first broken link.
var ErrBroken = errors.New("audit chain broken")

// BrokenError is the first broken link of the chain.
type BrokenError struct {
	ID      int64  // the audit row (ehrsync.audit.id) where the chain breaks
	Problem string // what is wrong there
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("audit chain broken at row %d: %s", e.ID, e.Problem)
}

// Is makes errors.Is(err, ErrBroken) true.
func (e *BrokenError) Is(target error) bool { return target == ErrBroken }
