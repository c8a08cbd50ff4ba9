package check_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/check"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/lake/laketest"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/source/sourcetest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

// lakeConfig is a configuration whose store is at u and whose one
// organization sends its table to the lake at warehouse.
func lakeConfig(t *testing.T, u, warehouse string) *config.Config {
	t.Helper()
	o := org(t, config.Postgres, config.ViaDirect, sourcetest.ClosedAddr(t))
	o.Lake = true
	cfg := &config.Config{Store: config.Store{URL: config.NewSecret(u)}, Lake: config.Lake{Warehouse: warehouse}, Orgs: []config.Org{o}}
	cfg.ApplyDefaults()
	return cfg
}

// runLake checks cfg's lake on the store at u (none when u is "") and
// returns its report and text, asserting neither the text nor the JSON
// holds one of secrets.
func runLake(t *testing.T, cfg *config.Config, u string, secrets ...string) (check.LakeReport, string) {
	t.Helper()
	var pool *pgxpool.Pool
	if u != "" {
		var err error
		pool, err = pgxpool.New(context.Background(), u)
		require.NoError(t, err)
		defer pool.Close()
	}
	l := check.RunLake(context.Background(), cfg, pool, check.Options{StepTimeout: 20 * time.Second, ConfigPath: "/etc/ehrsync/ehrsync.yaml"})
	text, _ := requireClean(t, check.Report{SchemaVersion: check.SchemaVersion, Healthy: l.Healthy, Lake: &l, Orgs: []check.OrgReport{}}, secrets...)
	t.Log("\n" + text)
	return l, text
}

func lakeStep(t *testing.T, l check.LakeReport, name string) check.Step {
	t.Helper()
	return step(t, check.OrgReport{Steps: l.Steps}, name)
}

// TestLakeDirectoryWarehouse: with a migrated store and a writable
// directory every lake step passes, and check reports the lake (a section
// of its own that makes the report unhealthy when it fails); a read-only
// directory and a path under a regular file fail the storage step with
// the warehouse named and the fix.
func TestLakeDirectoryWarehouse(t *testing.T) {
	u := pgtest.URL(t)
	migrated(t, u)
	dir := t.TempDir()
	l, text := runLake(t, lakeConfig(t, u, "file://"+dir), u)
	require.True(t, l.Healthy, text)
	require.Equal(t, []string{"configuration", "catalog", "storage"}, stepNames(check.StoreReport{Steps: l.Steps}))
	for _, s := range l.Steps {
		require.Equal(t, check.StatusOK, s.Status, s.Name)
	}
	require.Equal(t, "warehouse file://"+dir+": a directory", lakeStep(t, l, "configuration").Detail)
	require.Contains(t, lakeStep(t, l, "storage").Detail, "wrote, read back and deleted a file under file://"+dir+"/_ehrsync_check")
	require.Contains(t, text, "lake: HEALTHY")

	file := filepath.Join(t.TempDir(), "regular")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o600))
	cases := []struct {
		name, warehouse, code, fix string
	}{
		{"under a regular file", "file://" + file + "/lake", "lake_storage_failed", "a directory warehouse must be a directory"},
		{"read-only", "file://" + laketest.ReadOnlyDir(t), "lake_storage_refused", "let the user ehrsync runs as write to the warehouse directory"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, text := runLake(t, lakeConfig(t, u, c.warehouse), u)
			require.False(t, l.Healthy, text)
			require.Contains(t, text, "lake: UNHEALTHY")
			s := lakeStep(t, l, "storage")
			require.Equal(t, check.StatusFailed, s.Status)
			require.Equal(t, c.code, s.Problem.Code)
			require.Contains(t, s.Detail, "lake warehouse "+c.warehouse+": write a probe file: ")
			require.Contains(t, s.Problem.Fix, c.fix)
			require.Equal(t, check.StatusOK, lakeStep(t, l, "catalog").Status)
		})
	}

	// check runs the lake's section when a table has lake on, and a
	// failed one makes the report unhealthy.
	cfg := lakeConfig(t, u, cases[0].warehouse)
	rep := check.Check(context.Background(), cfg, cfg.Orgs, opts(2*time.Second))
	require.NotNil(t, rep.Lake)
	require.False(t, rep.Lake.Healthy)
	require.True(t, rep.Store.Healthy)
	require.False(t, rep.Healthy)
	cfg.Orgs[0].Lake = false
	rep = check.Check(context.Background(), cfg, cfg.Orgs, opts(2*time.Second))
	require.Nil(t, rep.Lake, "no table has lake on")
}

