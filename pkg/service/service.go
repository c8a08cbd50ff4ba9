// Package service wires ehrsync's parts from a configuration: the store
// connection and its migrations, the positions store, the sink, the planner,
// the engine, the backfill runner and the CDC capture agent probe. The CLI,
// the daemon and the demo start here.
package service

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ehrsync/ehrsync/extractors/cdc"
	"github.com/ehrsync/ehrsync/extractors/planner"
	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/backfill"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/denials"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/status"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Service is a wired engine and the store it writes to.
type Service struct {
	Store     *pgxpool.Pool
	Positions *watermarks.Store
	Engine    *engine.Engine
	// Leases guard each table's run; the engine takes them.
	Leases *lease.Manager
	// Audit records every table run and admin action.
	Audit *audit.Recorder
	// Status records each table's last run and reads tables' status.
	Status *status.Store
	// Lake is the change lake; nil when no table has lake on.
	Lake *lake.Lake
	// engine builds an engine of the service's parts, with extra options.
	engine func(extra ...engine.Option) *engine.Engine
}

// Open connects to the store, applies the ehrsync schema's migrations, and
// wires the engine. actor names who runs the syncs in position history;
// orgsAtOnce is how many organizations the caller runs at once (the
// daemon's --concurrency, 1 for a command), which sizes the store's
// connection pool (storePoolSize). Close releases the store connections.
func Open(ctx context.Context, cfg *config.Config, log *slog.Logger, actor string, orgsAtOnce int) (*Service, error) {
	pool, err := connect(ctx, "store.url", cfg, log, func(pcfg *pgxpool.Config, url string) {
		if !setsPoolSize(url) {
			pcfg.MaxConns = storePoolSize(cfg, orgsAtOnce, pcfg.MaxConns)
		}
	})
	if err != nil {
		return nil, err
	}
	if err := prepare(ctx, cfg, pool, log); err != nil {
		pool.Close()
		return nil, err
	}
	warnUnprotected(ctx, pool, log)
	pcfg := pool.Config()
	catalog, err := Catalog(cfg)
	if err != nil {
		pool.Close()
		return nil, err
	}
	positions := watermarks.NewStore(pool)
	leases := lease.NewManager(pcfg.ConnConfig, nil)
	rec, runs := audit.New(pool), status.New(pool)
	sk, plan := sink.New(pool, positions), planner.New()
	base := []engine.Option{
		engine.WithLeases(leases), engine.WithAudit(rec), engine.WithRuns(runs), engine.WithLog(log), engine.WithActor(actor),
		engine.WithAllocator(memory.DefaultAllocator), engine.WithDefaults(cfg.Defaults), engine.WithViews(denials.Views{Pool: pool}),
	}
	var lk *lake.Lake
	if config.LakeUsed(cfg.Orgs) {
		if lk, err = OpenLake(ctx, cfg, pool); err != nil {
			pool.Close()
			return nil, err
		}
		base = append(base, engine.WithLake(lk))
	}
	s := &Service{Store: pool, Positions: positions, Leases: leases, Audit: rec, Status: runs, Lake: lk,
		engine: func(extra ...engine.Option) *engine.Engine {
			return engine.New(engine.Sink(sk), positions, plan, catalog, append(slices.Clone(base), extra...)...)
		}}
	s.Engine = s.engine()
	return s, nil
}

// Backfills returns the backfill runner of the service's engine, store,
// leases and audit, with opts' log, metrics, lease policy and progress.
func (s *Service) Backfills(opts backfill.Options) *backfill.Runner {
	opts.Audit = s.Audit
	return backfill.New(s.Engine, s.Store, s.Leases, opts)
}

