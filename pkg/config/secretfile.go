package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"runtime"
	"strings"
)

// maxConfigFile bounds the configuration file Load reads.
const maxConfigFile = 16 << 20

// readConfigFile opens the configuration file once and reads it from the
// descriptor whose mode it returns (fstat of the open file), so that the
// mode judged is the file's that was read.
func readConfigFile(path string) ([]byte, fs.FileMode, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfigFile+1))
	if err != nil {
		return nil, 0, err
	}
	if len(b) > maxConfigFile {
		return nil, 0, fmt.Errorf("%s: larger than %d bytes", path, maxConfigFile)
	}
	return b, fi.Mode(), nil
}

// literalSecrets refuses a configuration file that group or others may
// read (mode, from readConfigFile) when it holds a secret written as a
// literal: one problem per such key. A reference (env:, file:, an enc:
// value) is no secret in the file; neither is a connection URL without a
// password in it (store.url: postgres://ehrsync@db/store?sslmode=...). On
// Windows, where modes do not say who may read, nothing is refused.
func (c *Config) literalSecrets(path string, mode fs.FileMode) error {
	if runtime.GOOS == "windows" || mode.Perm()&0o044 == 0 {
		return nil
	}
	var errs []error
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(key string, s *Secret) {
		if s.holdsLiteral(key) {
			errs = append(errs, &FieldError{Key: key, Problem: fmt.Sprintf(
				"a secret written as a literal in %s, which group or others may read (mode %04o): run chmod 600 %s, or write it as env:NAME, file:PATH or an enc: value (ehrsync secrets encrypt)",
				path, mode.Perm(), path)})
		}
	})
	return errors.Join(errs...)
}

var kvPasswordRE = regexp.MustCompile(`(?:^|\s)password\s*=`)

// holdsLiteral reports whether the secret's text is the secret itself
// (not env:, file: or enc:). A connection URL (a key ending in url) is a
// secret only when it holds a password: in its user information, a
// password= parameter, or a password= keyword.
func (s Secret) holdsLiteral(key string) bool {
	ref := s.text()
	if ref == "" || strings.HasPrefix(ref, envPrefix) || strings.HasPrefix(ref, filePrefix) || strings.HasPrefix(ref, encPrefix) {
		return false
	}
	if !strings.HasSuffix(key, "url") {
		return true
	}
	if strings.Contains(ref, "://") {
		u, err := url.Parse(ref)
		if err != nil {
			return true // cannot tell: judge it a secret
		}
		if _, ok := u.User.Password(); ok {
			return true
		}
		return u.Query().Has("password")
	}
	return kvPasswordRE.MatchString(ref)
}

var secretType = reflect.TypeFor[Secret]()

// walkSecrets calls fn for every Secret in v (a struct, pointer, slice),
// with its key path as validation names it (orgs[0].source.password).
func walkSecrets(v reflect.Value, path string, fn func(key string, s *Secret)) {
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			walkSecrets(v.Elem(), path, fn)
		}
	case reflect.Slice:
		for i := range v.Len() {
			walkSecrets(v.Index(i), fmt.Sprintf("%s[%d]", path, i), fn)
		}
	case reflect.Struct:
		if v.Type() == secretType {
			if v.CanAddr() {
				fn(path, v.Addr().Interface().(*Secret))
			}
			return
		}
		t := v.Type()
		for i := range t.NumField() {
			if name, ok := yamlName(t.Field(i)); ok {
				walkSecrets(v.Field(i), joinKey(path, name), fn)
			}
		}
	}
}

// SecretProblems resolves every secret of c a sync resolves (the store's
// and the sources'; not the server section's, which only the daemon
// reads) with [Secret.Reveal], and returns a *FieldError for each one that
// does not resolve, naming its key and its reference ("store.url:
// env:EHRSYNC_STORE_URL is not set"), never a value; the values resolved
// are dropped. A reference Validate finds malformed is left to Validate.
func (c *Config) SecretProblems() []error {
	var errs []error
	walkSecrets(reflect.ValueOf(c).Elem(), "", func(key string, s *Secret) {
		if s.check() != "" || strings.HasPrefix(key, "server.") {
			return
		}
		if _, err := s.Reveal(); err != nil {
			errs = append(errs, &FieldError{Key: key, Problem: err.Error()})
		}
	})
	return errs
}
