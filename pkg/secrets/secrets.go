// Package secrets encrypts and decrypts configuration secret values: the
// enc: form of config.Secret.
//
// An encrypted value is
//
//	enc:v2:<key id>:<base64url of a 12-byte random nonce, the AES-256-GCM ciphertext and tag>
//
// The key id is the hex of the first 4 bytes of the key's SHA-256 (it says
// which key to decrypt with, and nothing about the key). The GCM additional
// authenticated data is "enc:v2:<key id>:<key path>", the key path being
// the configuration field the value belongs to (store.url,
// org:st-mary/source.password; package config names them): a value copied
// to another field, or with another key id written in, does not decrypt.
//
// The keys are 32 random bytes, given as standard base64: the current key
// in EHRSYNC_SECRETS_KEY, and during a rotation the previous one in
// EHRSYNC_SECRETS_KEY_PREVIOUS; or one key per line in the file named by
// EHRSYNC_SECRETS_KEY_FILE, the current first (lines starting with # are
// comments). Values decrypt under any of these keys, found by key id;
// new values are encrypted under the current key.
//
// The old format, "enc:v1:" and the base64url of nonce and sealed text
// with "enc:v1:" as additional data (no key path, no key id), still
// decrypts, under any of the keys; package config warns about every such
// value, and `ehrsync secrets rotate-key` rewrites them as enc:v2.
//
// Neither a key nor a plaintext ever appears in an error.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// The environment variables the keys are read from: EnvKey (with
// EnvKeyPrevious), else EnvKeyFile.
const (
	EnvKey         = "EHRSYNC_SECRETS_KEY"
	EnvKeyPrevious = "EHRSYNC_SECRETS_KEY_PREVIOUS"
	EnvKeyFile     = "EHRSYNC_SECRETS_KEY_FILE"
)

// Prefix starts every value Encrypt makes; PrefixV1 the old format's.
const (
	Prefix   = "enc:v2:"
	PrefixV1 = "enc:v1:"
)

// Errors, for errors.Is.
var (
	// ErrNoKey: neither EHRSYNC_SECRETS_KEY nor EHRSYNC_SECRETS_KEY_FILE is set.
	ErrNoKey = errors.New("no secrets key (set " + EnvKey + " or " + EnvKeyFile + ")")
	// ErrBadKey: the key is not the base64 of 32 bytes.
	ErrBadKey = errors.New("secrets key is not the base64 of 32 bytes")
	// ErrDecrypt: the value is malformed or was encrypted under another key.
	ErrDecrypt = errors.New("cannot decrypt: malformed value or wrong key")
)

// PermissionError is a key or secret file that group or others may read or
// write: ehrsync refuses it, as ssh refuses such a private key.
type PermissionError struct {
	Path string
	Mode fs.FileMode
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("%s is open to group or others (mode %04o): run chmod 600 %s", e.Path, e.Mode.Perm(), e.Path)
}

// Key is an AES-256 key. Its String does not show it.
type Key struct{ b [32]byte }

// String is "[secrets key]".
func (Key) String() string { return "[secrets key]" }

// GoString is String.
func (k Key) GoString() string { return k.String() }

// NewKey returns a random key.
func NewKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k.b[:]); err != nil {
		return Key{}, fmt.Errorf("new key: %w", err)
	}
	return k, nil
}

// ParseKey decodes the standard base64 of 32 bytes (surrounding white
// space allowed).
func ParseKey(text string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(text))
	if err != nil || len(b) != 32 {
		return Key{}, ErrBadKey
	}
	var k Key
	copy(k.b[:], b)
	return k, nil
}

// Encode returns the key as standard base64, for a key file or the
// environment. Handle the result as a secret.
func (k Key) Encode() string { return base64.StdEncoding.EncodeToString(k.b[:]) }

// ID is the key's id: the hex of the first 4 bytes of its SHA-256. It is
// written in every enc:v2 value the key encrypts, so that the right key of
// a Keyring is found; it reveals nothing usable about the key.
func (k Key) ID() string {
	sum := sha256.Sum256(k.b[:])
	return hex.EncodeToString(sum[:4])
}

