package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"

	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// sentinel stands for a real password in these tests: it must never show.
const sentinel = "Hunter2-s3ntinel-7f3a"

func TestSecretReveal(t *testing.T) {
	dir := t.TempDir()
	file := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	t.Setenv("EHRSYNC_TEST_SECRET", sentinel)
	t.Setenv("EHRSYNC_TEST_EMPTY", "")
	key, err := secrets.NewKey()
	require.NoError(t, err)
	other, err := secrets.NewKey()
	require.NoError(t, err)
	t.Setenv(secrets.EnvKey, key.Encode())
	t.Setenv(secrets.EnvKeyFile, "")
	const field = "org:st-mary/source.password"
	encrypted, err := secrets.Encrypt(key, field, sentinel)
	require.NoError(t, err)
	otherKeyValue, err := secrets.Encrypt(other, field, sentinel)
	require.NoError(t, err)
	otherField, err := secrets.Encrypt(key, "org:north/source.password", sentinel)
	require.NoError(t, err)
	legacy, err := secrets.EncryptV1(key, sentinel)
	require.NoError(t, err)

	tests := []struct {
		name    string
		ref     string
		want    string
		wantErr []string // substrings of the error
		wantIs  error
	}{
		{name: "unset", ref: "", want: ""},
		{name: "literal", ref: sentinel, want: sentinel},
		{name: "literal with colon", ref: "postgres://u:p@h/db", want: "postgres://u:p@h/db"},
		{name: "env", ref: "env:EHRSYNC_TEST_SECRET", want: sentinel},
		{name: "env unset", ref: "env:EHRSYNC_TEST_NOT_SET_X", wantErr: []string{"env:EHRSYNC_TEST_NOT_SET_X is not set"}, wantIs: ErrSecretUnset},
		{name: "env empty", ref: "env:EHRSYNC_TEST_EMPTY", wantErr: []string{"secret env:EHRSYNC_TEST_EMPTY: empty value"}, wantIs: ErrSecretEmpty},
		{name: "env bad name", ref: "env:A-B", wantErr: []string{`bad environment variable name "A-B"`}},
		{name: "file", ref: "file:" + file("pw", sentinel+"\n"), want: sentinel},
		{name: "file crlf", ref: "file:" + file("crlf", sentinel+"\r\n"), want: sentinel},
		{name: "file one newline only", ref: "file:" + file("two", sentinel+"\n\n"), want: sentinel + "\n"},
		{name: "file no newline", ref: "file:" + file("bare", sentinel), want: sentinel},
		{name: "file multi-line key", ref: "file:" + file("key", "-----BEGIN KEY-----\nabc\n-----END KEY-----\n"), want: "-----BEGIN KEY-----\nabc\n-----END KEY-----"},
		{name: "file empty", ref: "file:" + file("empty", "\n"), wantErr: []string{"secret file:" + filepath.Join(dir, "empty") + ": empty value"}, wantIs: ErrSecretEmpty},
		{name: "file missing", ref: "file:" + filepath.Join(dir, "nope"), wantErr: []string{"secret file:" + filepath.Join(dir, "nope") + ": read: no such file or directory"}, wantIs: os.ErrNotExist},
		{name: "file no path", ref: "file:", wantErr: []string{"file: reference without a path"}},
		{name: "enc unknown version", ref: "enc:" + sentinel, wantErr: []string{"secret [redacted]: unsupported enc: version"}, wantIs: ErrSecretUnsupported},
		{name: "enc", ref: encrypted, want: sentinel},
		{name: "enc wrong key", ref: otherKeyValue, wantErr: []string{"secret [redacted]: encrypted under key " + other.ID() + ", which is not the current key (" + key.ID() + ")"}, wantIs: secrets.ErrDecrypt},
		{name: "enc damaged", ref: encrypted[:len(encrypted)-2], wantErr: []string{"secret [redacted]: does not decrypt as the value of " + field}, wantIs: secrets.ErrDecrypt},
		{name: "enc of another field", ref: otherField, wantErr: []string{"secret [redacted]: does not decrypt as the value of " + field + " under key " + key.ID() + ": it was encrypted for another field", "ehrsync secrets encrypt --for " + field}, wantIs: secrets.ErrDecrypt},
		{name: "enc v1, the old format", ref: legacy, want: sentinel},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NewSecret(tt.ref).For(field).Reveal()
			if tt.wantErr == nil {
				require.NoError(t, err)
				require.Equal(t, tt.want, got)
				return
			}
			require.Error(t, err)
			require.Empty(t, got)
			for _, w := range tt.wantErr {
				require.ErrorContains(t, err, w)
			}
			if tt.wantIs != nil {
				require.ErrorIs(t, err, tt.wantIs)
			}
			require.NotContains(t, err.Error(), sentinel)
		})
	}
}

