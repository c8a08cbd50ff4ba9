// Package lake is the change lake: every change the store commits for a
// table with lake on, appended once to an Apache Iceberg table of Parquet
// files that Spark, Trino, DuckDB and Fabric read.
//
// The sink keeps each committed chunk in the table's lake outbox
// (sink.LakeOutboxSuffix), in the transaction that commits its rows and
// position. Flush moves outbox rows into the table's Iceberg table,
// <schema>.<table>__changes in the catalog, and deletes them: it claims
// the rows waiting (up to Config.FlushBytes), numbering the claim one
// more than the Iceberg table's ehrsync.claim property; appends the
// claim's batches in one Iceberg commit that also sets ehrsync.claim to
// the claim's number; and deletes the claim's rows. A flush that stops
// anywhere leaves either the claim in the outbox with the property
// below it (the next flush appends it again: its files from before are
// orphans, never in a snapshot) or the property at the claim (the next
// flush deletes the rows without appending). So each chunk lands in the
// lake once.
//
// The catalog is iceberg-go's SQL catalog in the store's schema
// ehrsync_lake (the tables of Iceberg's JDBC catalog); the warehouse is a
// directory (file://), Azure Blob / ADLS Gen2 (abfs://) or S3 (s3://).
package lake

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/catalog"
	"github.com/apache/iceberg-go/catalog/rest"
	sqlcat "github.com/apache/iceberg-go/catalog/sql"
	"github.com/apache/iceberg-go/table"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/pkg/storedb"

	// The Azure Blob / ADLS Gen2 and S3 file systems (abfs://, s3://).
	_ "github.com/apache/iceberg-go/io/gocloud/azure"
	_ "github.com/apache/iceberg-go/io/gocloud/s3"
)

// CatalogName is the name of ehrsync's catalog in ehrsync_lake's tables.
const CatalogName = "ehrsync"

// TableSuffix ends an Iceberg table's name: claims__changes.
const TableSuffix = "__changes"

// The Iceberg table properties (and snapshot summary keys) ehrsync keeps.
const (
	// PropClaim is the number of the last outbox claim the table holds.
	PropClaim = "ehrsync.claim"
	// PropPosition is the summary of the position the claim's last chunk
	// moved the table to (watermarks.Summary: never key values).
	PropPosition = "ehrsync.position"
	// PropBatches is the range of _ehrsync_batch a snapshot appended
	// (summary only).
	PropBatches = "ehrsync.batches"
	// PropStore is the id of the store whose outbox feeds the table
	// (ehrsync.store_identity).
	PropStore = "ehrsync.store"
)

// The columns the lake adds to a change batch's.
const (
	// BatchColumn is the row's commit in the store: its position-history
	// id, the store rows' _ehrsync_batch.
	BatchColumn = "_ehrsync_batch"
	// CommittedAtColumn is when the store committed the row
	// (timestamptz).
	CommittedAtColumn = "_ehrsync_committed_at"
)

// FlushConns is how many store connections one table's flush holds at
// once: its lock's and its claim reader's.
const FlushConns = 2

// RowGroupBytes is the lake's Parquet row groups' size, uncompressed.
const RowGroupBytes = 8 << 20

// DefaultFlushBytes is how much of the outbox one lake commit takes at most.
const DefaultFlushBytes = 128 << 20

// Config is a lake's.
type Config struct {
	// Warehouse is where tables are created: file:///dir, abfs://…, s3://….
	Warehouse string
	// Props are the storage's properties for iceberg-go (adls.*, s3.*),
	// secrets resolved.
	Props map[string]string
	// FlushBytes bounds one commit's outbox bytes; 0 means DefaultFlushBytes.
	FlushBytes int64
	// REST, when set, is an Iceberg REST catalog (Polaris, Unity, Glue's,
	// Nessie's…) the lake's tables are in instead of the store's.
	REST *RESTCatalog
}

// RESTCatalog is an Iceberg REST catalog's address and credentials.
type RESTCatalog struct {
	URI string
	// Credential is an OAuth2 client's "id:secret", exchanged for a token
	// at the catalog's token endpoint; Token is a bearer token instead.
	Credential, Token string
	// Scope is the OAuth2 scope asked for (default "catalog").
	Scope string
}

