package secrets_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

const (
	sentinel = "Secr3t-S3ntinel-88aa"
	path     = "org:st-mary/source.password"
)

func TestRoundTrip(t *testing.T) {
	k, err := secrets.NewKey()
	require.NoError(t, err)
	ring := secrets.NewKeyring(k)
	for _, plain := range []string{sentinel, "x", strings.Repeat("long ", 1000), "-----BEGIN KEY-----\nabc\n-----END KEY-----"} {
		v, err := secrets.Encrypt(k, path, plain)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(v, secrets.Prefix+k.ID()+":"), v)
		if len(plain) > 8 { // a short plaintext can occur in base64 by chance
			require.NotContains(t, v, plain)
		}
		got, legacy, err := ring.Decrypt(path, v)
		require.NoError(t, err)
		require.False(t, legacy)
		require.Equal(t, plain, got)
	}
	a, _ := secrets.Encrypt(k, path, sentinel)
	b, _ := secrets.Encrypt(k, path, sentinel)
	require.NotEqual(t, a, b, "random nonce per value")
	_, err = secrets.Encrypt(k, "", sentinel)
	require.Error(t, err, "a value bound to no field")
}

// TestValueIsBoundToItsKeyPath: an enc:v2 value decrypts only for the key
// path it was encrypted for: copied to another field it fails with a
// *BindingError naming the field and the command that encrypts its own.
func TestValueIsBoundToItsKeyPath(t *testing.T) {
	k, _ := secrets.NewKey()
	ring := secrets.NewKeyring(k)
	v, err := secrets.Encrypt(k, "org:st-mary/source.password", sentinel)
	require.NoError(t, err)
	for _, other := range []string{"org:north/source.password", "org:st-mary/source.ssh.password", "store.url", "org:st-mary/source.password ", ""} {
		_, _, err := ring.Decrypt(other, v)
		var be *secrets.BindingError
		require.ErrorAs(t, err, &be, "decrypted for %q", other)
		require.ErrorIs(t, err, secrets.ErrDecrypt)
		require.ErrorContains(t, err, "does not decrypt as the value of "+other+" under key "+k.ID())
		require.ErrorContains(t, err, "ehrsync secrets encrypt --for "+other)
		require.NotContains(t, err.Error(), sentinel)
	}
}

// TestKeyIDsAndTwoKeys: a keyring of the current and the previous key
// decrypts values of either, by key id; a value under a key it does not
// hold names that key's id and the variable that gives it; the key id
// written in a value is authenticated.
func TestKeyIDsAndTwoKeys(t *testing.T) {
	oldK, _ := secrets.NewKey()
	newK, _ := secrets.NewKey()
	stranger, _ := secrets.NewKey()
	require.NotEqual(t, oldK.ID(), newK.ID())
	require.Len(t, oldK.ID(), 8)
	require.NotContains(t, oldK.Encode(), oldK.ID())
	ring := secrets.NewKeyring(newK, oldK)
	require.Equal(t, newK.ID(), ring.Current().ID())
	for _, k := range []secrets.Key{oldK, newK} {
		v, err := secrets.Encrypt(k, path, sentinel)
		require.NoError(t, err)
		got, _, err := ring.Decrypt(path, v)
		require.NoError(t, err)
		require.Equal(t, sentinel, got)
	}
	v, _ := secrets.Encrypt(stranger, path, sentinel)
	_, _, err := ring.Decrypt(path, v)
	var uk *secrets.UnknownKeyError
	require.ErrorAs(t, err, &uk)
	require.ErrorIs(t, err, secrets.ErrDecrypt)
	require.ErrorContains(t, err, "encrypted under key "+stranger.ID()+", which is not the current key ("+newK.ID()+")")
	require.ErrorContains(t, err, secrets.EnvKeyPrevious)

	// The id written in is authenticated: relabelled as another key's, the
	// value does not decrypt.
	w, _ := secrets.Encrypt(oldK, path, sentinel)
	relabelled := strings.Replace(w, oldK.ID(), newK.ID(), 1)
	_, _, err = secrets.NewKeyring(newK, oldK).Decrypt(path, relabelled)
	require.ErrorIs(t, err, secrets.ErrDecrypt)

	// Re-encryption moves a value to the current key, for its field.
	w, err = ring.Reencrypt(path, w)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(w, secrets.Prefix+newK.ID()+":"))
	_, _, err = secrets.NewKeyring(oldK).Decrypt(path, w)
	require.ErrorAs(t, err, &uk)
	got, _, err := secrets.NewKeyring(newK).Decrypt(path, w)
	require.NoError(t, err)
	require.Equal(t, sentinel, got)
}

