package storedb

import (
	"errors"
	"fmt"
)

var (
	// ErrSchemaNewer means the store's ehrsync schema was migrated by a newer
	// ehrsync than this binary: running on would risk writing data the newer
	// version cannot read. errors.As gives the *VersionError.
	ErrSchemaNewer = errors.New("store schema is newer than this binary")

	// ErrSchemaMismatch means an applied migration differs from the one this
	// binary embeds (renamed, edited, or a gap in the applied versions).
	ErrSchemaMismatch = errors.New("store schema does not match this binary's migrations")
)

// VersionError is ErrSchemaNewer with the two versions.
type VersionError struct {
	Database int // the newest migration applied to the store
	Binary   int // the newest migration this binary knows
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("store schema %s is at version %d, newer than this binary's %d: run a newer ehrsync",
		SchemaName, e.Database, e.Binary)
}

// Is makes errors.Is(err, ErrSchemaNewer) true.
func (e *VersionError) Is(target error) bool { return target == ErrSchemaNewer }
