// Package storedb owns the store's ehrsync schema: versioned migrations
// applied at start.
//
// Migrations are the embedded files migrations/NNNN_name.sql, numbered from
// 0001 without gaps. Migrate applies the ones a database lacks, in order,
// each in its own transaction, and records each in
// ehrsync.schema_migrations(version, name, checksum, applied_at). A migration,
// once released, is never edited: changes are new migrations.
package storedb

import (
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaName is the store schema that holds ehrsync's own tables.
const SchemaName = "ehrsync"

// The advisory lock Migrate holds while it works: pg_advisory_xact_lock with
// two int4 keys, a key space that never conflicts with locks on one bigint
// key. Other parts of ehrsync that take two-key advisory locks use
// LockClass with their own object numbers, or a class of their own here.
const (
	LockClass     int32 = 0x65687273 // "ehrs"
	MigrateObject int32 = 1

	// ChunkLockClass is the class of the lock each open chunk with rows
	// holds (pkg/sink), its object number drawn per chunk.
	ChunkLockClass int32 = 0x65687263 // "ehrc"

	// LakeLockClass is the class of the session lock a lake flush or
	// maintenance holds on a table (pkg/lake), its object number
	// hashtext of the table's outbox name.
	LakeLockClass int32 = 0x6568726c // "ehrl"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

type migration struct {
	version  int
	name     string
	sql      string
	checksum string
}

var fileName = regexp.MustCompile(`^(\d{4})_([a-z0-9_]+)\.sql$`)

var loadMigrations = sync.OnceValues(func() ([]migration, error) {
	return parseMigrations(migrationFiles, "migrations")
})

func parseMigrations(fsys fs.FS, dir string) ([]migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := fileName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration file %s: name is not NNNN_name.sql", e.Name())
		}
		v, _ := strconv.Atoi(m[1])
		if v != len(ms)+1 {
			return nil, fmt.Errorf("migration file %s: want version %04d next", e.Name(), len(ms)+1)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read migration %s: %w", e.Name(), err)
		}
		sum := sha256.Sum256(b)
		ms = append(ms, migration{version: v, name: m[2], sql: string(b), checksum: hex.EncodeToString(sum[:])})
	}
	if len(ms) == 0 {
		return nil, errors.New("read migrations: none embedded")
	}
	return ms, nil
}

// LatestVersion is the newest migration this binary knows.
func LatestVersion() int {
	ms, err := loadMigrations()
	if err != nil {
		return 0
	}
	return len(ms)
}

const bootstrapSQL = `
CREATE SCHEMA IF NOT EXISTS ehrsync;
CREATE TABLE IF NOT EXISTS ehrsync.schema_migrations (
    version    integer     PRIMARY KEY,
    name       text        NOT NULL,
    checksum   text        NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);`

// Migrate brings the store's ehrsync schema to this binary's latest version.
// It is idempotent and safe to call from many replicas at once: each step
// runs in its own transaction under a transaction-scoped advisory lock
// (LockClass, MigrateObject), so callers serialize and each migration is
// applied exactly once. A database migrated by a newer binary is refused
// with a *VersionError (ErrSchemaNewer); an applied migration that differs
// from the embedded one with ErrSchemaMismatch. Nothing is changed then.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for {
		done, err := step(ctx, pool, ms)
		if err != nil || done {
			return err
		}
	}
}

// step applies the first migration the database lacks. It reports done when
// there was none.
func step(ctx context.Context, pool *pgxpool.Pool, ms []migration) (done bool, err error) {
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", LockClass, MigrateObject); err != nil {
			return fmt.Errorf("lock schema %s for migration: %w", SchemaName, err)
		}
		// A role that does not own the schema (the writer, when an owner
		// migrates it) may not even run CREATE ... IF NOT EXISTS: it starts
		// on a schema that is up to date without any DDL.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regclass('ehrsync.schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
			return fmt.Errorf("read %s schema version: %w", SchemaName, err)
		}
		if !exists {
			if _, err := tx.Exec(ctx, bootstrapSQL); err != nil {
				return fmt.Errorf("create %s.schema_migrations: %w", SchemaName, ownerHint(err))
			}
		}
		applied, err := appliedVersions(ctx, tx, ms)
		if err != nil {
			return err
		}
		if applied == len(ms) {
			done = true
			return nil
		}
		m := ms[applied]
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			return fmt.Errorf("apply migration %04d_%s: %w", m.version, m.name, ownerHint(err))
		}
		if _, err := tx.Exec(ctx, "INSERT INTO ehrsync.schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
			m.version, m.name, m.checksum); err != nil {
			return fmt.Errorf("record migration %04d_%s: %w", m.version, m.name, err)
		}
		return nil
	})
	return done, err
}

// appliedVersions checks the applied migrations against ms and returns how
// many are applied.
func appliedVersions(ctx context.Context, tx pgx.Tx, ms []migration) (int, error) {
	rows, err := tx.Query(ctx, "SELECT version, name, checksum FROM ehrsync.schema_migrations ORDER BY version")
	if err != nil {
		return 0, fmt.Errorf("read %s.schema_migrations: %w", SchemaName, err)
	}
	type row struct {
		Version        int
		Name, Checksum string
	}
	applied, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		return 0, fmt.Errorf("read %s.schema_migrations: %w", SchemaName, err)
	}
	if n := len(applied); n > 0 && applied[n-1].Version > len(ms) {
		return 0, &VersionError{Database: applied[n-1].Version, Binary: len(ms)}
	}
	for i, a := range applied {
		m := ms[i]
		switch {
		case a.Version != m.version:
			return 0, fmt.Errorf("migration %04d is missing from %s.schema_migrations: %w", m.version, SchemaName, ErrSchemaMismatch)
		case a.Name != m.name:
			return 0, fmt.Errorf("migration %04d was applied as %q, this binary has %q: %w", m.version, a.Name, m.name, ErrSchemaMismatch)
		case a.Checksum != m.checksum:
			return 0, fmt.Errorf("migration %04d_%s was applied with different contents: %w", m.version, m.name, ErrSchemaMismatch)
		}
	}
	return len(applied), nil
}

// CurrentVersion is the newest migration applied to the store, 0 when none
// is (or the schema does not exist yet).
func CurrentVersion(ctx context.Context, pool *pgxpool.Pool) (int, error) {
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('ehrsync.schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return 0, fmt.Errorf("read %s schema version: %w", SchemaName, err)
	}
	if !exists {
		return 0, nil
	}
	var v int
	if err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM ehrsync.schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read %s schema version: %w", SchemaName, err)
	}
	return v, nil
}
