package check_test

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

// storeSentinel is the password of every store URL these tests write (the
// test server trusts its connections, so it is sent and never needed): no
// report may show it.
const storeSentinel = "St0re-S3ntinel-9e1f"

// withPassword is the URL u with storeSentinel as its password.
func withPassword(t *testing.T, u string) string {
	t.Helper()
	pu, err := url.Parse(u)
	require.NoError(t, err)
	pu.User = url.UserPassword(pu.User.Username(), storeSentinel)
	return pu.String()
}

// storeConfig is a configuration of two organizations whose store is at
// u (and, when owner is not "", whose owner role connects with owner).
func storeConfig(u, owner string) *config.Config {
	cfg := &config.Config{Store: config.Store{URL: config.NewSecret(u), OwnerURL: config.NewSecret(owner)},
		Orgs: []config.Org{{Name: "st-mary"}, {Name: "north"}}}
	cfg.ApplyDefaults()
	return cfg
}

// runStore checks the store of cfg and returns its report and text,
// asserting that neither the text nor the JSON shows the store password.
func runStore(t *testing.T, cfg *config.Config) (check.StoreReport, string) {
	t.Helper()
	st := check.RunStore(context.Background(), cfg, cfg.Orgs, check.Options{StepTimeout: 10 * time.Second, ConfigPath: "/etc/ehrsync/ehrsync.yaml"})
	text, _ := requireClean(t, check.Report{SchemaVersion: check.SchemaVersion, Healthy: st.Healthy, Store: &st, Orgs: []check.OrgReport{}}, storeSentinel)
	t.Log("\n" + text)
	return st, text
}

func storeStep(t *testing.T, st check.StoreReport, name string) check.Step {
	t.Helper()
	return step(t, check.OrgReport{Steps: st.Steps}, name)
}

func stepNames(st check.StoreReport) []string {
	var names []string
	for _, s := range st.Steps {
		names = append(names, s.Name)
	}
	return names
}

func migrated(t *testing.T, u string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), u)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	return pool
}

// TestStoreHealthy: a migrated store of one role passes every step, and
// the audit, which that role could change, is warned about.
func TestStoreHealthy(t *testing.T) {
	u := pgtest.URL(t)
	migrated(t, u)
	st, text := runStore(t, storeConfig(withPassword(t, u), ""))
	require.True(t, st.Healthy, text)
	require.Equal(t, []string{"url", "connect", "tls", "migrations", "privileges", "audit"}, stepNames(st))
	for _, name := range []string{"url", "connect", "tls", "migrations", "privileges"} {
		require.Equal(t, check.StatusOK, storeStep(t, st, name).Status, name)
	}
	require.Contains(t, storeStep(t, st, "tls").Detail, "not encrypted (the store is on this machine)")
	require.Contains(t, storeStep(t, st, "migrations").Detail, "this binary's")
	audit := storeStep(t, st, "audit")
	require.Equal(t, check.StatusWarning, audit.Status)
	require.Contains(t, audit.Detail, service.AuditUnprotected)
	require.Contains(t, text, "store: HEALTHY")
}

// TestStoreProblems: each way the store fails a sync fails check's store
// section, with the step, the stable code, the fix and a detail that
// names what went wrong, never the URL's password.
func TestStoreProblems(t *testing.T) {
	ctx := context.Background()
	closed := "postgres://ehrsync:" + storeSentinel + "@" + sourcetest.ClosedAddr(t) + "/store?connect_timeout=5"
	admin := pgtest.Pool(t)
	noLogin := "nologin_" + pgx.Identifier{}.Sanitize() + time.Now().Format("150405")
	_, err := admin.Exec(ctx, "CREATE ROLE "+noLogin+" NOLOGIN")
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = admin.Exec(context.Background(), "DROP ROLE "+noLogin) })
	fresh := withPassword(t, pgtest.URL(t))
	asNoLogin, err := url.Parse(fresh)
	require.NoError(t, err)
	asNoLogin.User = url.UserPassword(noLogin, storeSentinel)
	noDB, err := url.Parse(fresh)
	require.NoError(t, err)
	noDB.Path = "/no_such_database"
	os.Unsetenv("EHRSYNC_TEST_UNSET_STORE")

	cases := []struct {
		name, url, step, code, detail, fix string
		steps                              []string
	}{
		{"unreachable", closed, "connect", "store_unreachable", "connection refused", "listens there", []string{"url", "connect"}},
		{"login refused", asNoLogin.String(), "connect", "store_login_failed", `(SQLSTATE 28000: role "` + noLogin + `" is not permitted to log in)`, "pg_hba.conf", nil},
		{"database missing", noDB.String(), "connect", "store_database_missing", `(SQLSTATE 3D000: database "no_such_database" does not exist)`, "create the database", nil},
		{"remote without sslmode", "postgres://ehrsync:" + storeSentinel + "@192.0.2.10:5432/store", "url", "store_url_refused",
			"store.url ([redacted]): no sslmode (pgx's default, prefer: TLS without verification, else plain text) to the store at 192.0.2.10", "sslmode=verify-full", []string{"url"}},
		{"secret unset", "env:EHRSYNC_TEST_UNSET_STORE", "url", source.ClassSecret.Code, "store.url: env:EHRSYNC_TEST_UNSET_STORE is not set", source.ClassSecret.Fix, []string{"url"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st, text := runStore(t, storeConfig(c.url, ""))
			require.False(t, st.Healthy, text)
			require.Contains(t, text, "store: UNHEALTHY")
			s := storeStep(t, st, c.step)
			require.Equal(t, check.StatusFailed, s.Status, text)
			require.Equal(t, c.code, s.Problem.Code, text)
			require.Contains(t, s.Detail, c.detail)
			require.Contains(t, s.Problem.Fix, c.fix)
			if c.steps != nil {
				require.Equal(t, c.steps, stepNames(st))
			}
		})
	}
}

