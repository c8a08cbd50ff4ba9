// Package service wires ehrsync's parts from a configuration: the store
// connection and its migrations, the positions store, the sink, the planner
// and the engine. The CLI, the daemon and the demo start here.
package service

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Service is a wired engine and the store it writes to.
type Service struct {
	Store     *pgxpool.Pool
	Positions *watermarks.Store
	Engine    *engine.Engine
}

// Open connects to the store, applies the ehrsync schema's migrations, and
// wires the engine. actor names who runs the syncs in position history.
// Close releases the store connections.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, actor string) (*Service, error) {
	url, err := cfg.Store.URL.Reveal()
	if err != nil {
		return nil, fmt.Errorf("store.url: %w", err)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, fmt.Errorf("store.url (%s): not a valid PostgreSQL URL or connection string", cfg.Store.URL)
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "ehrsync"
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
	positions := watermarks.NewStore(pool)
	return &Service{
		Store:     pool,
		Positions: positions,
		Engine: &engine.Engine{
			Sink:      sink.New(pool, positions),
			Positions: positions,
			Planner:   planner.New(),
			Catalog:   schemas.NextGen(),
			Log:       log,
			Actor:     actor,
			Allocator: memory.DefaultAllocator,
			Defaults:  cfg.Defaults,
		},
	}, nil
}

// Close releases the store connections.
func (s *Service) Close() { s.Store.Close() }
