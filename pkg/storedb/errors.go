package storedb

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"
)

// insufficientPrivilege is SQLSTATE 42501: a missing privilege, or "must be
// owner", and the append-only triggers' refusal.
const insufficientPrivilege = "42501"

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

// ErrNotOwner means the role ehrsync connected as may not change the ehrsync
// schema: migrations run as the schema's owner (store.owner_url, or
// `ehrsync migrate` with it), and the writer role starts on a schema that
// is up to date.
var ErrNotOwner = errors.New("this role may not migrate the store schema: run ehrsync migrate as its owner (store.owner_url)")

// ownerHint marks a refused privilege (SQLSTATE 42501) with ErrNotOwner.
func ownerHint(err error) error {
	var pg *pgconn.PgError
	if errors.As(err, &pg) && pg.Code == insufficientPrivilege {
		return fmt.Errorf("%w: %w", ErrNotOwner, err)
	}
	return err
}
