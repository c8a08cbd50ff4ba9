package snapshot

import "errors"

// ErrPosition means Open was given a position this extractor cannot start
// from: another kind, or a key of another shape. It is a configuration or
// operator problem (the table's strategy or key changed), never retried.
var ErrPosition = errors.New("position does not fit this extractor")