func TestSecretString(t *testing.T) {
	tests := []struct {
		ref  string
		want string
	}{
		{ref: "", want: ""},
		{ref: sentinel, want: "[redacted]"},
		{ref: "env:STMARY_SQL_PASSWORD", want: "env:STMARY_SQL_PASSWORD"},
		{ref: "file:/etc/ehrsync/pw", want: "file:/etc/ehrsync/pw"},
		{ref: "enc:" + sentinel, want: "[redacted]"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			s := NewSecret(tt.ref)
			require.Equal(t, tt.ref != "", s.IsSet())
			require.Equal(t, tt.want, s.String())
			require.Equal(t, tt.want, s.LogValue().String())
			require.Equal(t, tt.want, fmt.Sprint(s))
			require.Equal(t, fmt.Sprintf("%q", tt.want), fmt.Sprintf("%q", s))
			b, err := json.Marshal(s)
			require.NoError(t, err)
			require.JSONEq(t, fmt.Sprintf("%q", tt.want), string(b))
		})
	}
}

func TestSecretUnmarshalYAML(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    string
		wantErr string
	}{
		{name: "string", doc: "s: env:X", want: "env:X"},
		{name: "digits keep their text", doc: "s: 0123", want: "0123"},
		{name: "null", doc: "s: ~", want: ""},
		{name: "empty", doc: "s:", want: ""},
		{name: "mapping", doc: "s: {a: b}", wantErr: "line 1: want a string"},
		{name: "list", doc: "s: [a]", wantErr: "line 1: want a string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var v struct{ S Secret }
			err := yaml.Unmarshal([]byte(tt.doc), &v)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			got, err := v.S.Reveal()
			if strings.HasPrefix(tt.want, "env:") {
				require.Equal(t, tt.want, v.S.String())
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

// secretConfig holds the sentinel in every secret, as literals.
const secretConfig = `
store:
  url: "postgres://ehrsync:` + sentinel + `@store.example/ehrsync"
server:
  admin_token: ` + sentinel + `
orgs:
  - name: lakeside
    schedule: {every: 1h}
    source:
      via: ssh
      host: 10.20.0.15
      database: NGProd
      user: ehrsync_reader
      password: ` + sentinel + `
      ssh:
        host: bastion.lakeside.example
        user: tunnel
        private_key: "-----BEGIN KEY-----` + sentinel + `"
        password: ` + sentinel + `
        known_hosts: /etc/ehrsync/known_hosts
    tables:
      - name: dbo.charges
`

// TestSecretsNeverRendered renders a whole Config every way a program
// might (fmt verbs, JSON, YAML, slog handlers) and checks the literal
// secrets appear in none of them.
func TestSecretsNeverRendered(t *testing.T) {
	c, err := Parse([]byte(secretConfig))
	require.NoError(t, err)
	pw, err := c.Orgs[0].Source.Password.Reveal()
	require.NoError(t, err)
	require.Equal(t, sentinel, pw, "the config holds the sentinel")

	render := map[string]func() string{
		"ptr":   func() string { return fmt.Sprintf("%+v", c) },
		"ssh":   func() string { return fmt.Sprintf("%+v %#v", *c.Orgs[0].Source.SSH, *c.Orgs[0].Source.SSH) },
		"store": func() string { return fmt.Sprintf("%+v %#v", c.Store, c.Store) },
		"json": func() string {
			b, err := json.Marshal(c)
			require.NoError(t, err)
			return string(b)
		},
		"yaml": func() string {
			b, err := yaml.Marshal(c)
			require.NoError(t, err)
			return string(b)
		},
		"slog json": func() string {
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("loaded", "config", c, "org", c.Orgs[0], "password", c.Orgs[0].Source.Password)
			return buf.String()
		},
		"slog text": func() string {
			var buf bytes.Buffer
			slog.New(slog.NewTextHandler(&buf, nil)).Info("loaded", "config", c, "source", c.Orgs[0].Source, "password", c.Orgs[0].Source.Password)
			return buf.String()
		},
	}
	// Every verb, including ones that do not suit a struct: fmt then prints
	// the fields one by one, which must still go through Secret.Format.
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%d", "%x", "%X", "%t"} {
		render[verb] = func() string { return fmt.Sprintf(verb, *c) }
	}
	for name, r := range render {
		t.Run(name, func(t *testing.T) {
			out := r()
			require.NotEmpty(t, out)
			require.NotContains(t, out, sentinel)
			require.NotContains(t, out, strings.ToLower(sentinel))
			require.NotContains(t, out, fmt.Sprintf("%x", sentinel))
		})
	}
	t.Run("unexported field", func(t *testing.T) {
		// fmt cannot call methods on unexported fields: it must still not
		// reach the text.
		type holder struct {
			s  Secret
			ss *SSH
		}
		h := holder{s: c.Orgs[0].Source.Password, ss: c.Orgs[0].Source.SSH}
		for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
			require.NotContains(t, fmt.Sprintf(verb, h), sentinel, verb)
		}
	})
	t.Run("json shows redaction", func(t *testing.T) {
		b, err := json.Marshal(c.Orgs[0].Source)
		require.NoError(t, err)
		require.Contains(t, string(b), `"password":"[redacted]"`)
	})
}

// TestSecretsNotInErrors feeds the sentinel where decoding or validation
// fails and checks no error repeats it.
func TestSecretsNotInErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want string
	}{
		{name: "misspelled key", doc: strings.Replace(secretConfig, "      password: "+sentinel, "      pasword: "+sentinel, 1), want: "orgs[0].source.pasword: unknown key"},
		{name: "secret in an int field", doc: strings.Replace(secretConfig, "host: 10.20.0.15", "host: 10.20.0.15\n      port: "+sentinel, 1), want: "orgs[0].source.port: cannot decode a str value into int"},
		{name: "secret in a duration field", doc: strings.Replace(secretConfig, "{every: 1h}", "{every: "+sentinel+"}", 1), want: "orgs[0].schedule.every: cannot decode"},
		{name: "enc secret", doc: strings.Replace(secretConfig, "      password: "+sentinel, "      password: enc:"+sentinel, 1), want: "orgs[0].source.password: unknown enc: version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.doc))
			require.ErrorContains(t, err, tt.want)
			require.NotContains(t, err.Error(), sentinel)
		})
	}
}

