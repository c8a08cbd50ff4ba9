// Package secrets encrypts and decrypts configuration secret values: the
// enc: form of config.Secret.
//
// An encrypted value is "enc:v1:" and the unpadded base64url of a 12-byte
// random nonce followed by the AES-256-GCM ciphertext and tag. The key is
// 32 random bytes, given as standard base64 in the environment variable
// EHRSYNC_SECRETS_KEY or in a file named by EHRSYNC_SECRETS_KEY_FILE.
// Neither the key nor a plaintext ever appears in an error.
package secrets

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
)

// The environment variables the key is read from, in this order.
const (
	EnvKey     = "EHRSYNC_SECRETS_KEY"
	EnvKeyFile = "EHRSYNC_SECRETS_KEY_FILE"
)

// Prefix starts every encrypted value.
const Prefix = "enc:v1:"

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

// CheckPrivate returns a *PermissionError when the file at path (symbolic
// links followed) has any group or other permission bits, and the stat
// error when it cannot be read. On Windows, where modes do not say who may
// read, it checks nothing. It is for files another library opens by path
// (a Kerberos keytab); a file ehrsync reads itself goes through
// [ReadPrivate], which checks the file it reads.
func CheckPrivate(path string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return &PermissionError{Path: path, Mode: fi.Mode()}
	}
	return nil
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

// KeyFromEnv reads the key from EHRSYNC_SECRETS_KEY, else from the file
// named by EHRSYNC_SECRETS_KEY_FILE; ErrNoKey when neither is set.
func KeyFromEnv() (Key, error) {
	if v := os.Getenv(EnvKey); v != "" {
		k, err := ParseKey(v)
		if err != nil {
			return Key{}, fmt.Errorf("%s: %w", EnvKey, err)
		}
		return k, nil
	}
	if path := os.Getenv(EnvKeyFile); path != "" {
		b, err := ReadPrivate(path)
		if err != nil {
			return Key{}, fmt.Errorf("%s: %w", EnvKeyFile, err)
		}
		k, err := ParseKey(string(b))
		if err != nil {
			return Key{}, fmt.Errorf("%s %s: %w", EnvKeyFile, path, err)
		}
		return k, nil
	}
	return Key{}, ErrNoKey
}

// IsEncrypted reports whether text is an enc: value of any version.
func IsEncrypted(text string) bool { return strings.HasPrefix(text, "enc:") }

// Encrypt returns the enc:v1: form of plaintext under k.
func Encrypt(k Key, plaintext string) (string, error) {
	aead, err := newAEAD(k)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("nonce: %w", err)
	}
	sealed := aead.Seal(nonce, nonce, []byte(plaintext), []byte(Prefix))
	return Prefix + base64.RawURLEncoding.EncodeToString(sealed), nil
}

// Decrypt returns the plaintext of an enc:v1: value; ErrDecrypt when it is
// malformed or not encrypted under k.
func Decrypt(k Key, value string) (string, error) {
	body, ok := strings.CutPrefix(value, Prefix)
	if !ok {
		return "", ErrDecrypt
	}
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
	plain, err := aead.Open(nil, sealed[:aead.NonceSize()], sealed[aead.NonceSize():], []byte(Prefix))
	if err != nil {
		return "", ErrDecrypt
	}
	return string(plain), nil
}

// Reencrypt decrypts value under from and encrypts it under to.
func Reencrypt(from, to Key, value string) (string, error) {
	plain, err := Decrypt(from, value)
	if err != nil {
		return "", err
	}
	return Encrypt(to, plain)
}

func newAEAD(k Key) (cipher.AEAD, error) {
	block, err := aes.NewCipher(k.b[:])
	if err != nil {
		return nil, fmt.Errorf("aes: %w", err)
	}
	return cipher.NewGCM(block)
}
