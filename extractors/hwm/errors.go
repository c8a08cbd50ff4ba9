package hwm

import "github.com/ehrsync/ehrsync/extractors/snapshot"

// ErrPosition means Open was given a position this extractor cannot start
// from: another kind, a cursor on another column or of another type, a
// snapshot that does not resume on this cursor, or a key of another shape.
// It is a configuration or operator problem (the strategy, cursor or key
// changed), never retried. It is the same error as snapshot.ErrPosition.
var ErrPosition = snapshot.ErrPosition
