package daemon

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// TestReloadNamesRestartOnlySettings: a reload that changes settings only a
// restart applies (store, server, defaults, catalog) says which, by key
// and without their values, and keeps saying so on later reloads until the
// daemon restarts; a reload that changes only organizations says nothing
// of the kind.
func TestReloadNamesRestartOnlySettings(t *testing.T) {
	const secretRef = "env:SENTINEL_STORE_URL_7d1e"
	withStore := func(cfg *config.Config) *config.Config {
		cfg.Store.URL = config.NewSecret(secretRef)
		cfg.Server.Listen = "127.0.0.1:9464"
		cfg.Defaults.BatchRows = 1000
		return cfg
	}
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	d, err := New(withStore(testConfig(time.Hour, "a")), &fakeSyncer{}, nil, log, NewMetrics(nil), Options{})
	require.NoError(t, err)
	reload := func(cfg *config.Config) string {
		buf.Reset()
		d.reload(func() (*config.Config, error) { return cfg, nil })
		return buf.String()
	}

	out := reload(withStore(testConfig(time.Minute, "a", "b")))
	require.Contains(t, out, "configuration reloaded")
	require.NotContains(t, out, "restart the daemon", "only organizations changed")

	changed := withStore(testConfig(time.Minute, "a", "b"))
	changed.Store.URL = config.NewSecret("env:ANOTHER_STORE_URL")
	changed.Server.Listen = "127.0.0.1:9999"
	changed.Defaults.BatchRows = 5000
	changed.Catalog = []string{"extra.yaml"}
	out = reload(changed)
	require.Contains(t, out, "restart the daemon")
	for _, key := range []string{"store.url", "server.listen", "defaults.batch_rows", `"catalog"`} {
		require.Contains(t, out, key)
	}
	for _, key := range []string{"server.admin_listen", "defaults.batch_bytes", "store.owner_url"} {
		require.NotContains(t, out, key, "unchanged settings are not named")
	}
	require.NotContains(t, out, "ANOTHER_STORE_URL")
	require.NotContains(t, out, "SENTINEL")
	require.NotContains(t, out, "9999")

	// Still not applied: the next reload, of organizations only, says so again.
	changed.Orgs = changed.Orgs[:1]
	out = reload(changed)
	require.Equal(t, 1, strings.Count(out, "restart the daemon"), out)
	require.Contains(t, out, "defaults.batch_rows")
}