// CaptureAgent probes an organization's SQL Server CDC capture agent
// (cdc.CheckAgent) on a sync run's source connection: the agent may go
// maxLag without a finished log scan before it counts as stalled.
func CaptureAgent(maxLag time.Duration) daemon.AgentProbe {
	return func(ctx context.Context, org *config.Org, db *sql.DB) (daemon.AgentHealth, error) {
		h, err := cdc.CheckAgent(ctx, &cdc.SQLServer{DB: db, QueryTimeout: org.Source.QueryTimeout}, maxLag)
		return daemon.AgentHealth{Stale: h.Stale, Reason: h.Reason}, err
	}
}

// ConfigWarnings lists what every command that connects to the store
// warns about in the configuration besides the sources' settings
// (source.Warnings), and validate reports.
func ConfigWarnings(cfg *config.Config) []string {
	return append(cfg.TransportWarnings(), cfg.SecretWarnings()...)
}

// StoreConfig is the pool configuration every command connects to the
// store with, from the URL at key (store.url or store.owner_url; errors
// name the key and the secret's reference, never the URL): the secret
// resolved and parsed, its transport judged (storeTLS: a refusal is a
// *StoreTransportError), its CA and client key files read and checked. It
// touches no network, so validate runs it too. warning is what an
// accepted insecure transport is warned with ("" for none); url is the
// revealed URL, for sizing the pool (setsPoolSize).
func StoreConfig(key string, cfg *config.Config) (pcfg *pgxpool.Config, url, warning string, err error) {
	secret := cfg.Store.URL
	if key == "store.owner_url" {
		secret = cfg.Store.OwnerURL
	}
	url, err = secret.Reveal()
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", key, err)
	}
	pcfg, err = pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors can quote the URL, password included.
		return nil, "", "", fmt.Errorf("%s (%s): not a valid PostgreSQL URL or connection string", key, secret)
	}
	warning, err = storeTLS(key, url, &pcfg.ConnConfig.Config, cfg.Store.InsecureTransport)
	if err == nil {
		err = storeRoots(key, url, &pcfg.ConnConfig.Config)
	}
	if err == nil {
		err = storeClientKey(key, url, &pcfg.ConnConfig.Config)
	}
	if err != nil {
		if te, ok := err.(*StoreTransportError); ok {
			te.Ref = secret.String()
		}
		return nil, "", "", err
	}
	pcfg.ConnConfig.RuntimeParams["application_name"] = "ehrsync"
	return pcfg, url, warning, nil
}

// connect opens a pool on the store URL at key (StoreConfig), warns on log
// about the configuration (WarnStore) and an accepted insecure transport,
// and pings it. size, when set,
// may size the pool from the URL text.
func connect(ctx context.Context, key string, cfg *config.Config, log *slog.Logger, size func(*pgxpool.Config, string)) (*pgxpool.Pool, error) {
	WarnStore(ctx, cfg, log)
	pcfg, url, warning, err := StoreConfig(key, cfg)
	if err != nil {
		return nil, err
	}
	if warning != "" {
		warn(ctx, log, "insecure store connection", "warning", warning)
	}
	if size != nil {
		size(pcfg, url)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to the store (%s): %w", key, err)
	}
	return pool, nil
}

// prepare brings the store's ehrsync schema to this binary's version. With
// store.owner_url, as the owner: migrations, the writer's grants
// (storedb.GrantWriter) and the organizations' schemas the writer creates
// its tables in (storedb.EnsureSchemas); the writer (pool) changes no
// schema. Without it, as pool's role, as before there were two roles.
func prepare(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, log *slog.Logger) error {
	if !cfg.Store.OwnerURL.IsSet() {
		return storedb.Migrate(ctx, pool)
	}
	owner, err := connect(ctx, "store.owner_url", cfg, log, func(pcfg *pgxpool.Config, _ string) { pcfg.MaxConns = 2 })
	if err != nil {
		return err
	}
	defer owner.Close()
	if err := storedb.Migrate(ctx, owner); err != nil {
		return err
	}
	writer, err := storedb.CurrentRole(ctx, pool)
	if err != nil {
		return err
	}
	if err := storedb.GrantWriter(ctx, owner, writer); err != nil {
		return err
	}
	schemas := make([]string, len(cfg.Orgs))
	for i, o := range cfg.Orgs {
		schemas[i] = sink.SchemaFor(o.Name)
	}
	return storedb.EnsureSchemas(ctx, owner, writer, schemas...)
}

