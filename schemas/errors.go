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
