package main

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckFailsOnAnUnverifiedRemoteStore: check fails its store section
// on a store URL that every other command refuses (another machine
// without sslmode=verify-full), naming the key and the fix, and still
// reports the sources; with store.insecure_transport it only warns, and
// validate says so.
func TestCheckFailsOnAnUnverifiedRemoteStore(t *testing.T) {
	path := writeConfig(t, closedPort(t), pwSentinel)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	remote := strings.Replace(string(b), "127.0.0.1:5432/store", "192.0.2.10:5432/store?sslmode=require&connect_timeout=1", 1)
	require.NoError(t, os.WriteFile(path, []byte(remote), 0o600))
	out, errOut, err := runCmd(t, "check", "--config", path, "--step-timeout", "2s")
	require.ErrorIs(t, err, errUnhealthy, "check passed an unverified remote store:\n%s%s", out, errOut)
	require.Contains(t, out, "store: UNHEALTHY")
	require.Contains(t, out, "store.url ([redacted]): sslmode=require")
	require.Contains(t, out, "use sslmode=verify-full")
	require.Contains(t, out, "st_mary", "the sources are reported too")
	requireNoSentinel(t, out, errOut, err.Error())

	require.NoError(t, os.WriteFile(path, []byte(strings.Replace(remote, "store:\n", "store:\n  insecure_transport: true\n", 1)), 0o600))
	out, errOut, err = runCmd(t, "check", "--config", path, "--step-timeout", "2s")
	require.Error(t, err, "192.0.2.10 never answers")
	require.NotContains(t, out, "[store_url_refused]", "refused with store.insecure_transport")
	require.Contains(t, out, "WARNING: store.url: sslmode=require")
	require.Contains(t, errOut, "store.insecure_transport is true")
	out, _, err = runCmd(t, "validate", "--config", path)
	require.NoError(t, err)
	require.Contains(t, out, "warning: store.insecure_transport is true")
}
