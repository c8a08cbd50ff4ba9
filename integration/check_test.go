package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
)

// runSplit runs the binary with the environment's store URL replaced by
// storeURL (unless it is ""), and returns its stdout, stderr and exit code.
func (e *env) runSplit(t *testing.T, storeURL string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := e.command(append([]string{"--log-format", "json"}, args...)...)
	if storeURL != "" {
		cmd.Env = append(cmd.Env, "TEST_STORE_URL="+storeURL)
	}
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return out.String(), errb.String(), code
}

func storeStep(t *testing.T, rep check.Report, name string) check.Step {
	t.Helper()
	require.NotNil(t, rep.Store)
	for _, s := range rep.Store.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no store step %q in %+v", name, rep.Store.Steps)
	return check.Step{}
}

// TestCheckTestsTheStore: `ehrsync check` tests the store as sync meets
// it, in its report (text and --json) and its exit code: a healthy store
// passes; a store that does not answer, or whose migrations are not
// applied while store.url's role may not apply them, fails check (exit 1)
// with the fix, while the source is still reported healthy; sync fails on
// the same store. No store password is printed.
func TestCheckTestsTheStore(t *testing.T) {
	e := newEnv(t, 1, 500)
	out, errOut, code := e.runSplit(t, "", "check", "--json", "--config", e.config)
	require.Zero(t, code, "%s\n%s", out, errOut)
	var rep check.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.True(t, rep.Store.Healthy)
	require.Equal(t, check.StatusOK, storeStep(t, rep, "migrations").Status)

	password := "St0re-" + sentinelID(t)
	down, err := url.Parse("postgres://ehrsync@" + freeAddr(t) + "/store?connect_timeout=5")
	require.NoError(t, err)
	down.User = url.UserPassword("ehrsync", password)
	// A store whose schema no one migrated yet, reached as a writer role
	// that may not migrate it (no CREATE on the database).
	fresh, err := url.Parse(pgtest.Role(t, pgtest.URL(t), "writer"))
	require.NoError(t, err)
	fresh.User = url.UserPassword(fresh.User.Username(), password)
	for _, c := range []struct {
		name, url, step, code, fix string
	}{
		{"store down", down.String(), "connect", "store_unreachable", "that PostgreSQL runs and listens there"},
		{"migrations not applied", fresh.String(), "migrations", "store_migrations_pending", "run `ehrsync migrate --config " + e.config + "` with store.owner_url"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, errOut, code := e.runSplit(t, c.url, "check", "--json", "--config", e.config)
			require.Equal(t, 1, code, "%s\n%s", out, errOut)
			var rep check.Report
			require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
			require.False(t, rep.Healthy)
			require.False(t, rep.Store.Healthy)
			require.True(t, rep.Orgs[0].Healthy, "the source is fine: the store is what fails")
			s := storeStep(t, rep, c.step)
			require.Equal(t, check.StatusFailed, s.Status)
			require.Equal(t, c.code, s.Problem.Code)
			require.Contains(t, s.Problem.Fix, c.fix)
			require.NotContains(t, out+errOut, password)

			text, errOut, code := e.runSplit(t, c.url, "check", "--config", e.config)
			require.Equal(t, 1, code)
			require.Contains(t, text, "store: UNHEALTHY")
			require.Contains(t, text, "["+c.code+"]")
			require.NotContains(t, text+errOut, password)

			_, errOut, code = e.runSplit(t, c.url, "sync", "--config", e.config)
			require.Equal(t, 1, code, "sync fails on the store check found broken")
			require.NotContains(t, errOut, password)
		})
	}
}

// TestValidateReportsAllAtOnce: `ehrsync validate` reports every problem
// a sync would refuse at once, each with its key and line, as text and
// as --json (snake_case keys), exit 1; names an unset variable, never a
// value; and sync refuses the same file.
func TestValidateReportsAllAtOnce(t *testing.T) {
	e := newEnv(t, 1, 500)
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	cfg := strings.Replace(string(b), "    schedule: {every: 10m}\n", "    schedule: {cron: \"*/61 * * * *\"}\n", 1)
	cfg = strings.Replace(cfg, "      tls: {mode: disable}\n", "      tls: {mode: disable}\n      password: env:TEST_UNSET_SOURCE_PASSWORD\n", 1)
	path := filepath.Join(t.TempDir(), "bad.yaml")
	require.NoError(t, os.WriteFile(path, []byte(cfg), 0o600))
	lineOf := func(s string) int {
		for i, l := range strings.Split(cfg, "\n") {
			if strings.Contains(l, s) {
				return i + 1
			}
		}
		t.Fatalf("%q not in the configuration", s)
		return 0
	}
	password := "St0re-" + sentinelID(t)
	remote := "postgres://ehrsync:" + password + "@192.0.2.10:5432/store"

	out, errOut, code := e.runSplit(t, remote, "validate", "--json", "--config", path)
	require.Equal(t, 1, code, "%s\n%s", out, errOut)
	var rep check.ConfigReport
	require.NoError(t, json.Unmarshal([]byte(out), &rep), out)
	require.False(t, rep.Valid)
	got := map[string]check.ConfigProblem{}
	for _, p := range rep.Problems {
		got[p.Key] = p
	}
	require.Len(t, got, 3, out)
	require.Equal(t, lineOf("url: env:TEST_STORE_URL"), got["store.url"].Line)
	require.Contains(t, got["store.url"].Problem, "no sslmode")
	require.Equal(t, lineOf("*/61"), got["orgs[0].schedule.cron"].Line)
	require.Contains(t, got["orgs[0].schedule.cron"].Problem, "the step /61 in the minute field")
	require.Equal(t, lineOf("TEST_UNSET_SOURCE_PASSWORD"), got["orgs[0].source.password"].Line)
	require.Equal(t, "env:TEST_UNSET_SOURCE_PASSWORD is not set", got["orgs[0].source.password"].Problem)
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &raw))
	require.Contains(t, raw, "schema_version")
	require.NotContains(t, out+errOut, password)

	text, errOut, code := e.runSplit(t, remote, "validate", "--config", path)
	require.Equal(t, 1, code)
	require.Contains(t, errOut, path+" has 3 problems:")
	require.Contains(t, errOut, "orgs[0].source.password: env:TEST_UNSET_SOURCE_PASSWORD is not set")
	require.NotContains(t, text+errOut, password)

	_, errOut, code = e.runSplit(t, remote, "sync", "--config", path)
	require.Equal(t, 1, code, "sync refuses what validate reports")
	require.NotContains(t, errOut, password)
}
