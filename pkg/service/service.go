// Package service wires ehrsync's parts from a configuration: the store
// connection and its migrations, the positions store, the sink, the planner
// and the engine. The CLI, the daemon and the demo start here.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/denials"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Service is a wired engine and the store it writes to.
type Service struct {
	Store     *pgxpool.Pool
	Positions *watermarks.Store
	Engine    *engine.Engine
	// Leases guard each table's run (issue 6); the engine takes them.
	Leases *lease.Manager
	// Audit records every table run and admin action (issue 6).
	Audit *audit.Recorder
}

// Open connects to the store, applies the ehrsync schema's migrations, and
// wires the engine. actor names who runs the syncs in position history;
// orgsAtOnce is how many organizations the caller runs at once (the
// daemon's --concurrency, 1 for a command), which sizes the store's
// connection pool (storePoolSize). Close releases the store connections.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, actor string, orgsAtOnce int) (*Service, error) {
	url, err := cfg.Store.URL.Reveal()
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, fmt.Errorf("store.url (%s): not a valid PostgreSQL URL or connection string", cfg.Store.URL)
	}
	warning, err := storeTLS(url, &pcfg.ConnConfig.Config)
	if err != nil {
		return nil, fmt.Errorf("store.url (%s): %w", cfg.Store.URL, err)
	}
	if warning != "" {
		log.Warn("insecure store connection", "warning", warning)
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "ehrsync"
	if !strings.Contains(url, "pool_max_conns") {
		pcfg.MaxConns = storePoolSize(cfg, orgsAtOnce, pcfg.MaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the store: %w", err)
	}
	if err := storedb.Migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	catalog, err := Catalog(cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	for _, o := range cfg.Orgs {
		for _, w := range source.Warnings(o.Source) {
			log.Warn("insecure source connection", "org", o.Name, "warning", w)
		}
	}
	positions := watermarks.NewStore(pool)
	leases := lease.NewManager(pcfg.ConnConfig, nil)
	rec := audit.New(pool, log)
	rec.Classify = daemon.Class
	return &Service{
		Store:     pool,
		Positions: positions,
		Leases:    leases,
		Audit:     rec,
		Engine: &engine.Engine{
			Leases:    leases,
			Audit:     rec,
			Sink:      sink.New(pool, positions),
			Positions: positions,
			Planner:   planner.New(),
			Catalog:   catalog,
			Log:       log,
			Actor:     actor,
			Allocator: memory.DefaultAllocator,
			Defaults:  cfg.Defaults,
			Views:     denials.Views{Pool: pool},
		},
	}, nil
}

// maxStorePool caps the store pool storePoolSize chooses; pool_max_conns
// in store.url sets any size.
const maxStorePool = 32

// storePoolSize is the store pool's size when store.url does not set one:
// enough for every table that can run at once to hold the connections its
// chunks take (engine.Writers each) and for the position, audit and admin
// queries beside them (2), at least pgx's default (dflt) and at most
// maxStorePool. Past that, a table's next chunk waits for a free
// connection; the chunks it has open finish without another.
func storePoolSize(cfg *config.Config, orgsAtOnce int, dflt int32) int32 {
	widest := 1
	for _, o := range cfg.Orgs {
		widest = max(widest, o.ParallelTables)
	}
	orgs := max(1, min(orgsAtOnce, len(cfg.Orgs)))
	need := orgs*widest*engine.Writers + 2
	return max(dflt, int32(min(need, maxStorePool)))
}

// Catalog is the table catalog of a configuration: the built-in NextGen
// tables and the tables of the files cfg.Catalog lists.
func Catalog(cfg *config.Config) (*schemas.Catalog, error) {
	if len(cfg.Catalog) == 0 {
		return schemas.NextGen(), nil
	}
	extra, err := schemas.LoadTableFiles(cfg.Catalog...)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c, err := schemas.NextGen().With(extra...)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return c, nil
}

// Instrument registers the engine's and the leases' metrics on reg (the
// daemon's registry).
func (s *Service) Instrument(reg prometheus.Registerer) {
	s.Engine.Metrics = engine.NewMetrics(reg)
	s.Leases = lease.NewManager(s.Store.Config().ConnConfig, lease.NewMetrics(reg))
	s.Engine.Leases = s.Leases
}

// Close releases the store connections.
func (s *Service) Close() { s.Store.Close() }