// TestLakeAzureWarehouse: an Azure warehouse (Azurite) with the account's
// key passes; with a wrong key the storage refuses it: the step names the
// warehouse and the refusal, and neither the text nor the JSON holds the
// key; a key whose secret does not resolve fails the configuration step
// naming the key and its reference.
func TestLakeAzureWarehouse(t *testing.T) {
	u := pgtest.URL(t)
	migrated(t, u)
	az := laketest.StartAzurite(t)
	azure := func(key config.Secret) *config.Config {
		cfg := lakeConfig(t, u, az.Warehouse)
		cfg.Lake.Azure = &config.LakeAzure{Account: laketest.AzuriteAccount, Key: key.For("lake.azure.key"), Endpoint: az.Endpoint, Protocol: "http"}
		return cfg
	}
	l, text := runLake(t, azure(config.NewSecret(laketest.AzuriteKey)), u, laketest.AzuriteKey)
	require.True(t, l.Healthy, text)
	require.Contains(t, lakeStep(t, l, "configuration").Detail, "Azure account devstoreaccount1, signed in with the account key ([redacted])")

	wrong := base64.StdEncoding.EncodeToString([]byte("not the account key of devstoreaccount1, 64 bytes long, padded..."))
	l, text = runLake(t, azure(config.NewSecret(wrong)), u, wrong, laketest.AzuriteKey)
	require.False(t, l.Healthy, text)
	s := lakeStep(t, l, "storage")
	require.Equal(t, check.StatusFailed, s.Status)
	require.Equal(t, "lake_storage_refused", s.Problem.Code)
	require.Contains(t, s.Detail, "lake warehouse "+az.Warehouse+": write a probe file: the storage answered HTTP 403")
	require.Contains(t, s.Problem.Fix, "check lake.azure: the account name and its key or SAS token")

	os.Unsetenv("EHRSYNC_TEST_UNSET_LAKE_KEY")
	l, text = runLake(t, azure(config.NewSecret("env:EHRSYNC_TEST_UNSET_LAKE_KEY")), u)
	require.False(t, l.Healthy, text)
	s = lakeStep(t, l, "configuration")
	require.Equal(t, source.ClassSecret.Code, s.Problem.Code)
	require.Equal(t, "lake.azure.key: env:EHRSYNC_TEST_UNSET_LAKE_KEY is not set", s.Detail)
	require.Equal(t, check.StatusSkipped, lakeStep(t, l, "storage").Status)
}

// TestLakeS3Warehouse: an S3 warehouse (s3rver on loopback) passes with
// its keys; a refused write fails the storage step naming the warehouse
// and the fix, and the keys are in neither the text nor the JSON.
func TestLakeS3Warehouse(t *testing.T) {
	u := pgtest.URL(t)
	migrated(t, u)
	s3 := laketest.StartS3(t)
	cfg := lakeConfig(t, u, s3.Warehouse)
	cfg.Lake.S3 = &config.LakeS3{Region: "us-east-1", Endpoint: s3.Endpoint,
		AccessKeyID:     config.NewSecret(s3.Props["s3.access-key-id"]).For("lake.s3.access_key_id"),
		SecretAccessKey: config.NewSecret(s3.Props["s3.secret-access-key"]).For("lake.s3.secret_access_key")}
	l, text := runLake(t, cfg, u)
	require.True(t, l.Healthy, text)
	require.Equal(t, check.StatusOK, lakeStep(t, l, "storage").Status)

	cfg = lakeConfig(t, u, "s3://no-such-bucket/warehouse")
	cfg.Lake.S3 = &config.LakeS3{Region: "us-east-1", Endpoint: s3.Endpoint,
		AccessKeyID:     config.NewSecret(s3.Props["s3.access-key-id"]).For("lake.s3.access_key_id"),
		SecretAccessKey: config.NewSecret(s3.Props["s3.secret-access-key"]).For("lake.s3.secret_access_key")}
	l, text = runLake(t, cfg, u)
	require.False(t, l.Healthy, text)
	st := lakeStep(t, l, "storage")
	require.Equal(t, check.StatusFailed, st.Status)
	require.Contains(t, st.Detail, "lake warehouse s3://no-such-bucket/warehouse")
}

