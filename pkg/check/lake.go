package check

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

// LakeReport is the change lake's checks: what a sync of tables with lake
// on needs of it.
type LakeReport struct {
	Healthy bool `json:"healthy"`
	// Warehouse is lake.warehouse, the URL where the lake's files go.
	Warehouse string   `json:"warehouse"`
	Steps     []Step   `json:"steps"`
	Warnings  []string `json:"warnings,omitempty"`
}

// lakeChecker holds the lake's check.
type lakeChecker struct {
	opts Options
	cfg  *config.Config
	rep  *LakeReport
}

// RunLake checks cfg's change lake: "configuration" (its storage secrets
// resolve: errors name the key and the secret's reference, never a value),
// "catalog" (the store schema ehrsync_lake and the lake's tables exist,
// and the writer role may read and change them; pool is the writer's
// connection to the store, nil when it did not connect) and "storage"
// (lake.ProbeWarehouse: a file written under the warehouse, read back and
// deleted). Each failed step has its fix; a report never holds a secret.
func RunLake(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, opts Options) LakeReport {
	return runLake(ctx, cfg, pool, nil, opts)
}

// runLake is RunLake after the store's checks (store: nil when not run).
func runLake(ctx context.Context, cfg *config.Config, pool *pgxpool.Pool, store *StoreReport, opts Options) LakeReport {
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	rep := LakeReport{Warehouse: cfg.Lake.Warehouse, Steps: []Step{}}
	l := &lakeChecker{opts: opts, cfg: cfg, rep: &rep}
	props, ok := l.configuration()
	switch {
	case pool == nil:
		rep.Steps = append(rep.Steps, Step{Name: "catalog", Status: StatusSkipped, Detail: "the store was not reached (see the store's steps)"})
	case store != nil && !store.Healthy && !stepOK(store.Steps, "migrations"):
		rep.Steps = append(rep.Steps, Step{Name: "catalog", Status: StatusSkipped, Detail: "the store's migrations are not applied (see the store's migrations step)"})
	case cfg.Lake.REST():
		l.restCatalog(ctx, pool)
	default:
		l.catalog(ctx, pool)
	}
	if ok {
		l.storage(ctx, props)
	} else {
		rep.Steps = append(rep.Steps, Step{Name: "storage", Status: StatusSkipped, Detail: "the configuration does not resolve"})
	}
	rep.Healthy = true
	for _, st := range rep.Steps {
		if st.Status == StatusFailed {
			rep.Healthy = false
		}
	}
	return rep
}

// stepOK says whether steps has a step name that did not fail.
func stepOK(steps []Step, name string) bool {
	for _, s := range steps {
		if s.Name == name {
			return s.Status != StatusFailed
		}
	}
	return false
}

func (l *lakeChecker) timed(ctx context.Context, name string, fn func(ctx context.Context) Step) {
	ctx, cancel := context.WithTimeout(ctx, l.opts.StepTimeout)
	defer cancel()
	start := time.Now()
	st := fn(ctx)
	st.Name, st.DurationMS = name, time.Since(start).Milliseconds()
	l.rep.Steps = append(l.rep.Steps, st)
}

// migrate is the command that applies migrations and grants.
func (l *lakeChecker) migrate() string {
	return (&storeChecker{opts: l.opts}).migrate()
}

// configuration resolves the storage's secrets (config.Lake.Props).
func (l *lakeChecker) configuration() (map[string]string, bool) {
	props, err := l.cfg.Lake.Props()
	if err != nil {
		p := Problem{Code: "lake_config", Cause: "the lake's storage settings do not resolve",
			Fix: "fix the setting the detail names (lake.azure, lake.s3)"}
		if c := source.Classify(err); c == source.ClassSecret || c == source.ClassSecretFileOpen {
			p = Problem{Code: c.Code, Cause: c.Cause, Fix: c.Fix}
		}
		// Props' errors name the key and the secret's reference.
		l.rep.Steps = append(l.rep.Steps, Step{Name: "configuration", Status: StatusFailed, Detail: err.Error(), Problem: &p})
		return nil, false
	}
	l.rep.Steps = append(l.rep.Steps, Step{Name: "configuration", Status: StatusOK, Detail: describeStorage(l.cfg.Lake)})
	return props, true
}

