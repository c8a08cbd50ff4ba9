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
