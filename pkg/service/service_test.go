package service

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// orgs returns n organizations, each syncing parallel tables at once.
func orgs(n, parallel int) []config.Org {
	out := make([]config.Org, n)
	for i := range out {
		out[i].ParallelTables = parallel
	}
	return out
}

// TestStorePoolFitsTheTablesRunAtOnce: every table that can run at once
// gets the connections its chunks take, with two to spare, within pgx's
// default and the cap.
func TestStorePoolFitsTheTablesRunAtOnce(t *testing.T) {
	for _, c := range []struct {
		name           string
		orgs, parallel int
		orgsAtOnce     int
		dflt, want     int32
	}{
		{"a command, one org", 1, 2, 1, 4, 1*2*2 + 2},
		{"a command, orgs one after another", 5, 3, 1, 4, 1*3*2 + 2},
		{"the daemon, four orgs at once", 4, 2, 4, 4, 4*2*2 + 2},
		{"more at once than there are orgs", 2, 2, 4, 4, 2*2*2 + 2},
		{"pgx's default is larger", 1, 1, 1, 16, 16},
		{"capped", 50, 6, 50, 4, maxStorePool},
		{"no concurrency given", 3, 2, 0, 2, 1*2*2 + 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := &config.Config{Orgs: orgs(c.orgs, c.parallel)}
			require.Equal(t, c.want, storePoolSize(cfg, c.orgsAtOnce, c.dflt))
		})
	}
}

// TestSetsPoolSize: pool_max_conns counts only as a setting, in a URL or
// a keyword=value string, never as text elsewhere in the string.
func TestSetsPoolSize(t *testing.T) {
	for _, c := range []struct {
		name, url string
		want      bool
	}{
		{"URL", "postgres://ehrsync@db.example/ehr?pool_max_conns=3", true},
		{"URL among others", "postgres://ehrsync@db.example/ehr?sslmode=verify-full&pool_max_conns=3", true},
		{"keyword", "host=db.example user=ehrsync dbname=ehr pool_max_conns=3", true},
		{"unset", "postgres://ehrsync@db.example/ehr?sslmode=verify-full", false},
		{"in a database name", "postgres://ehrsync@db.example/pool_max_conns", false},
		{"in a value", "host=db.example user=ehrsync application_name=pool_max_conns", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, setsPoolSize(c.url))
		})
	}
}

// TestOpenSizesTheStorePoolUnlessTheURLDoes: Open sizes the pool for the
// organizations run at once, and keeps the size store.url sets.
func TestOpenSizesTheStorePoolUnlessTheURLDoes(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	pgxDefault, err := pgxpool.ParseConfig(url) // max(4, CPUs)
	require.NoError(t, err)
	for _, c := range []struct {
		url  string
		want int32
	}{
		{url, max(3*2*2+2, pgxDefault.MaxConns)},
		{url + sep + "pool_max_conns=3", 3},
	} {
		cfg := &config.Config{Store: config.Store{URL: config.NewSecret(c.url)}, Orgs: orgs(3, 2)}
		svc, err := Open(ctx, cfg, log, "test", 3)
		require.NoError(t, err)
		require.Equal(t, c.want, svc.Store.Config().MaxConns)
		svc.Close()
	}
}