// Keyring is the current key and, during a rotation, previous ones:
// values decrypt under any of them, found by key id, and are encrypted
// under the current one.
type Keyring struct {
	keys []Key // current first
}

// NewKeyring returns a keyring of current and the previous keys.
func NewKeyring(current Key, previous ...Key) Keyring {
	return Keyring{keys: append([]Key{current}, previous...)}
}

// Current is the key new values are encrypted under.
func (r Keyring) Current() Key { return r.keys[0] }

// With returns a keyring whose current key is k, keeping r's keys to
// decrypt with (rotate-key --new-key-file).
func (r Keyring) With(k Key) Keyring {
	return Keyring{keys: append([]Key{k}, r.keys...)}
}

// IDs lists the keys' ids, the current first.
func (r Keyring) IDs() []string {
	ids := make([]string, len(r.keys))
	for i, k := range r.keys {
		ids[i] = k.ID()
	}
	return ids
}

// String does not show the keys.
func (r Keyring) String() string { return fmt.Sprintf("[secrets keys %s]", strings.Join(r.IDs(), ",")) }

// KeysFromEnv reads the keyring: EHRSYNC_SECRETS_KEY (the current key) and
// EHRSYNC_SECRETS_KEY_PREVIOUS (optional, the key a rotation replaces);
// else the file named by EHRSYNC_SECRETS_KEY_FILE, one key per line, the
// current first (blank lines and lines starting with # are skipped; the
// file must not be open to group or others), with
// EHRSYNC_SECRETS_KEY_PREVIOUS added when set. ErrNoKey when neither
// EHRSYNC_SECRETS_KEY nor EHRSYNC_SECRETS_KEY_FILE is set.
func KeysFromEnv() (Keyring, error) {
	var keys []Key
	if v := os.Getenv(EnvKey); v != "" {
		k, err := ParseKey(v)
		if err != nil {
			return Keyring{}, fmt.Errorf("%s: %w", EnvKey, err)
		}
		keys = append(keys, k)
	} else if path := os.Getenv(EnvKeyFile); path != "" {
		b, err := ReadPrivate(path)
		if err != nil {
			return Keyring{}, fmt.Errorf("%s: %w", EnvKeyFile, err)
		}
		n := 0
		for line := range strings.Lines(string(b)) {
			n++
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, err := ParseKey(line)
			if err != nil {
				return Keyring{}, fmt.Errorf("%s %s: line %d: %w", EnvKeyFile, path, n, err)
			}
			keys = append(keys, k)
		}
		if len(keys) == 0 {
			return Keyring{}, fmt.Errorf("%s %s: %w", EnvKeyFile, path, ErrBadKey)
		}
	} else {
		return Keyring{}, ErrNoKey
	}
	if v := os.Getenv(EnvKeyPrevious); v != "" {
		k, err := ParseKey(v)
		if err != nil {
			return Keyring{}, fmt.Errorf("%s: %w", EnvKeyPrevious, err)
		}
		keys = append(keys, k)
	}
	return Keyring{keys: keys}, nil
}

// KeyFromEnv is the current key of KeysFromEnv.
func KeyFromEnv() (Key, error) {
	r, err := KeysFromEnv()
	if err != nil {
		return Key{}, err
	}
	return r.Current(), nil
}

// IsEncrypted reports whether text is an enc: value of any version.
func IsEncrypted(text string) bool { return strings.HasPrefix(text, "enc:") }

// IsLegacy reports whether text is an enc:v1 value (no key path, no key id).
func IsLegacy(text string) bool { return strings.HasPrefix(text, PrefixV1) }

// UnknownKeyError is an enc:v2 value whose key id is none of the
// keyring's: it was encrypted under another key.
type UnknownKeyError struct {
	ID   string   // the value's key id
	Have []string // the keyring's ids, the current first
}