// TestStoreWriterWithoutAGrant: a writer role that lacks a privilege a
// sync needs fails the privileges step naming it with its GRANT; with
// store.owner_url the fix is `ehrsync migrate`, which grants it; the
// owner connection is checked too.
func TestStoreWriterWithoutAGrant(t *testing.T) {
	ctx := context.Background()
	db := pgtest.URL(t)
	ownerURL := pgtest.Role(t, db, "owner", "GRANT CREATE ON DATABASE "+pgtest.Database(t, db)+" TO %s")
	writerURL := pgtest.Role(t, db, "writer")
	owner := migrated(t, ownerURL)
	writer, err := pgxpool.New(ctx, writerURL)
	require.NoError(t, err)
	defer writer.Close()
	role, err := storedb.CurrentRole(ctx, writer)
	require.NoError(t, err)
	require.NoError(t, storedb.GrantWriter(ctx, owner, role))
	require.NoError(t, storedb.EnsureSchemas(ctx, owner, role, "st_mary", "north"))

	cfg := storeConfig(withPassword(t, writerURL), withPassword(t, ownerURL))
	st, text := runStore(t, cfg)
	require.True(t, st.Healthy, text)
	require.Equal(t, []string{"url", "connect", "tls", "owner url", "owner connect", "migrations", "privileges", "audit"}, stepNames(st))
	require.Equal(t, check.StatusOK, storeStep(t, st, "audit").Status, "the writer cannot change the audit")

	w := pgx.Identifier{role}.Sanitize()
	_, err = owner.Exec(ctx, "REVOKE INSERT ON ehrsync.audit FROM "+w)
	require.NoError(t, err)
	st, text = runStore(t, cfg)
	require.False(t, st.Healthy, text)
	p := storeStep(t, st, "privileges").Problem
	require.Equal(t, "store_privilege_missing", p.Code)
	require.Equal(t, "the writer role (store.url) lacks INSERT on ehrsync.audit", p.Cause)
	require.Equal(t, `GRANT INSERT ON "ehrsync"."audit" TO `+w+";", p.Grant)
	require.Contains(t, p.Fix, "run `ehrsync migrate --config /etc/ehrsync/ehrsync.yaml`: it grants the writer")
	require.Contains(t, text, "grant: GRANT INSERT ON")

	// Without an owner URL the writer creates the organizations' schemas
	// itself: it needs CREATE on the database for the one not there yet.
	_, err = owner.Exec(ctx, "GRANT INSERT ON ehrsync.audit TO "+w+"; DROP SCHEMA north")
	require.NoError(t, err)
	st, text = runStore(t, storeConfig(withPassword(t, writerURL), ""))
	require.False(t, st.Healthy, text)
	p = storeStep(t, st, "privileges").Problem
	require.Contains(t, p.Cause, "lacks CREATE on database ")
	require.Contains(t, p.Cause, "(to create schema north)")
	require.Contains(t, p.Fix, "run the GRANTs as the ehrsync schema's owner")

	// An owner URL that does not connect fails check: sync migrates with it.
	cfg.Store.OwnerURL = config.NewSecret("postgres://owner:" + storeSentinel + "@" + sourcetest.ClosedAddr(t) + "/store")
	cfg.ApplyDefaults()
	st, text = runStore(t, cfg)
	require.False(t, st.Healthy, text)
	require.Equal(t, "store_unreachable", storeStep(t, st, "owner connect").Problem.Code)
}

// TestStoreMigrations: a store whose migrations are not applied fails
// check when sync could not apply them itself (store.url's role does not
// own the schema and no owner URL is set), naming `ehrsync migrate`; when
// sync applies them at start (as the schema's owner, or as
// store.owner_url's role) it is a warning saying so.
func TestStoreMigrations(t *testing.T) {
	db := pgtest.URL(t)
	writer := withPassword(t, pgtest.Role(t, db, "writer"))

	st, text := runStore(t, storeConfig(writer, ""))
	require.False(t, st.Healthy, text)
	s := storeStep(t, st, "migrations")
	require.Equal(t, check.StatusFailed, s.Status)
	require.Equal(t, "store_migrations_pending", s.Problem.Code)
	require.Contains(t, s.Problem.Cause, "store.url's role may not apply them")
	require.Equal(t, "run `ehrsync migrate --config /etc/ehrsync/ehrsync.yaml` with store.owner_url set to the schema owner's URL (docs/operations-store.md)", s.Problem.Fix)
	require.Contains(t, s.Detail, "version 0, this binary's")
	require.Equal(t, []string{"url", "connect", "tls", "migrations"}, stepNames(st), "privileges are judged on a migrated schema")

	for _, c := range []struct {
		name, url, owner, by string
	}{
		{"one role", withPassword(t, db), "", "store.url's role"},
		{"owner url", writer, withPassword(t, db), "store.owner_url's role"},
	} {
		t.Run(c.name, func(t *testing.T) {
			st, text := runStore(t, storeConfig(c.url, c.owner))
			require.True(t, st.Healthy, text)
			s := storeStep(t, st, "migrations")
			require.Equal(t, check.StatusWarning, s.Status)
			require.Contains(t, s.Detail, "sync, run and backfill apply them at start as "+c.by)
		})
	}
}
