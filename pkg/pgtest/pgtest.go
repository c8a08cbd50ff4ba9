// Package pgtest gives each test a fresh database on a real PostgreSQL.
//
// A test package calls Main from its TestMain. Main uses the server named by
// EHRSYNC_TEST_PG_URL when that is set (its user needs CREATEDB); otherwise it
// starts a throwaway server from the machine's PostgreSQL binaries (package
// pgserver) in a temporary directory, and stops and removes it when the tests
// end, whether they passed or not. Each call to URL or Pool creates a new
// database that is dropped when the test ends.
package pgtest

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/pgserver"
)

// EnvURL names the variable that points the tests at an existing server.
const EnvURL = "EHRSYNC_TEST_PG_URL"

var (
	adminURL string // a database on the server to run CREATE/DROP DATABASE from
	server   *pgserver.Server
	counter  atomic.Int64
)

// Main runs the package's tests against a PostgreSQL server and exits.
func Main(m interface{ Run() int }) {
	os.Exit(run(m))
}

func run(m interface{ Run() int }) int {
	if u := os.Getenv(EnvURL); u != "" {
		adminURL = u
		return m.Run()
	}
	srv, dir, err := start()
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n(set %s to use an existing server instead)\n", err, EnvURL)
		return 1
	}
	server, adminURL = srv, srv.URL("postgres")
	defer os.RemoveAll(dir)
	defer srv.Stop()
	return m.Run()
}

// Server is the throwaway server Main started, or nil when the tests use
// EHRSYNC_TEST_PG_URL. Tests that stop and restart the store need it.
func Server() *pgserver.Server { return server }

func start() (*pgserver.Server, string, error) {
	sweep()
	dir, err := os.MkdirTemp("", tempPrefix)
	if err != nil {
		return nil, "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv, err := pgserver.Start(ctx, pgserver.Options{
		Dir: dir,
		Settings: map[string]string{
			// Throwaway data: durability buys nothing here.
			"fsync":              "off",
			"synchronous_commit": "off",
			"full_page_writes":   "off",
			"max_connections":    "200",
			"shared_buffers":     "64MB",
		},
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return srv, dir, nil
}

const tempPrefix = "ehrsync-pgtest-"

// sweep removes the directories of earlier test runs that were killed before
// they could clean up (their server died with them): older than ten
// minutes, with no live postmaster.
func sweep() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), tempPrefix+"*"))
	for _, d := range dirs {
		fi, err := os.Stat(d)
		if err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
			continue
		}
		if pid, err := os.ReadFile(filepath.Join(d, "data", "postmaster.pid")); err == nil {
			if n, err := strconv.Atoi(strings.SplitN(string(pid), "\n", 2)[0]); err == nil && syscall.Kill(n, 0) == nil {
				continue
			}
		}
		os.RemoveAll(d)
	}
}

var unsafeChars = regexp.MustCompile(`[^a-z0-9_]+`)

// URL creates a fresh database for this test and returns its URL. The
// database is dropped when the test ends.
func URL(t testing.TB) string {
	t.Helper()
	if adminURL == "" {
		t.Fatal("pgtest: no server: call pgtest.Main(m) from the package's TestMain")
	}
	name := unsafeChars.ReplaceAllString(strings.ToLower(t.Name()), "_")
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("t%d_%d_%s", os.Getpid(), counter.Add(1), name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		t.Fatalf("pgtest: connect to the test server: %v", err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, adminURL)
		if err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	u, err := url.Parse(adminURL)
	if err != nil {
		t.Fatalf("pgtest: parse %s: %v", EnvURL, err)
	}
	u.Path = "/" + name
	return u.String()
}

// Pool creates a fresh database for this test and returns a pool on it,
// closed before the database is dropped.
func Pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	u := URL(t)
	pool, err := pgxpool.New(context.Background(), u)
	if err != nil {
		t.Fatalf("pgtest: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Role creates a login role for this test and returns dbURL (a database
// from URL) connecting as it. grants are statements run on that database
// as the server's user, %s standing for the role's quoted name
// ("GRANT CREATE ON DATABASE "+Database(t, dbURL)+" TO %s").
// When the test ends, what the role owns in the database is reassigned to
// the server's user, its privileges there are revoked, and it is dropped.
// The test is skipped when the server's user may not create roles (an
// EHRSYNC_TEST_PG_URL without CREATEROLE).
func Role(t testing.TB, dbURL, prefix string, grants ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	name := fmt.Sprintf("%s_%d_%d", unsafeChars.ReplaceAllString(strings.ToLower(prefix), "_"), os.Getpid(), counter.Add(1))
	password := fmt.Sprintf("pw%d%d", os.Getpid(), time.Now().UnixNano())
	admin, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("pgtest: connect to the test database: %v", err)
	}
	defer admin.Close(context.Background())
	var may bool
	if err := admin.QueryRow(ctx, "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user").Scan(&may); err != nil {
		t.Fatalf("pgtest: read the server user's attributes: %v", err)
	}
	if !may {
		t.Skipf("pgtest: the user of %s may not create roles (CREATEROLE)", EnvURL)
	}
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE ROLE "+ident+" LOGIN PASSWORD '"+password+"'"); err != nil {
		t.Fatalf("pgtest: create role %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, dbURL)
		if err != nil {
			t.Errorf("pgtest: drop role %s: %v", name, err)
			return
		}
		defer admin.Close(context.Background())
		_, err = admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1", name)
		if err == nil {
			_, err = admin.Exec(ctx, "REASSIGN OWNED BY "+ident+" TO current_user; DROP OWNED BY "+ident+"; DROP ROLE "+ident)
		}
		if err != nil {
			t.Errorf("pgtest: drop role %s: %v", name, err)
		}
	})
	for _, g := range grants {
		if _, err := admin.Exec(ctx, fmt.Sprintf(g, ident)); err != nil {
			t.Fatalf("pgtest: %s: %v", fmt.Sprintf(g, name), err)
		}
	}
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: parse the database URL: %v", err)
	}
	u.User = url.UserPassword(name, password)
	return u.String()
}

// Database is the database name of a URL from URL, quoted for SQL.
func Database(t testing.TB, dbURL string) string {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatalf("pgtest: parse the database URL: %v", err)
	}
	return pgx.Identifier{strings.TrimPrefix(u.Path, "/")}.Sanitize()
}