// TestLegacyValuesStillDecrypt: an enc:v1 value (no key path, no key id)
// decrypts under any key of the keyring, reported as legacy, and
// re-encrypts to enc:v2 for its field.
func TestLegacyValuesStillDecrypt(t *testing.T) {
	oldK, _ := secrets.NewKey()
	newK, _ := secrets.NewKey()
	v, err := secrets.EncryptV1(oldK, sentinel)
	require.NoError(t, err)
	require.True(t, secrets.IsLegacy(v))
	for _, ring := range []secrets.Keyring{secrets.NewKeyring(oldK), secrets.NewKeyring(newK, oldK)} {
		got, legacy, err := ring.Decrypt(path, v)
		require.NoError(t, err)
		require.True(t, legacy)
		require.Equal(t, sentinel, got)
	}
	_, _, err = secrets.NewKeyring(newK).Decrypt(path, v)
	require.ErrorIs(t, err, secrets.ErrDecrypt)
	w, err := secrets.NewKeyring(newK, oldK).Reencrypt(path, v)
	require.NoError(t, err)
	require.False(t, secrets.IsLegacy(w))
	got, legacy, err := secrets.NewKeyring(newK).Decrypt(path, w)
	require.NoError(t, err)
	require.False(t, legacy)
	require.Equal(t, sentinel, got)
}

func TestDecryptFailures(t *testing.T) {
	k, _ := secrets.NewKey()
	v, err := secrets.Encrypt(k, path, sentinel)
	require.NoError(t, err)
	flipped := []byte(v)
	flipped[len(flipped)-3] ^= 1
	if flipped[len(flipped)-3] == v[len(v)-3] {
		flipped[len(flipped)-3]++
	}
	head := secrets.Prefix + k.ID() + ":"
	for name, value := range map[string]string{
		"tampered":    string(flipped),
		"no prefix":   strings.TrimPrefix(v, secrets.Prefix),
		"no key id":   secrets.Prefix + strings.TrimPrefix(v, head),
		"bad base64":  head + "!!!",
		"too short":   head + "AAAA",
		"old version": "enc:v0:" + strings.TrimPrefix(v, secrets.Prefix),
	} {
		t.Run(name, func(t *testing.T) {
			_, _, err := secrets.NewKeyring(k).Decrypt(path, value)
			require.ErrorIs(t, err, secrets.ErrDecrypt)
			require.NotContains(t, err.Error(), sentinel)
		})
	}
}

func TestKeysFromEnv(t *testing.T) {
	k, _ := secrets.NewKey()
	prev, _ := secrets.NewKey()
	t.Run("none", func(t *testing.T) {
		t.Setenv(secrets.EnvKey, "")
		t.Setenv(secrets.EnvKeyFile, "")
		_, err := secrets.KeyFromEnv()
		require.ErrorIs(t, err, secrets.ErrNoKey)
	})
	t.Run("env", func(t *testing.T) {
		t.Setenv(secrets.EnvKey, k.Encode())
		got, err := secrets.KeyFromEnv()
		require.NoError(t, err)
		require.Equal(t, k.Encode(), got.Encode())
	})
	t.Run("env and previous", func(t *testing.T) {
		t.Setenv(secrets.EnvKey, k.Encode())
		t.Setenv(secrets.EnvKeyPrevious, prev.Encode())
		ring, err := secrets.KeysFromEnv()
		require.NoError(t, err)
		require.Equal(t, []string{k.ID(), prev.ID()}, ring.IDs())
		require.NotContains(t, fmt.Sprintf("%v %+v %#v", ring, ring, ring), k.Encode())
	})
	t.Run("bad env", func(t *testing.T) {
		t.Setenv(secrets.EnvKey, "c2hvcnQ=")
		_, err := secrets.KeyFromEnv()
		require.ErrorIs(t, err, secrets.ErrBadKey)
		require.NotContains(t, err.Error(), "c2hvcnQ=")
	})
	t.Run("file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "key")
		require.NoError(t, os.WriteFile(p, []byte(k.Encode()+"\n"), 0o600))
		t.Setenv(secrets.EnvKey, "")
		t.Setenv(secrets.EnvKeyFile, p)
		got, err := secrets.KeyFromEnv()
		require.NoError(t, err)
		require.Equal(t, k.Encode(), got.Encode())
	})
	t.Run("file of two keys", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "key")
		require.NoError(t, os.WriteFile(p, []byte("# current\n"+k.Encode()+"\n\n# previous, until rotate-key ran\n"+prev.Encode()+"\n"), 0o600))
		t.Setenv(secrets.EnvKey, "")
		t.Setenv(secrets.EnvKeyFile, p)
		ring, err := secrets.KeysFromEnv()
		require.NoError(t, err)
		require.Equal(t, []string{k.ID(), prev.ID()}, ring.IDs())
	})
	t.Run("file with a bad line", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "key")
		require.NoError(t, os.WriteFile(p, []byte(k.Encode()+"\nc2hvcnQ=\n"), 0o600))
		t.Setenv(secrets.EnvKey, "")
		t.Setenv(secrets.EnvKeyFile, p)
		_, err := secrets.KeysFromEnv()
		require.ErrorIs(t, err, secrets.ErrBadKey)
		require.ErrorContains(t, err, "line 2")
		require.NotContains(t, err.Error(), "c2hvcnQ=")
	})
}

func TestKeyDoesNotPrint(t *testing.T) {
	k, _ := secrets.NewKey()
	for _, f := range []string{"%v", "%s", "%+v", "%#v"} {
		require.NotContains(t, fmt.Sprintf(f, k), k.Encode())
	}
}
