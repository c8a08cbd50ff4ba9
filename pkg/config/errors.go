package config

import (
	"errors"
	"fmt"
)

// Errors of [Secret.Reveal], for errors.Is.
var (
	// ErrSecretUnset: the env: reference names an unset variable.
	ErrSecretUnset = errors.New("environment variable not set")
	// ErrSecretEmpty: the variable or file is empty.
	ErrSecretEmpty = errors.New("empty value")
	// ErrSecretUnsupported: an enc: value (encrypted secrets are not
	// supported yet).
	ErrSecretUnsupported = errors.New("unsupported enc: version")
)

// unsetError is an env: reference to a variable that is not set; its text
// names the reference ("env:STMARY_PASSWORD is not set").
type unsetError struct{ ref string }

func (e *unsetError) Error() string { return e.ref + " is not set" }

// Is makes errors.Is(err, ErrSecretUnset) true.
func (e *unsetError) Is(target error) bool { return target == ErrSecretUnset }

// A FieldError is one problem with the configuration: a key that is
// invalid, missing or unknown. Its text is "key: problem", with the line
// when it comes from decoding ("line 12: orgs[0].tables[1].strategyy:
// unknown key").
type FieldError struct {
	// Key is the key path, e.g. orgs[1].tables[3].strategy; "" for a
	// problem with the whole file.
	Key string
	// Line is the 1-based line in the YAML file, or 0 when unknown.
	Line int
	// Problem says what is wrong. It never holds a secret's value.
	Problem string
}

func (e *FieldError) Error() string {
	s := e.Problem
	if e.Key != "" {
		s = e.Key + ": " + s
	}
	if e.Line > 0 {
		s = fmt.Sprintf("line %d: %s", e.Line, s)
	}
	return s
}

// Problems lists the problems an error from [Load], [Parse] or
// [Config.Validate] holds, one per entry, in file order (decoding) or key
// order (validation). Any other error is returned as its only entry; nil
// gives nil.
func Problems(err error) []error {
	if err == nil {
		return nil
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if m, ok := e.(interface{ Unwrap() []error }); ok {
			return m.Unwrap()
		}
	}
	return []error{err}
}
