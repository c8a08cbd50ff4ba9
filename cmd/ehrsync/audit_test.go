package main

import (
	"os/user"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseAge(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"400d", 400 * 24 * time.Hour, ""},
		{"1d", 24 * time.Hour, ""},
		{"9600h", 9600 * time.Hour, ""},
		{"0", 0, "under the shortest retention"},
		{"0d", 0, "under the shortest retention"},
		{"23h", 0, "under the shortest retention"},
		{"-400d", 0, "want days"},
		{"400 days", 0, "want days"},
		{"99999999999999999999d", 0, "too many days"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := parseAge(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

// TestActorIsTheOperatingSystemUser: $USER, else the process's user as
// the operating system names it; --actor is never required.
func TestActorIsTheOperatingSystemUser(t *testing.T) {
	t.Setenv("USER", "alice")
	require.Equal(t, "alice", osUser())
	t.Setenv("USER", "")
	u, err := user.Current()
	require.NoError(t, err)
	require.Equal(t, u.Username, osUser())
	require.NotEmpty(t, osUser())
}

// TestAuditCommandUsage: the subcommand and --older-than are checked
// before anything connects.
func TestAuditCommandUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"audit"}, "want a subcommand"},
		{[]string{"audit", "fix"}, `unknown subcommand "fix"`},
		{[]string{"audit", "prune", "--config", "x.yaml"}, "--older-than is required"},
		{[]string{"audit", "prune", "--config", "x.yaml", "--older-than", "1h"}, "under the shortest retention"},
	} {
		_, stderr, err := runCmd(t, tc.args...)
		require.Error(t, err)
		require.Equal(t, 2, exitCode(err, &discard{}), "%v", tc.args)
		require.Contains(t, stderr, tc.want)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