// Lake moves outboxes into Iceberg tables. It is safe for concurrent use.
type Lake struct {
	pool  *pgxpool.Pool
	store string  // the store's id (ehrsync.store_identity)
	db    *sql.DB // the SQL catalog's connections; nil with a REST catalog
	cat   catalog.Catalog
	cfg   Config

	// testHook, when set, runs at each step of a commit ("appended": the
	// files written, not committed; "committed": the Iceberg commit done,
	// the outbox not yet cleared); an error stops the flush there.
	testHook func(step string) error
}

// Open opens the lake's catalog: the SQL catalog in the store that pool
// connects to (the store must be migrated: schema ehrsync_lake), or
// cfg.REST. The outboxes and ehrsync.lake_tables are in the store either way.
func Open(ctx context.Context, pool *pgxpool.Pool, cfg Config) (*Lake, error) {
	if cfg.Warehouse == "" {
		return nil, errors.New("open the lake: no warehouse: set lake.warehouse")
	}
	if cfg.FlushBytes <= 0 {
		cfg.FlushBytes = DefaultFlushBytes
	}
	store, err := storeID(ctx, pool)
	if err != nil {
		return nil, err
	}
	if cfg.REST != nil {
		return openREST(ctx, pool, cfg, store)
	}
	cc := pool.Config().ConnConfig.Copy()
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = map[string]string{}
	}
	cc.RuntimeParams["search_path"] = storedb.LakeSchemaName
	db := stdlib.OpenDB(*cc)
	db.SetMaxOpenConns(2)
	props := iceberg.Properties{"warehouse": cfg.Warehouse, "init_catalog_tables": "false"}
	maps.Copy(props, cfg.Props)
	cat, err := sqlcat.NewCatalog(CatalogName, db, sqlcat.Postgres, props)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open the lake catalog in schema %s: %w", storedb.LakeSchemaName, err)
	}
	return &Lake{pool: pool, store: store, db: db, cat: cat, cfg: cfg}, nil
}

// Warehouse is where the lake's tables are.
func (l *Lake) Warehouse() string { return l.cfg.Warehouse }

// FlushBytes bounds one commit's outbox bytes.
func (l *Lake) FlushBytes() int64 { return l.cfg.FlushBytes }

// openREST opens the lake on cfg.REST.
func openREST(ctx context.Context, pool *pgxpool.Pool, cfg Config, store string) (*Lake, error) {
	r := cfg.REST
	opts := []rest.Option{rest.WithWarehouseLocation(cfg.Warehouse), rest.WithAdditionalProps(iceberg.Properties(maps.Clone(cfg.Props)))}
	switch {
	case r.Token != "":
		opts = append(opts, rest.WithOAuthToken(r.Token))
	case r.Credential != "":
		opts = append(opts, rest.WithCredential(r.Credential))
	}
	if r.Scope != "" {
		opts = append(opts, rest.WithScope(r.Scope))
	}
	cat, err := rest.NewCatalog(ctx, CatalogName, r.URI, opts...)
	if err != nil {
		return nil, (&Lake{cfg: cfg}).safe(fmt.Errorf("open the lake's REST catalog at %s: %w", r.URI, err))
	}
	return &Lake{pool: pool, store: store, cat: cat, cfg: cfg}, nil
}

// storeID is the store's identity.
func storeID(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var id string
	if err := pool.QueryRow(ctx, "SELECT id::text FROM ehrsync.store_identity").Scan(&id); err != nil {
		return "", fmt.Errorf("open the lake: read the store's identity (ehrsync.store_identity; run ehrsync migrate): %w", err)
	}
	return id, nil
}

// ErrOtherStore is a lake table another store's ehrsync writes.
var ErrOtherStore = errors.New("the lake table is written by another ehrsync store")

// owned checks that tbl is written by this store.
func (l *Lake) owned(t Table, tbl *table.Table) error {
	if tbl == nil {
		return nil
	}
	if id, ok := tbl.Properties()[PropStore]; ok && id != l.store {
		return fmt.Errorf("lake table %s: %w (its %s is %s, this store's %s): two stores counting claims on one table would lose rows; fix: give each store a warehouse and catalog of its own",
			t.Ident(), ErrOtherStore, PropStore, id, l.store)
	}
	return nil
}