// describeStorage says where the warehouse is and how ehrsync signs in to
// it, never with a secret.
func describeStorage(lk config.Lake) string {
	scheme := ""
	if u, err := url.Parse(lk.Warehouse); err == nil {
		scheme = strings.ToLower(u.Scheme)
	}
	switch {
	case scheme == "file":
		return "warehouse " + lk.Warehouse + ": a directory"
	case lk.Azure != nil:
		auth := "the machine's Azure identity"
		switch {
		case lk.Azure.Key.IsSet():
			auth = "the account key (" + lk.Azure.Key.String() + ")"
		case lk.Azure.SASToken.IsSet():
			auth = "a SAS token (" + lk.Azure.SASToken.String() + ")"
		}
		return fmt.Sprintf("warehouse %s: Azure account %s, signed in with %s", lk.Warehouse, lk.Azure.Account, auth)
	case scheme == "s3" || scheme == "s3a":
		auth := "the AWS default credential chain"
		if lk.S3 != nil && lk.S3.AccessKeyID.IsSet() {
			auth = "access keys (" + lk.S3.AccessKeyID.String() + ")"
		}
		return fmt.Sprintf("warehouse %s: S3, signed in with %s", lk.Warehouse, auth)
	}
	return "warehouse " + lk.Warehouse
}

// lakeTables are the store tables the lake reads and writes, with the
// writer's privileges on each.
func lakeTables() []storedb.TablePrivileges {
	var out []storedb.TablePrivileges
	for _, p := range storedb.LakeWriterPrivileges {
		out = append(out, storedb.TablePrivileges{Table: storedb.LakeSchemaName + "." + p.Table, Privileges: p.Privileges})
	}
	for _, p := range storedb.WriterPrivileges {
		if p.Table == "lake_tables" || p.Table == "store_identity" {
			out = append(out, storedb.TablePrivileges{Table: storedb.SchemaName + "." + p.Table, Privileges: p.Privileges})
		}
	}
	return out
}

// catalog checks the lake's store schema and tables, and the writer's
// privileges on them.
func (l *lakeChecker) catalog(ctx context.Context, pool *pgxpool.Pool) {
	l.timed(ctx, "catalog", func(ctx context.Context) Step {
		var missing, grants, names []string
		var usage *bool
		if err := pool.QueryRow(ctx, "SELECT (SELECT has_schema_privilege(n.oid, 'USAGE') FROM pg_namespace n WHERE n.nspname = $1)",
			storedb.LakeSchemaName).Scan(&usage); err != nil {
			return Step{Status: StatusWarning, Detail: notChecked(err)}
		}
		role, err := storedb.CurrentRole(ctx, pool)
		if err != nil {
			return Step{Status: StatusWarning, Detail: notChecked(err)}
		}
		to := " TO " + pgx.Identifier{role}.Sanitize() + ";"
		switch {
		case usage == nil:
			missing = append(missing, "schema "+storedb.LakeSchemaName)
		case !*usage:
			names = append(names, "USAGE on schema "+storedb.LakeSchemaName)
			grants = append(grants, "GRANT USAGE ON SCHEMA "+pgx.Identifier{storedb.LakeSchemaName}.Sanitize()+to)
		}
		for _, t := range lakeTables() {
			schema, name, _ := strings.Cut(t.Table, ".")
			ident := pgx.Identifier{schema, name}.Sanitize()
			var exists bool
			if err := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", ident).Scan(&exists); err != nil {
				return Step{Status: StatusWarning, Detail: notChecked(err)}
			}
			if !exists {
				missing = append(missing, t.Table)
				continue
			}
			for _, priv := range strings.Split(t.Privileges, ", ") {
				var ok bool
				if err := pool.QueryRow(ctx, "SELECT has_table_privilege(to_regclass($1), $2)", ident, priv).Scan(&ok); err != nil {
					return Step{Status: StatusWarning, Detail: notChecked(err)}
				}
				if !ok {
					names = append(names, priv+" on "+t.Table)
					grants = append(grants, "GRANT "+priv+" ON "+ident+to)
				}
			}
		}
		if len(missing) > 0 {
			have, err := storedb.CurrentVersion(ctx, pool)
			detail := "missing: " + strings.Join(missing, ", ")
			if err == nil && have < storedb.LatestVersion() {
				return Step{Status: StatusWarning, Detail: detail + ": the store's migrations that create them are not applied yet (see the store's migrations step); `" + l.migrate() + "` applies them"}
			}
			p := Problem{Code: "lake_catalog_missing",
				Cause: "the change lake's catalog is not in the store (" + strings.Join(missing, ", ") + ")",
				Fix:   "run `" + l.migrate() + "`: it creates the lake's catalog schema and tables and grants the writer its privileges"}
			return Step{Status: StatusFailed, Detail: detail, Problem: &p}
		}
		if len(names) > 0 {
			p := Problem{Code: "lake_privilege_missing",
				Cause: "the writer role (store.url) lacks " + strings.Join(names, ", "),
				Fix:   "run `" + l.migrate() + "` with store.owner_url set to the schema owner's URL: it grants them (or run the GRANTs as the owner)",
				Grant: strings.Join(grants, " ")}
			return Step{Status: StatusFailed, Problem: &p}
		}
		return Step{Status: StatusOK, Detail: "schema " + storedb.LakeSchemaName + " and ehrsync.lake_tables: the writer role may read and change them"}
	})
}

