package config

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// inspectFile is a configuration with validation problems on line 10 (a
// key written there), 7 (a key not written, located at its parent's line)
// and 14 (in a flow mapping), and two secrets that do not resolve (lines
// 2 and 12; the admin token, which only the daemon reads, is not
// resolved).
const inspectFile = `store:
  url: env:EHRSYNC_TEST_INSPECT_STORE
server: {admin_token: env:EHRSYNC_TEST_INSPECT_ADMIN}
orgs:
  - name: st-mary
    schedule: {every: 10m}
    source:
      via: direct
      host: sql01
      port: 70000
      database: NGProd
      password: env:EHRSYNC_TEST_INSPECT_PW
    tables:
      - {name: dbo.claims, strategy: cdc, reconcile_every: 1h}
`

func writeFile(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ehrsync.yaml")
	require.NoError(t, os.WriteFile(p, []byte(text), mode))
	return p
}

func fieldErrors(t *testing.T, err error) map[string]*FieldError {
	t.Helper()
	out := map[string]*FieldError{}
	for _, p := range Problems(err) {
		fe, ok := p.(*FieldError)
		require.True(t, ok, "%T: %v", p, p)
		out[fe.Key] = fe
	}
	return out
}

// TestValidationProblemsHaveLines: Load's validation problems carry the
// line of their key, or of the nearest parent the file writes.
func TestValidationProblemsHaveLines(t *testing.T) {
	_, err := Load(writeFile(t, inspectFile, 0o600))
	require.Error(t, err)
	got := fieldErrors(t, err)
	require.Len(t, got, 3, "%v", err)
	require.Equal(t, 10, got["orgs[0].source.port"].Line)
	require.Equal(t, 7, got["orgs[0].source.user"].Line, "not written: the line of source")
	require.Equal(t, 14, got["orgs[0].tables[0].reconcile_every"].Line)
	require.Contains(t, err.Error(), "line 10: orgs[0].source.port: 70000 is not 1..65535")
}

// TestInspectReportsEverythingAtOnce: Inspect returns the configuration
// with its validation problems and the secrets that do not resolve, each
// named by reference with its key and line; a secret that resolves is not
// a problem, and no value is shown.
func TestInspectReportsEverythingAtOnce(t *testing.T) {
	const value = "Insp3ct-S3ntinel"
	t.Setenv("EHRSYNC_TEST_INSPECT_PW", value)
	os.Unsetenv("EHRSYNC_TEST_INSPECT_STORE")
	os.Unsetenv("EHRSYNC_TEST_INSPECT_ADMIN")
	path := writeFile(t, inspectFile, 0o600)
	c, lines, err := Inspect(path)
	require.NotNil(t, c, "the configuration comes back whatever its problems")
	got := fieldErrors(t, err)
	require.Len(t, got, 4, "%v", err)
	require.Equal(t, "env:EHRSYNC_TEST_INSPECT_STORE is not set", got["store.url"].Problem)
	require.Equal(t, 2, got["store.url"].Line)
	require.NotContains(t, got, "orgs[0].source.password", "it resolves")
	require.Contains(t, err.Error(), path)
	require.NotContains(t, err.Error(), value)
	require.Equal(t, 12, lines.Line("orgs[0].source.password"))
	require.Equal(t, 14, lines.Line("orgs[0].tables[0].name"))
	require.Zero(t, lines.Line("nowhere"))

	os.Unsetenv("EHRSYNC_TEST_INSPECT_PW")
	_, _, err = Inspect(path)
	got = fieldErrors(t, err)
	require.Len(t, got, 5, "%v", err)
	require.Equal(t, "env:EHRSYNC_TEST_INSPECT_PW is not set", got["orgs[0].source.password"].Problem)
	require.Equal(t, 12, got["orgs[0].source.password"].Line)

	// Load resolves no secret.
	_, err = Load(path)
	require.Len(t, fieldErrors(t, err), 3)
}

// TestInspectStopsAtDecoding: a file that does not decode gives no
// configuration, only its decoding problems.
func TestInspectStopsAtDecoding(t *testing.T) {
	c, _, err := Inspect(writeFile(t, "store: {url: env:X}\norgs: [{name: a, nmae: b}]\n", 0o600))
	require.Nil(t, c)
	got := fieldErrors(t, err)
	require.Equal(t, 2, got["orgs[0].nmae"].Line)
}
