package changetracking

import (
	"errors"

	"github.com/ehrsync/ehrsync/extractors/snapshot"
)

// ErrPosition means Open was given a position this extractor cannot start
// from: another kind, a snapshot that does not resume on a CT position, or
// a key of another shape. It is the same error as snapshot.ErrPosition.
var ErrPosition = snapshot.ErrPosition

// ErrNotReadable means Change Tracking cannot be read for the table: it is
// not enabled for the database or the table, or the login lacks VIEW CHANGE
// TRACKING or SELECT. *SetupError carries the details and the fixes.
var ErrNotReadable = errors.New("change tracking is not readable")