// The lake storage's problems. Their codes are stable.
var (
	lakeStorageRefused = Problem{Code: "lake_storage_refused",
		Cause: "the lake's storage refused to let ehrsync write, read or delete a file under the warehouse"}
	lakeStorageUnreachable = Problem{Code: "lake_storage_unreachable",
		Cause: "the lake's storage did not answer",
		Fix: "check the warehouse's host (and lake.azure.endpoint or lake.s3.endpoint), that this machine resolves and reaches it " +
			"(firewall, private endpoint, proxy); on a slow link raise --step-timeout"}
	lakeStorageInconsistent = Problem{Code: "lake_storage_inconsistent",
		Cause: "the file read back from the warehouse is not the file written",
		Fix:   "check what serves the warehouse (a proxy or gateway that rewrites objects, a file system that drops writes)"}
	lakeStorageFailed = Problem{Code: "lake_storage_failed",
		Cause: "ehrsync could not write a file under the warehouse",
		Fix: "check lake.warehouse: a directory warehouse must be a directory, or a path under one that ehrsync may create; " +
			"abfss://container@account.dfs.core.windows.net/path or s3://bucket/path must name a container or bucket that exists"}
)

// refusedFix is what to do about a storage that refused ehrsync, by the
// warehouse's storage.
func refusedFix(lk config.Lake) string {
	switch {
	case lk.Azure != nil:
		return "check lake.azure: the account name and its key or SAS token (a SAS needs read, write, delete and list on the container), " +
			"or, with neither, that the machine's identity holds Storage Blob Data Contributor on the container"
	case lk.S3 != nil || strings.HasPrefix(strings.ToLower(lk.Warehouse), "s3"):
		return "check lake.s3's access keys, or that the machine's role may s3:PutObject, s3:GetObject, s3:DeleteObject and s3:ListBucket under the warehouse"
	}
	return "let the user ehrsync runs as write to the warehouse directory (chown or chmod it), and check its file system is not mounted read-only"
}

// storage writes, reads back and deletes a probe file under the warehouse.
func (l *lakeChecker) storage(ctx context.Context, props map[string]string) {
	l.timed(ctx, "storage", func(ctx context.Context) Step {
		err := lake.ProbeWarehouse(ctx, l.cfg.Lake.Warehouse, props)
		if err == nil {
			return Step{Status: StatusOK, Detail: "wrote, read back and deleted a file under " + l.cfg.Lake.Warehouse + "/" + lake.ProbeDir}
		}
		var pe *lake.ProbeError
		if !errors.As(err, &pe) {
			p := lakeStorageFailed
			return Step{Status: StatusFailed, Detail: "lake warehouse " + l.cfg.Lake.Warehouse, Problem: &p}
		}
		var p Problem
		switch pe.Kind {
		case lake.ProbeDenied:
			p = lakeStorageRefused
			p.Fix = refusedFix(l.cfg.Lake)
		case lake.ProbeUnreachable:
			p = lakeStorageUnreachable
		case lake.ProbeMismatch:
			p = lakeStorageInconsistent
		default:
			p = lakeStorageFailed
		}
		// A ProbeError's text names the warehouse and a reason without
		// secrets.
		return Step{Status: StatusFailed, Detail: pe.Error(), Problem: &p}
	})
}

// restCatalog checks that the lake's REST catalog answers with the
// configured credentials.
func (l *lakeChecker) restCatalog(ctx context.Context, pool *pgxpool.Pool) {
	l.timed(ctx, "catalog", func(ctx context.Context) Step {
		c := l.cfg.Lake.Catalog
		lc, err := service.LakeConfig(l.cfg)
		if err != nil {
			return Step{Status: StatusFailed, Detail: err.Error(), Problem: &Problem{Code: "secret_unavailable",
				Cause: "a secret of the lake's REST catalog does not resolve", Fix: "set the variable or file it names, or fix its reference"}}
		}
		lk, err := lake.Open(ctx, pool, lc)
		if err != nil {
			return Step{Status: StatusFailed, Detail: err.Error(), Problem: &Problem{Code: "lake_catalog_unreachable",
				Cause: "the lake's REST catalog did not answer with its configuration",
				Fix:   "check lake.catalog.uri and that this machine reaches it, and lake.catalog.credential or token"}}
		}
		lk.Close()
		return Step{Status: StatusOK, Detail: "REST catalog at " + c.URI + " answers"}
	})
}
