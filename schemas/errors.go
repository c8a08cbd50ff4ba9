package schemas

import "errors"

// Matchable errors. Test for them with errors.Is.
var (
	// ErrUnknownType is wrapped by ParseType when the dialect has no type of
	// that name (or ehrsync does not know it).
	ErrUnknownType = errors.New("unknown type")
	// ErrUnsupportedType is wrapped by Map (and everything built on it) when
	// a known source type has no mapping to Arrow and the store.
	ErrUnsupportedType = errors.New("unsupported type")
)

// ErrSourceChanged is wrapped by AdaptToSource when a source table no longer
// matches its catalog entry in a way ehrsync cannot adapt to (a column read
// from it is gone, or has a type that cannot be carried). The error names
// the table, the column and the fix. It is permanent: retrying does not help.
var ErrSourceChanged = errors.New("the source table changed")
