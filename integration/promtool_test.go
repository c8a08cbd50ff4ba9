package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// promtool finds promtool (Debian package prometheus; .ci/run installs it)
// or skips the test naming it.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: install the Debian package prometheus (.ci/run does) to check the alert rules and metrics")
	}
	return p
}

// TestAlertRules checks deploy/alerts.yml and runs its unit tests
// (deploy/alerts_test.yml).
func TestAlertRules(t *testing.T) {
	p := promtool(t)
	out, err := exec.Command(p, "check", "rules", "../deploy/alerts.yml").CombinedOutput()
	require.NoError(t, err, "promtool check rules:\n%s", out)
	cmd := exec.Command(p, "test", "rules", "alerts_test.yml")
	cmd.Dir = "../deploy"
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "promtool test rules:\n%s", out)
}

// checkMetricsWithPromtool runs promtool check metrics on a scrape of a
// running daemon (naming and help conventions).
func checkMetricsWithPromtool(t *testing.T, scrape string) {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool not found: scrape not checked (install the Debian package prometheus)")
		return
	}
	path := filepath.Join(t.TempDir(), "scrape.txt")
	require.NoError(t, os.WriteFile(path, []byte(scrape), 0o600))
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	cmd := exec.Command(p, "check", "metrics")
	cmd.Stdin = f
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "promtool check metrics:\n%s", out)
}