func (e *UnknownKeyError) Error() string {
	return fmt.Sprintf("encrypted under key %s, which is not the current key (%s) nor a previous one: give that key as %s (or a line of the key file) until the value is re-encrypted (ehrsync secrets rotate-key)",
		e.ID, e.Have[0], EnvKeyPrevious)
}

// Unwrap makes it an ErrDecrypt.
func (e *UnknownKeyError) Unwrap() error { return ErrDecrypt }

// BindingError is an enc:v2 value that does not decrypt for its key path
// under its key: it belongs to another field (it was copied), or it was
// damaged or edited.
type BindingError struct {
	Path string
	ID   string
}

func (e *BindingError) Error() string {
	return fmt.Sprintf("does not decrypt as the value of %s under key %s: it was encrypted for another field (copied?), or damaged; encrypt this field's own: ehrsync secrets encrypt --for %s", e.Path, e.ID, e.Path)
}

// Unwrap makes it an ErrDecrypt.
func (e *BindingError) Unwrap() error { return ErrDecrypt }

// Encrypt returns the enc:v2 form of plaintext under k, bound to path (the
// key path of the field it is for, such as org:st-mary/source.password).
func Encrypt(k Key, path, plaintext string) (string, error) {
	if path == "" {
		return "", errors.New("encrypt: no key path (the field the value is for)")
	}
	head := Prefix + k.ID() + ":"
	sealed, err := seal(k, plaintext, head+path)
	if err != nil {
		return "", err
	}
	return head + sealed, nil
}

// seal encrypts plaintext under k with a random nonce and the additional
// data aad: the nonce and the sealed text, in unpadded URL base64.
func seal(k Key, plaintext, aad string) (string, error) {
	aead, err := newAEAD(k)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, []byte(plaintext), []byte(aad))), nil
}

// Decrypt returns the plaintext of an enc:v2 value for the field at path,
// under the keyring's key of the value's id (*UnknownKeyError when there
// is none, *BindingError when it does not decrypt for path), or of an
// enc:v1 value under any key of the keyring (legacy true). Every failure
// is an ErrDecrypt.
func (r Keyring) Decrypt(path, value string) (plain string, legacy bool, err error) {
	if body, ok := strings.CutPrefix(value, PrefixV1); ok {
		for _, k := range r.keys {
			if p, err := open(k, body, []byte(PrefixV1)); err == nil {
				return p, true, nil
			}
		}
		return "", true, ErrDecrypt
	}
	body, ok := strings.CutPrefix(value, Prefix)
	if !ok {
		return "", false, ErrDecrypt
	}
	id, body, ok := strings.Cut(body, ":")
	if !ok {
		return "", false, ErrDecrypt
	}
	for _, k := range r.keys {
		if k.ID() != id {
			continue
		}
		p, err := open(k, body, []byte(Prefix+id+":"+path))
		if err != nil {
			return "", false, &BindingError{Path: path, ID: id}
		}
		return p, false, nil
	}
	return "", false, &UnknownKeyError{ID: id, Have: r.IDs()}
}

// Reencrypt decrypts value (enc:v1 or enc:v2, for path) under the keyring
// and encrypts it for path under the current key.
func (r Keyring) Reencrypt(path, value string) (string, error) {
	plain, _, err := r.Decrypt(path, value)
	if err != nil {
		return "", err
	}
	return Encrypt(r.Current(), path, plain)
}

// EncryptV1 returns a value of the old enc:v1 format (no key path, no key
// id), for tests of its migration. Nothing in ehrsync writes one.
func EncryptV1(k Key, plaintext string) (string, error) {
	sealed, err := seal(k, plaintext, PrefixV1)
	if err != nil {
		return "", err
	}
	return PrefixV1 + sealed, nil
}

// open decodes a value's base64url body and opens it under k with aad.
func open(k Key, body string, aad []byte) (string, error) {
	sealed, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil {
		return "", ErrDecrypt
	}
	aead, err := newAEAD(k)
	if err != nil {
		return "", err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return "", ErrDecrypt
	}
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], aad)
	if err != nil {
		return "", ErrDecrypt
	}
	return string(plain), nil
}

func newAEAD(k Key) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.b[:])
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}
