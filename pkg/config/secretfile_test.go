package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLoadRefusesLiteralSecretsOthersMayRead: a configuration file that
// group or others may read is refused when it holds a secret written as a
// literal, naming each key, the file, its mode and the fix; references
// (env:, file:, enc:) and a store URL without a password are no secret in
// the file; at 0600 any literal is accepted.
func TestLoadRefusesLiteralSecretsOthersMayRead(t *testing.T) {
	const sentinel = "L1teral-S3cret-9c2e"
	config := func(storeURL, password, token string) string {
		return `store:
  url: "` + storeURL + `"
server:
  admin_token: "` + token + `"
orgs:
  - name: st-mary
    schedule: {every: 10m}
    source:
      via: direct
      host: sql01.st-mary.internal
      database: NGProd
      user: reader
      password: "` + password + `"
    tables:
      - name: dbo.claims
`
	}
	for _, tc := range []struct {
		name, body string
		keys       []string // refused keys when group or others may read
	}{
		{"literal password and token", config("env:STORE_URL", sentinel, sentinel+sentinel), []string{"server.admin_token", "orgs[0].source.password"}},
		{"store URL with a password", config("postgres://ehrsync:"+sentinel+"@db.example.com/store?sslmode=verify-full", "env:PW", "env:TOKEN"), []string{"store.url"}},
		{"store key=value with a password", config("host=db.example.com password="+sentinel+" sslmode=verify-full", "env:PW", "env:TOKEN"), []string{"store.url"}},
		{"store URL with a password parameter", config("postgres://ehrsync@db.example.com/store?sslmode=verify-full&password="+sentinel, "env:PW", "env:TOKEN"), []string{"store.url"}},
		{"store URL without a password", config("postgres://ehrsync@db.example.com/store?sslmode=verify-full", "env:PW", "file:/etc/ehrsync/token"), nil},
		{"references only", config("env:STORE_URL", "enc:v1:AAAA", "file:/etc/ehrsync/token"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "ehrsync.yaml")
			require.NoError(t, os.WriteFile(p, []byte(tc.body), 0o600))
			_, err := Load(p)
			require.NoError(t, err, "at 0600")
			for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o660} {
				require.NoError(t, os.Chmod(p, mode))
				_, err := Load(p)
				if len(tc.keys) == 0 {
					require.NoError(t, err, "%04o", mode)
					continue
				}
				require.Error(t, err, "%04o", mode)
				problems := Problems(err)
				require.Len(t, problems, len(tc.keys), "%v", err)
				for i, key := range tc.keys {
					require.ErrorContains(t, problems[i], key+": a secret written as a literal in "+p+", which group or others may read")
					require.ErrorContains(t, problems[i], "run chmod 600 "+p)
				}
				require.NotContains(t, err.Error(), sentinel)
			}
		})
	}
}