// TestLakeCatalog: a store whose migrations are pending warns that the
// lake's catalog is not there yet; a writer role without the lake's
// privileges fails naming them with their GRANTs; a migrated store whose
// lake catalog was dropped fails with the fix `ehrsync migrate`; an
// unreachable store skips the step.
func TestLakeCatalog(t *testing.T) {
	ctx := context.Background()
	db := pgtest.URL(t)
	warehouse := "file://" + t.TempDir()

	l, text := runLake(t, lakeConfig(t, db, warehouse), db)
	require.True(t, l.Healthy, text)
	s := lakeStep(t, l, "catalog")
	require.Equal(t, check.StatusWarning, s.Status)
	require.Contains(t, s.Detail, "missing: schema ehrsync_lake, ehrsync_lake.iceberg_tables")
	require.Contains(t, s.Detail, "`ehrsync migrate --config /etc/ehrsync/ehrsync.yaml` applies them")

	ownerURL := pgtest.Role(t, db, "owner", "GRANT CREATE ON DATABASE "+pgtest.Database(t, db)+" TO %s")
	writerURL := pgtest.Role(t, db, "writer")
	owner := migrated(t, ownerURL)
	writer, err := pgxpool.New(ctx, writerURL)
	require.NoError(t, err)
	defer writer.Close()
	role, err := storedb.CurrentRole(ctx, writer)
	require.NoError(t, err)
	require.NoError(t, storedb.GrantWriter(ctx, owner, role))
	l, text = runLake(t, lakeConfig(t, writerURL, warehouse), writerURL)
	require.True(t, l.Healthy, text)
	require.Equal(t, check.StatusOK, lakeStep(t, l, "catalog").Status)

	w := pgx.Identifier{role}.Sanitize()
	_, err = owner.Exec(ctx, "REVOKE DELETE ON ehrsync_lake.iceberg_tables FROM "+w+"; REVOKE UPDATE ON ehrsync.lake_tables FROM "+w)
	require.NoError(t, err)
	l, text = runLake(t, lakeConfig(t, writerURL, warehouse), writerURL)
	require.False(t, l.Healthy, text)
	p := lakeStep(t, l, "catalog").Problem
	require.Equal(t, "lake_privilege_missing", p.Code)
	require.Equal(t, "the writer role (store.url) lacks DELETE on ehrsync_lake.iceberg_tables, UPDATE on ehrsync.lake_tables", p.Cause)
	require.Equal(t, `GRANT DELETE ON "ehrsync_lake"."iceberg_tables" TO `+w+`; GRANT UPDATE ON "ehrsync"."lake_tables" TO `+w+";", p.Grant)
	require.Contains(t, text, "grant: GRANT DELETE ON")

	_, err = owner.Exec(ctx, "DROP SCHEMA ehrsync_lake CASCADE")
	require.NoError(t, err)
	l, text = runLake(t, lakeConfig(t, writerURL, warehouse), writerURL)
	require.False(t, l.Healthy, text)
	p = lakeStep(t, l, "catalog").Problem
	require.Equal(t, "lake_catalog_missing", p.Code)
	require.Contains(t, p.Cause, "schema ehrsync_lake")
	require.Equal(t, "run `ehrsync migrate --config /etc/ehrsync/ehrsync.yaml`: it creates the lake's catalog schema and tables and grants the writer its privileges", p.Fix)

	l, text = runLake(t, lakeConfig(t, writerURL, warehouse), "")
	require.Equal(t, check.StatusSkipped, lakeStep(t, l, "catalog").Status, text)
	require.True(t, l.Healthy, "the store's own section fails an unreachable store")
}

// TestLakeRESTCatalog: with a REST catalog, the catalog step asks it for
// its configuration with the configured token: a catalog that answers
// passes, one that cannot be reached fails naming its address and the fix,
// and the token is in neither the text nor the JSON.
func TestLakeRESTCatalog(t *testing.T) {
	u := pgtest.URL(t)
	pool, err := pgxpool.New(context.Background(), u)
	require.NoError(t, err)
	defer pool.Close()
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"defaults": {}, "overrides": {}}`))
	}))
	defer srv.Close()
	t.Setenv("LAKE_CATALOG_TOKEN", "rest-token-sentinel")
	cfg := lakeConfig(t, u, "file://"+t.TempDir())
	cfg.Lake.Catalog = &config.LakeCatalog{Type: "rest", URI: srv.URL, Token: config.NewSecret("env:LAKE_CATALOG_TOKEN")}
	cfg.ApplyDefaults()
	l, _ := runLake(t, cfg, u, "rest-token-sentinel")
	require.Equal(t, check.StatusOK, lakeStep(t, l, "catalog").Status)
	require.Equal(t, "Bearer rest-token-sentinel", got)

	srv.Close()
	l, text := runLake(t, cfg, u, "rest-token-sentinel")
	st := lakeStep(t, l, "catalog")
	require.Equal(t, check.StatusFailed, st.Status)
	require.Equal(t, "lake_catalog_unreachable", st.Problem.Code)
	require.Contains(t, text, srv.URL)
	require.False(t, l.Healthy)
}