// Migrate is `ehrsync migrate`: it connects as store.url's role (the
// writer) and, with store.owner_url, as the owner, and prepares the store
// as Open does, then warns when the audit is not protected from the writer.
func Migrate(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	pool, err := connect(ctx, "store.url", cfg, log, func(pcfg *pgxpool.Config, _ string) { pcfg.MaxConns = 2 })
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := prepare(ctx, cfg, pool, log); err != nil {
		return err
	}
	warnUnprotected(ctx, pool, log)
	return nil
}

// OwnerPool connects as the ehrsync schema's owner: store.owner_url, or
// store.url when it is not set (`ehrsync audit prune`).
func OwnerPool(ctx context.Context, cfg *config.Config, log *slog.Logger) (*pgxpool.Pool, error) {
	key := "store.owner_url"
	if !cfg.Store.OwnerURL.IsSet() {
		key = "store.url"
	}
	return connect(ctx, key, cfg, log, func(pcfg *pgxpool.Config, _ string) { pcfg.MaxConns = 2 })
}

// StorePool connects as store.url's role, with a small pool (`ehrsync
// audit verify`).
func StorePool(ctx context.Context, cfg *config.Config, log *slog.Logger) (*pgxpool.Pool, error) {
	return connect(ctx, "store.url", cfg, log, func(pcfg *pgxpool.Config, _ string) { pcfg.MaxConns = 2 })
}

// warnUnprotected warns on log when pool's role could change or remove
// audit or position history rows (storedb.Protection).
func warnUnprotected(ctx context.Context, pool *pgxpool.Pool, log *slog.Logger) {
	problems, err := storedb.Protection(ctx, pool)
	if err != nil {
		log.Warn("the audit's protection was not checked", "err", err)
		return
	}
	if len(problems) > 0 {
		log.Warn(AuditUnprotected, "why", strings.Join(problems, "; "),
			"fix", "give store.url a writer role and store.owner_url the schema's owner (docs/operations-store.md)")
	}
}

// AuditUnprotected is the warning of a store whose audit the writer role
// could change.
const AuditUnprotected = "the audit is not protected: the role ehrsync writes with could change or remove audit and position history rows"

// maxStorePool caps the store pool storePoolSize chooses; pool_max_conns
// in store.url sets any size.
const maxStorePool = 32

// setsPoolSize reports whether a connection string sets pool_max_conns, as
// a URL query parameter or a keyword=value pair: pgconn parses it as
// pgxpool does, keeping the key pgx does not know among its runtime
// parameters.
func setsPoolSize(url string) bool {
	cc, err := pgconn.ParseConfig(url)
	if err != nil {
		return false
	}
	_, ok := cc.RuntimeParams["pool_max_conns"]
	return ok
}

