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

const sentinel = "Secr3t-S3ntinel-88aa"

func TestRoundTrip(t *testing.T) {
	k, err := secrets.NewKey()
	require.NoError(t, err)
	for _, plain := range []string{sentinel, "x", strings.Repeat("long ", 1000), "-----BEGIN KEY-----\nabc\n-----END KEY-----"} {
		v, err := secrets.Encrypt(k, plain)
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(v, secrets.Prefix))
		if len(plain) > 8 { // a short plaintext can occur in base64 by chance
			require.NotContains(t, v, plain)
		}
		got, err := secrets.Decrypt(k, v)
		require.NoError(t, err)
		require.Equal(t, plain, got)
	}
	a, _ := secrets.Encrypt(k, sentinel)
	b, _ := secrets.Encrypt(k, sentinel)
	require.NotEqual(t, a, b, "random nonce per value")
}

func TestDecryptFailures(t *testing.T) {
	k, _ := secrets.NewKey()
	other, _ := secrets.NewKey()
	v, err := secrets.Encrypt(k, sentinel)
	require.NoError(t, err)
	flipped := []byte(v)
	flipped[len(flipped)-3] ^= 1
	if flipped[len(flipped)-3] == v[len(v)-3] {
		flipped[len(flipped)-3]++
	}
	tests := map[string]string{
		"wrong key":   "", // filled below
		"tampered":    string(flipped),
		"no prefix":   strings.TrimPrefix(v, secrets.Prefix),
		"bad base64":  secrets.Prefix + "!!!",
		"too short":   secrets.Prefix + "AAAA",
		"old version": "enc:v0:" + strings.TrimPrefix(v, secrets.Prefix),
	}
	for name, value := range tests {
		t.Run(name, func(t *testing.T) {
			key := k
			if name == "wrong key" {
				key, value = other, v
			}
			_, err := secrets.Decrypt(key, value)
			require.ErrorIs(t, err, secrets.ErrDecrypt)
			require.NotContains(t, err.Error(), sentinel)
		})
	}
}

func TestKeyFromEnv(t *testing.T) {
	k, _ := secrets.NewKey()
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
}

func TestKeyDoesNotPrint(t *testing.T) {
	k, _ := secrets.NewKey()
	for _, f := range []string{"%v", "%s", "%+v", "%#v"} {
		require.NotContains(t, fmt.Sprintf(f, k), k.Encode())
	}
}

func TestReencrypt(t *testing.T) {
	oldK, _ := secrets.NewKey()
	newK, _ := secrets.NewKey()
	v, _ := secrets.Encrypt(oldK, sentinel)
	w, err := secrets.Reencrypt(oldK, newK, v)
	require.NoError(t, err)
	_, err = secrets.Decrypt(oldK, w)
	require.ErrorIs(t, err, secrets.ErrDecrypt)
	got, err := secrets.Decrypt(newK, w)
	require.NoError(t, err)
	require.Equal(t, sentinel, got)
}