// Close closes the catalog's connections.
func (l *Lake) Close() error {
	if l.db == nil {
		return nil
	}
	return l.db.Close()
}

// Catalog is the lake's Iceberg catalog.
func (l *Lake) Catalog() catalog.Catalog { return l.cat }

// Table names one store table with lake on.
type Table struct {
	Org    string // the organization
	Schema string // its store schema, the Iceberg namespace
	Name   string // the store table's name (sink.TableName)
}

// Ident is t's Iceberg table.
func (t Table) Ident() table.Identifier { return table.Identifier{t.Schema, t.Name + TableSuffix} }

func (t Table) outbox() pgx.Identifier {
	return pgx.Identifier{t.Schema, sink.OutboxName(t.Name)}
}

// String is the table's name in errors and logs.
func (t Table) String() string { return t.Schema + "." + t.Name }

// State is a lake table's last commit, as its Iceberg table says.
type State struct {
	Exists bool
	Claim  int64 // PropClaim: 0 before the first commit
	// PositionSummary is PropPosition: the summary of the position the
	// table holds to ("" before any).
	PositionSummary string
	SnapshotID      int64
	Committed       time.Time // the current snapshot's time
	// MetadataLocation is the table's current metadata file, which
	// readers without the catalog open (DuckDB's iceberg_scan).
	MetadataLocation string
}

// State reads t's Iceberg table.
func (l *Lake) State(ctx context.Context, t Table) (State, error) {
	tbl, err := l.load(ctx, t)
	if err != nil || tbl == nil {
		return State{}, l.safe(err)
	}
	return stateOf(tbl), nil
}

func stateOf(tbl *table.Table) State {
	if tbl == nil {
		return State{}
	}
	s := State{Exists: true, Claim: claimOf(tbl), MetadataLocation: tbl.MetadataLocation()}
	s.PositionSummary = tbl.Properties()[PropPosition]
	if snap := tbl.CurrentSnapshot(); snap != nil {
		s.SnapshotID = snap.SnapshotID
		s.Committed = time.UnixMilli(snap.TimestampMs).UTC()
	}
	return s
}

// load loads t's Iceberg table; nil when it does not exist yet.
func (l *Lake) load(ctx context.Context, t Table) (*table.Table, error) {
	tbl, err := l.cat.LoadTable(ctx, t.Ident())
	if errors.Is(err, catalog.ErrNoSuchTable) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load lake table %s: %w", t.Ident(), err)
	}
	return tbl, nil
}

// claimOf is tbl's PropClaim; 0 for none (or a nil table).
func claimOf(tbl *table.Table) int64 {
	if tbl == nil {
		return 0
	}
	n, err := strconv.ParseInt(tbl.Properties()[PropClaim], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// lakeError is an error whose text was cleaned of secrets (safe).
type lakeError struct {
	msg string
	err error
}

func (e *lakeError) Error() string { return e.msg }
func (e *lakeError) Unwrap() error { return e.err }

// urlQuery is a URL's query string in an error's text: a SAS token rides
// there.
var urlQuery = regexp.MustCompile(`(https?://[^\s"'?]+)\?[^\s"']*`)

// safe is err with the storage's and catalog's secrets, and URLs' query
// strings, out of its text (iceberg-go and the cloud SDKs quote request
// URLs). errors.Is and errors.As still see the original.
func (l *Lake) safe(err error) error {
	if err == nil {
		return nil
	}
	msg := urlQuery.ReplaceAllString(err.Error(), "$1?[redacted]")
	msg = redact(msg, l.cfg.Props)
	if r := l.cfg.REST; r != nil {
		_, secret, _ := strings.Cut(r.Credential, ":")
		for _, v := range []string{r.Credential, secret, r.Token} {
			if v != "" {
				msg = strings.ReplaceAll(msg, v, "[redacted]")
				msg = strings.ReplaceAll(msg, url.QueryEscape(v), "[redacted]")
			}
		}
	}
	if msg == err.Error() {
		return err
	}
	return &lakeError{msg: msg, err: err}
}
