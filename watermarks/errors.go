package watermarks

import (
	"errors"
	"fmt"
)

var (
	// ErrPositionMoved means a table's saved position is no longer the one a
	// move started from: another runner or an operator moved it. Nothing was
	// written. Match it with errors.Is; errors.As gives the *MovedError.
	ErrPositionMoved = errors.New("position moved")

	// ErrCorruptPosition means a position stored in the database does not
	// decode. Match it with errors.Is; errors.As gives the *CorruptError.
	ErrCorruptPosition = errors.New("corrupt position")

	// ErrInvalidPosition means a position or value is malformed: Encode of a
	// position that breaks its kind's rules, or Decode of a document that is
	// not a position this binary knows. errors.As gives the *InvalidError.
	ErrInvalidPosition = errors.New("invalid position")
)

// MovedError is the ErrPositionMoved of one table.
type MovedError struct {
	Org, Table string
}

func (e *MovedError) Error() string {
	return fmt.Sprintf("position of %s %s moved since it was read", e.Org, e.Table)
}

// Is makes errors.Is(err, ErrPositionMoved) true.
func (e *MovedError) Is(target error) bool { return target == ErrPositionMoved }

// CorruptError is the ErrCorruptPosition of one stored row. It names the
// table, never the stored bytes; Err says what is wrong with them.
type CorruptError struct {
	Org, Table string
	Err        error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("stored position of %s %s is corrupt: %v", e.Org, e.Table, e.Err)
}

// Is makes errors.Is(err, ErrCorruptPosition) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorruptPosition }

// Unwrap returns the decode error.
func (e *CorruptError) Unwrap() error { return e.Err }

// InvalidError is the ErrInvalidPosition of one field. Its message names the
// field and the rule it breaks; it never quotes a key or cursor value.
type InvalidError struct {
	Path   string // the field at fault, as in the JSON document: "value", "last_key[1]", "resume.lsn"
	Reason string
}

func (e *InvalidError) Error() string {
	if e.Path == "" {
		return "invalid position: " + e.Reason
	}
	return "invalid position: " + e.Path + ": " + e.Reason
}

// Is makes errors.Is(err, ErrInvalidPosition) true.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalidPosition }

func invalidf(path, format string, args ...any) *InvalidError {
	return &InvalidError{Path: path, Reason: fmt.Sprintf(format, args...)}
}

// within prefixes the path of an *InvalidError; other errors pass through.
func within(prefix string, err error) error {
	var ie *InvalidError
	if !errors.As(err, &ie) {
		return err
	}
	p := prefix
	if ie.Path != "" {
		if ie.Path[0] == '[' {
			p += ie.Path
		} else {
			p += "." + ie.Path
		}
	}
	return &InvalidError{Path: p, Reason: ie.Reason}
}
