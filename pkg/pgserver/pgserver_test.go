package pgserver

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestStartRefusesADirectoryThePostgresUserCannotEnter(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("only root hands the server to the postgres user")
	}
	locked := t.TempDir() // 0700, root's
	require.NoError(t, os.Chmod(locked, 0o700))
	_, err := Start(context.Background(), Options{Dir: filepath.Join(locked, "pg")})
	require.ErrorContains(t, err, "cannot enter "+locked)
	require.ErrorContains(t, err, "chmod o+x")
}

func TestStartStopRemovesNothingAndReusesTheDataDirectory(t *testing.T) {
	if testing.Short() {
		t.Skip("long (starts and stops PostgreSQL servers): runs without -short")
	}
	parent, err := os.MkdirTemp("", "ehrsync-pgserver-")
	require.NoError(t, err)
	defer os.RemoveAll(parent)
	require.NoError(t, os.Chmod(parent, 0o755))
	ctx := context.Background()
	s, err := Start(ctx, Options{Dir: filepath.Join(parent, "pg"), Settings: map[string]string{"fsync": "off"}})
	require.NoError(t, err)
	require.NoError(t, s.Stop())
	_, err = os.Stat(filepath.Join(parent, "pg", "data", "PG_VERSION"))
	require.NoError(t, err, "Stop removed the data directory")
	// A second start reuses the initialized directory.
	s, err = Start(ctx, Options{Dir: filepath.Join(parent, "pg")})
	require.NoError(t, err)
	require.NoError(t, s.Stop())
}