func TestSecretEncKeySources(t *testing.T) {
	key, err := secrets.NewKey()
	require.NoError(t, err)
	v, err := secrets.Encrypt(key, "store.url", sentinel)
	require.NoError(t, err)
	s := NewSecret(v).For("store.url")
	require.Equal(t, Redacted, s.String())

	t.Run("no key", func(t *testing.T) {
		t.Setenv(secrets.EnvKey, "")
		t.Setenv(secrets.EnvKeyFile, "")
		_, err := s.Reveal()
		require.ErrorIs(t, err, secrets.ErrNoKey)
		require.NotContains(t, err.Error(), v)
	})
	t.Run("key file", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "key")
		require.NoError(t, os.WriteFile(p, []byte(key.Encode()+"\n"), 0o600))
		t.Setenv(secrets.EnvKey, "")
		t.Setenv(secrets.EnvKeyFile, p)
		got, err := s.Reveal()
		require.NoError(t, err)
		require.Equal(t, sentinel, got)
	})
	t.Run("validates", func(t *testing.T) {
		require.Empty(t, s.check())
		require.Contains(t, NewSecret("enc:v9:abc").check(), "unknown enc: version")
	})
}

// TestFileSecretOpenToOthersIsRefused: a file: secret (a password, a
// token, an SSH private key) that group or others may read is refused,
// naming the file and the fix, without its content.
func TestFileSecretOpenToOthersIsRefused(t *testing.T) {
	const value = "perm-S3ntinel-5d2a"
	for _, mode := range []os.FileMode{0o640, 0o644, 0o604, 0o666} {
		t.Run(mode.String(), func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "password")
			require.NoError(t, os.WriteFile(p, []byte(value+"\n"), 0o600))
			require.NoError(t, os.Chmod(p, mode))
			_, err := NewSecret("file:" + p).Reveal()
			var perm *secrets.PermissionError
			require.ErrorAs(t, err, &perm)
			require.ErrorContains(t, err, "chmod 600 "+p)
			require.NotContains(t, err.Error(), value)
			require.NoError(t, os.Chmod(p, 0o600))
			got, err := NewSecret("file:" + p).Reveal()
			require.NoError(t, err)
			require.Equal(t, value, got)
		})
	}
}
