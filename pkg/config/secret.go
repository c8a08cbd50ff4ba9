package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// Secret is a configuration value that must not leak: a password, a token,
// a connection URL, a private key. Its text is a reference resolved by
// [Secret.Reveal]:
//
//	env:NAME    the environment variable NAME
//	file:PATH   the content of the file PATH, less one trailing newline
//	enc:v2:...  an AES-256-GCM encrypted value (package secrets), bound to
//	            the key path of its field (For), decrypted with the keys of
//	            EHRSYNC_SECRETS_KEY (and _PREVIOUS) or EHRSYNC_SECRETS_KEY_FILE;
//	            enc:v1:... values of the old, unbound format still decrypt
//
// Any other text is the literal value. A literal that starts with one of
// these prefixes cannot be written; put it in a file.
//
// String, LogValue, Format and the marshalers give the reference form
// (env:NAME, file:PATH) for references and "[redacted]" for literal and
// encrypted values; never the value itself. The zero Secret is unset.
type Secret struct {
	// ref is behind a pointer so that code printing a Secret without its
	// methods (an unexported struct field, a %s of a pointer to a struct
	// holding one) shows an address, not the text. nil is unset.
	ref *string
	// path is the key path the secret belongs to (SecretPath), which an
	// enc:v2 value is bound to; "" when not bound (a Secret made in code
	// without For).
	path string
}

// For returns the secret bound to the key path of its field (such as
// org:st-mary/source.password; see [Config.SecretPath]): an enc:v2 value
// reveals only for the path it was encrypted for. Load and ApplyDefaults
// bind every secret of a configuration.
func (s Secret) For(path string) Secret {
	s.path = path
	return s
}

// Path is the key path the secret is bound to ("" when not bound).
func (s Secret) Path() string { return s.path }

// The reference prefixes.
const (
	envPrefix  = "env:"
	filePrefix = "file:"
	encPrefix  = "enc:"
)

// Redacted is what a Secret holding a literal or encrypted value prints.
const Redacted = "[redacted]"

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// NewSecret returns a Secret with this reference or literal text.
func NewSecret(ref string) Secret {
	if ref == "" {
		return Secret{}
	}
	return Secret{ref: &ref}
}

// text returns the reference or literal text ("" when unset).
func (s Secret) text() string {
	if s.ref == nil {
		return ""
	}
	return *s.ref
}

// IsSet reports whether the secret has any text.
func (s Secret) IsSet() bool { return s.text() != "" }

// Reveal resolves the secret. An unset Secret reveals "" and no error.
// Errors name the reference (env:NAME, file:PATH), never a value; an unset
// or empty environment variable is [ErrSecretUnset], an empty file
// [ErrSecretEmpty]; an enc: value of an unknown version is
// [ErrSecretUnsupported], one without a key secrets.ErrNoKey, one that does
// not decrypt (wrong key, damaged) secrets.ErrDecrypt.
func (s Secret) Reveal() (string, error) {
	ref := s.text()
	switch {
	case ref == "":
		return "", nil
	case strings.HasPrefix(ref, envPrefix):
		name := strings.TrimPrefix(ref, envPrefix)
		if !envNameRE.MatchString(name) {
			return "", fmt.Errorf("secret %s: %s", s, s.check())
		}
		v, ok := os.LookupEnv(name)
		if !ok {
			return "", &unsetError{ref: ref}
		}
		if v == "" {
			return "", fmt.Errorf("secret %s: %w", s, ErrSecretEmpty)
		}
		return v, nil
	case strings.HasPrefix(ref, filePrefix):
		path := strings.TrimPrefix(ref, filePrefix)
		if path == "" {
			return "", fmt.Errorf("secret %s: %s", s, s.check())
		}
		// A secret file others may read is refused, as ssh refuses such a
		// private key; the file checked is the file read.
		b, err := secrets.ReadPrivate(path)
		if secrets.IsFileRefused(err) {
			return "", fmt.Errorf("secret %s: %w", s, err)
		}
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				// PathError's text is "op path: cause"; keep only the cause so
				// the message does not say the path twice.
				err = pe.Err
			}
			return "", fmt.Errorf("secret %s: read: %w", s, err)
		}
		v := string(b)
		if strings.HasSuffix(v, "\r\n") {
			v = v[:len(v)-2]
		} else {
			v = strings.TrimSuffix(v, "\n")
		}
		if v == "" {
			return "", fmt.Errorf("secret %s: %w", s, ErrSecretEmpty)
		}
		return v, nil
	case strings.HasPrefix(ref, encPrefix):
		if !strings.HasPrefix(ref, secrets.Prefix) && !secrets.IsLegacy(ref) {
			return "", fmt.Errorf("secret %s: %w", s, ErrSecretUnsupported)
		}
		if s.path == "" && !secrets.IsLegacy(ref) {
			return "", fmt.Errorf("secret %s: %w: an enc:v2 value decrypts only for the field it belongs to, and this secret's is not known", s, secrets.ErrDecrypt)
		}
		keys, err := secrets.KeysFromEnv()
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", s, err)
		}
		v, _, err := keys.Decrypt(s.path, ref)
		if err != nil {
			return "", fmt.Errorf("secret %s: %w", s, err)
		}
		return v, nil
	default:
		return ref, nil
	}
}

// String returns the reference form: "env:NAME", "file:PATH", "[redacted]"
// for literal and enc: values, "" when unset.
func (s Secret) String() string {
	ref := s.text()
	switch {
	case ref == "":
		return ""
	case strings.HasPrefix(ref, envPrefix), strings.HasPrefix(ref, filePrefix):
		return ref
	default:
		return Redacted
	}
}

// GoString is String, so %#v does not show the value either.
func (s Secret) GoString() string { return fmt.Sprintf("config.NewSecret(%q)", s.String()) }

// Format prints String for every verb, so no verb (%d, %x, %+v) reaches the
// unexported value.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		fmt.Fprint(f, s.GoString())
		return
	}
	fmt.Fprintf(f, fmt.FormatString(f, verb), s.String())
}

// LogValue is String.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalJSON encodes String.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// MarshalText encodes String.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// MarshalYAML encodes String.
func (s Secret) MarshalYAML() (any, error) { return s.String(), nil }

// UnmarshalYAML takes the scalar's text as it is written: `password: 0123`
// is the text "0123".
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: want a string (a literal, env:NAME or file:PATH)", n.Line)}}
	}
	if n.Tag == "!!null" {
		*s = Secret{}
		return nil
	}
	*s = NewSecret(n.Value)
	return nil
}

// check reports what is wrong with the reference itself (not whether it
// resolves: that is for Reveal at run time).
func (s Secret) check() string {
	ref := s.text()
	switch {
	case strings.HasPrefix(ref, envPrefix):
		if name := strings.TrimPrefix(ref, envPrefix); !envNameRE.MatchString(name) {
			return fmt.Sprintf("bad environment variable name %q in env: reference", name)
		}
	case strings.HasPrefix(ref, filePrefix):
		if strings.TrimPrefix(ref, filePrefix) == "" {
			return "file: reference without a path"
		}
	case strings.HasPrefix(ref, encPrefix):
		if !strings.HasPrefix(ref, secrets.Prefix) && !secrets.IsLegacy(ref) {
			return "unknown enc: version (want enc:v2:..., from ehrsync secrets encrypt --for KEY)"
		}
	}
	return ""
}