// storePoolSize is the store pool's size when store.url does not set one:
// enough for every table that can run at once (orgsAtOnce organization
// runs, each running up to its parallel_tables tables: engine.RunOrg, in
// the daemon as in a command) to hold the connections its chunks take
// (engine.Writers each) and for the position, audit and admin queries
// beside them (2), and with the lake on the connections a table's lake
// flush holds (lake.FlushConns), at least pgx's default (dflt) and at most
// maxStorePool. Leases hold connections of their own, outside the pool. Past that, a table's next chunk waits for a free
// connection; the chunks it has open finish without another.
func storePoolSize(cfg *config.Config, orgsAtOnce int, dflt int32) int32 {
	widest := 1
	for _, o := range cfg.Orgs {
		widest = max(widest, o.ParallelTables)
	}
	orgs := max(1, min(orgsAtOnce, len(cfg.Orgs)))
	perTable := engine.Writers
	if config.LakeUsed(cfg.Orgs) {
		perTable += lake.FlushConns
	}
	need := orgs*widest*perTable + 2
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
// daemon's registry): the engine is rebuilt with them, so call it before
// handing s.Engine out.
func (s *Service) Instrument(reg prometheus.Registerer) {
	s.Leases = lease.NewManager(s.Store.Config().ConnConfig, lease.NewMetrics(reg))
	s.Engine = s.engine(engine.WithMetrics(engine.NewMetrics(reg)), engine.WithLeases(s.Leases))
}

// Close releases the store connections.
func (s *Service) Close() {
	if s.Lake != nil {
		s.Lake.Close()
	}
	s.Store.Close()
}

// OpenLake opens cfg's change lake in the store pool connects to: its
// storage secrets revealed, a directory warehouse created.
func OpenLake(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool) (*lake.Lake, error) {
	lc, err := LakeConfig(cfg)
	if err != nil {
		return nil, err
	}
	if dir, ok := strings.CutPrefix(cfg.Lake.Warehouse, "file://"); ok {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("lake.warehouse: %w", err)
		}
	}
	return lake.Open(ctx, pool, lc)
}

// LakeConfig is cfg's lake as pkg/lake takes it: the storage's and the
// REST catalog's secrets revealed. Errors name the secret's key.
func LakeConfig(cfg *config.Config) (lake.Config, error) {
	props, err := cfg.Lake.Props()
	if err != nil {
		return lake.Config{}, fmt.Errorf("lake: %w", err)
	}
	lc := lake.Config{Warehouse: cfg.Lake.Warehouse, Props: props, FlushBytes: cfg.Lake.FlushBytes}
	if cfg.Lake.REST() {
		c := cfg.Lake.Catalog
		lc.REST = &lake.RESTCatalog{URI: c.URI, Scope: c.Scope}
		if lc.REST.Credential, lc.REST.Token, err = cfg.Lake.CatalogSecrets(); err != nil {
			return lake.Config{}, fmt.Errorf("lake: %w", err)
		}
	}
	return lc, nil
}

// LakeTable is one table with lake on.
type LakeTable struct {
	Org   *config.Org
	Table string // the source table's qualified name
	Lake  lake.Table
}

// LakeTables are org's tables with lake on, those the catalog knows.
func (s *Service) LakeTables(org *config.Org) []LakeTable {
	var out []LakeTable
	for _, tc := range org.Tables {
		t, ok := s.Engine.Catalog().Table(tc.Name)
		if ok && config.LakeOn(*org, tc) {
			out = append(out, LakeTable{Org: org, Table: t.QualifiedName(), Lake: engine.LakeTable(org.Name, t)})
		}
	}
	return out
}

// MaintainLake runs lake maintenance (lake.Lake.Maintain, with opts) on
// t, audited as actor (action lake, what maintain) unless a flush held
// it. An audit record not written is its error.
func (s *Service) MaintainLake(ctx context.Context, t LakeTable, actor string, opts lake.MaintainOptions) (lake.MaintainResult, error) {
	started := time.Now()
	res, err := s.Lake.Maintain(ctx, t.Lake, opts)
	if res.Busy && err == nil {
		return res, nil
	}
	what := "maintain"
	if opts.DryRun {
		what = "maintain (dry run)"
	}
	rec := audit.Record{Actor: actor, Action: audit.ActionLake, What: what, Org: t.Org.Name, Table: t.Table,
		Duration: time.Since(started), Outcome: "ok"}
	if err != nil {
		rec.Outcome, rec.ErrorClass = "failed", engine.Class(err)
	}
	if aerr := s.Audit.Write(ctx, rec); aerr != nil && err == nil {
		err = aerr
	}
	return res, err
}
