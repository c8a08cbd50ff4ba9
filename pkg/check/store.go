package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

// StoreReport is the store's checks: what `sync` needs of the store before
// it reads a row.
type StoreReport struct {
	Healthy  bool     `json:"healthy"`
	Steps    []Step   `json:"steps"`
	Warnings []string `json:"warnings,omitempty"`
}

// The store's problems. Their codes are stable, like the sources' classes.
var (
	storeUnreachable = Problem{Code: "store_unreachable",
		Cause: "the store did not accept the connection",
		Fix:   "check the host and port of the store URL, that PostgreSQL runs and listens there (listen_addresses), and that firewalls let this machine reach it (nc -vz HOST PORT)"}
	storeTimeout = Problem{Code: "store_timeout",
		Cause: "the store did not answer within the step timeout",
		Fix:   "check that the store answers (nc -vz HOST PORT from this machine) and that firewalls let this machine reach it; on a slow link raise --step-timeout"}
	storeLogin = Problem{Code: "store_login_failed",
		Cause: "the store rejected the login",
		Fix:   "check the user and password in the store URL; on the store check pg_hba.conf allows this user, database and address, and that the role may log in (LOGIN)"}
	storeDatabase = Problem{Code: "store_database_missing",
		Cause: "the store's database does not exist, or the role may not connect to it",
		Fix:   "create the database the store URL names (or fix its name), and GRANT CONNECT on it to the role"}
	storeTLSFailed = Problem{Code: "store_tls",
		Cause: "the TLS handshake with the store failed, or its certificate was not accepted",
		Fix:   "check sslrootcert (the CA that signed the store's certificate, or system) and that the certificate names the host of the store URL"}
	storeSettings = Problem{Code: "store_url_refused",
		Cause: "the store URL or its TLS settings are refused before connecting (the detail names the key and why)",
		Fix:   "fix the setting the detail names; a store on another machine needs sslmode=verify-full (with sslrootcert=FILE for a private CA), or store.insecure_transport: true to accept less"}
)

// storeChecker holds the store's check.
type storeChecker struct {
	opts Options
	cfg  *config.Config
	orgs []config.Org // whose schemas the writer needs
	rep  *StoreReport
}

// migrate is the command that applies migrations and grants, with the
// configuration file when it is known.
func (s *storeChecker) migrate() string {
	path := s.opts.ConfigPath
	if path == "" {
		path = "FILE"
	}
	return "ehrsync migrate --config " + path
}

// RunStore checks the store cfg names, as a sync of orgs meets it: the store URL
// and its transport as every command judges them (service.StoreConfig: a
// store on another machine must verify TLS), the connection (and the
// owner's, with store.owner_url), the TLS the connection got, the ehrsync
// schema's version against this binary's migrations, the writer's
// privileges (storedb.MissingWriterPrivileges), and whether the audit is
// protected from the writer (a warning). Each failed step has its fix; a
// report never holds the URL, a password or a row value.
func RunStore(ctx context.Context, cfg *config.Config, orgs []config.Org, opts Options) StoreReport {
	rep, pool := checkStore(ctx, cfg, orgs, opts)
	if pool != nil {
		pool.Close()
	}
	return rep
}

// checkStore is RunStore, and the writer's pool when it connected (the
// caller closes it), for the lake's checks.
func checkStore(ctx context.Context, cfg *config.Config, orgs []config.Org, opts Options) (StoreReport, *pgxpool.Pool) {
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	rep := StoreReport{Steps: []Step{}}
	s := &storeChecker{opts: opts, cfg: cfg, orgs: orgs, rep: &rep}
	pool, warning := s.connect(ctx, "store.url", "")
	if pool != nil {
		s.tls(ctx, pool, warning)
		if cfg.Store.OwnerURL.IsSet() {
			if owner, _ := s.connect(ctx, "store.owner_url", "owner "); owner != nil {
				owner.Close()
			}
		}
		// The writer's privileges and the audit's protection are judged on
		// the schema this binary writes: after the migrations.
		if s.migrations(ctx, pool) {
			s.privileges(ctx, pool)
			s.audit(ctx, pool)
		}
	}
	rep.Healthy = true
	for _, st := range rep.Steps {
		if st.Status == StatusFailed {
			rep.Healthy = false
		}
	}
	return rep, pool
}

// timed runs fn with the step timeout and records the step it returns
// under name, with its duration.
func (s *storeChecker) timed(ctx context.Context, name string, fn func(ctx context.Context) Step) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.StepTimeout)
	defer cancel()
	start := time.Now()
	st := fn(ctx)
	st.Name, st.DurationMS = name, time.Since(start).Milliseconds()
	s.rep.Steps = append(s.rep.Steps, st)
}

// connect checks the settings of the URL at key and connects with them:
// steps "url" and "connect" (prefixed). The pool is nil when a step
// failed; warning is the transport's, accepted by
// store.insecure_transport.
func (s *storeChecker) connect(ctx context.Context, key, prefix string) (_ *pgxpool.Pool, warning string) {
	pcfg, _, warning, err := service.StoreConfig(key, s.cfg)
	if err != nil {
		p := storeSettings
		if c := source.Classify(err); c == source.ClassSecret || c == source.ClassSecretFileOpen {
			p = Problem{Code: c.Code, Cause: c.Cause, Fix: c.Fix}
		}
		// StoreConfig's errors name the key, the secret's reference, the
		// host and the files, never the URL.
		s.rep.Steps = append(s.rep.Steps, Step{Name: prefix + "url", Status: StatusFailed, Detail: err.Error(), Problem: &p})
		return nil, ""
	}
	host := pcfg.ConnConfig.Host
	s.rep.Steps = append(s.rep.Steps, Step{Name: prefix + "url", Status: StatusOK, Detail: fmt.Sprintf("%s: host %s, database %s, user %s",
		key, host, pcfg.ConnConfig.Database, pcfg.ConnConfig.User)})
	if warning != "" {
		s.rep.Warnings = append(s.rep.Warnings, warning)
	}
	pcfg.MaxConns = 1
	var pool *pgxpool.Pool
	s.timed(ctx, prefix+"connect", func(ctx context.Context) Step {
		pool, err = pgxpool.NewWithConfig(ctx, pcfg)
		if err == nil {
			if err = pool.Ping(ctx); err != nil {
				pool.Close()
				pool = nil
			}
		}
		if err != nil {
			p := storeProblem(ctx, err)
			return Step{Status: StatusFailed, Detail: storeDetail(err), Problem: &p}
		}
		return Step{Status: StatusOK, Detail: "connected as " + pcfg.ConnConfig.User}
	})
	return pool, warning
}

// storeProblem is the store problem of a failed connection.
func storeProblem(ctx context.Context, err error) Problem {
	switch c := source.Classify(err); {
	case c == source.ClassLoginFailed:
		return storeLogin
	case c == source.ClassDatabase:
		return storeDatabase
	case isTLS(c.Code):
		return storeTLSFailed
	case c == source.ClassDNS:
		return storeUnreachable
	}
	var ne net.Error
	if ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return storeTimeout
	}
	return storeUnreachable
}

// storeDetail is what may be shown of a store connection's failure: the
// network error (addresses, the system's reason), the SQLSTATE and, for a
// refused login or database, the server's message (a user and database
// name); never the URL or a password.
func storeDetail(err error) string {
	if d := driverCause(err); d != "" {
		return d
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return dns.Error()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "no answer within the step timeout"
	}
	return ""
}

// notChecked is the detail of a check that could not be made.
func notChecked(err error) string {
	if d := storeDetail(err); d != "" {
		return "not checked: " + d
	}
	return "not checked"
}

// tls records what the connection to the store got: encrypted or not, by
// pg_stat_ssl of its own session. A store refused for its transport never
// gets here; one accepted by store.insecure_transport is a warning.
func (s *storeChecker) tls(ctx context.Context, pool *pgxpool.Pool, warning string) {
	s.timed(ctx, "tls", func(ctx context.Context) Step {
		var ssl bool
		var version *string
		if err := pool.QueryRow(ctx, "SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version); err != nil {
			return Step{Status: StatusWarning, Detail: notChecked(err)}
		}
		st := Step{Status: StatusOK, Detail: "not encrypted (the store is on this machine)"}
		if ssl && version != nil {
			st.Detail = "encrypted (" + *version + ")"
		}
		if warning != "" {
			st.Status = StatusWarning
			st.Detail += "; accepted by store.insecure_transport: true (use sslmode=verify-full)"
		}
		return st
	})
}

// migrations compares the store's ehrsync schema version with this
// binary's and reports whether it is current.
func (s *storeChecker) migrations(ctx context.Context, pool *pgxpool.Pool) bool {
	current := false
	s.timed(ctx, "migrations", func(ctx context.Context) Step {
		have, err := storedb.CurrentVersion(ctx, pool)
		want := storedb.LatestVersion()
		switch {
		case err != nil:
			p := Problem{Code: "store_schema_unreadable", Cause: "the store's ehrsync.schema_migrations could not be read by the writer role",
				Fix: "run `" + s.migrate() + "`: it creates the schema and grants the writer what it needs"}
			return Step{Status: StatusFailed, Detail: storeDetail(err), Problem: &p}
		case have > want:
			p := Problem{Code: "store_schema_newer", Cause: (&storedb.VersionError{Database: have, Binary: want}).Error(),
				Fix: "run the ehrsync release that migrated the store (or a newer one); this binary refuses to write to it"}
			return Step{Status: StatusFailed, Detail: fmt.Sprintf("version %d, this binary's %d", have, want), Problem: &p}
		case have < want:
			detail := fmt.Sprintf("version %d, this binary's %d: %d migrations not applied", have, want, want-have)
			// Every start migrates as store.owner_url's role, or as
			// store.url's when there is no owner URL: only a writer that
			// may not migrate fails.
			by := "store.owner_url's role"
			may := s.cfg.Store.OwnerURL.IsSet()
			if !may {
				by = "store.url's role"
				if may, err = storedb.MayMigrate(ctx, pool); err != nil {
					return Step{Status: StatusWarning, Detail: detail + "; whether sync may apply them is " + notChecked(err)}
				}
			}
			if may {
				return Step{Status: StatusWarning, Detail: detail + ": sync, run and backfill apply them at start as " + by + "; `" + s.migrate() + "` applies them now"}
			}
			p := Problem{Code: "store_migrations_pending",
				Cause: fmt.Sprintf("%d of this binary's %d migrations are not applied to the store's ehrsync schema, and store.url's role may not apply them (it does not own the schema), so sync refuses to start", want-have, want),
				Fix:   "run `" + s.migrate() + "` with store.owner_url set to the schema owner's URL (docs/operations-store.md)"}
			return Step{Status: StatusFailed, Detail: detail, Problem: &p}
		}
		current = true
		return Step{Status: StatusOK, Detail: fmt.Sprintf("version %d, this binary's", have)}
	})
	return current
}

// privileges checks that the writer role (store.url's) holds what a sync
// needs on the ehrsync schema and the organizations' schemas.
func (s *storeChecker) privileges(ctx context.Context, pool *pgxpool.Pool) {
	s.timed(ctx, "privileges", func(ctx context.Context) Step {
		orgs := make([]string, len(s.orgs))
		for i, o := range s.orgs {
			orgs[i] = config.StoreSchema(o.Name)
		}
		ownerCreates := s.cfg.Store.OwnerURL.IsSet()
		missing, err := storedb.MissingWriterPrivileges(ctx, pool, orgs, !ownerCreates)
		if err != nil {
			return Step{Status: StatusWarning, Detail: notChecked(err)}
		}
		if len(missing) == 0 {
			return Step{Status: StatusOK, Detail: "the writer role has what sync needs"}
		}
		var names, grants []string
		for _, g := range missing {
			names, grants = append(names, g.Privilege), append(grants, g.Statement)
		}
		p := Problem{Code: "store_privilege_missing",
			Cause: "the writer role (store.url) lacks " + strings.Join(names, ", "),
			Fix:   "run the GRANTs as the ehrsync schema's owner, or set store.owner_url to the owner's URL and run `" + s.migrate() + "`, which grants them",
			Grant: strings.Join(grants, " ")}
		if ownerCreates {
			p.Fix = "run `" + s.migrate() + "`: it grants the writer its privileges as store.owner_url's role (or run the GRANTs as the owner)"
		}
		return Step{Status: StatusFailed, Problem: &p}
	})
}

// audit warns when the writer role could change or remove audit and
// position history rows (storedb.Protection).
func (s *storeChecker) audit(ctx context.Context, pool *pgxpool.Pool) {
	s.timed(ctx, "audit", func(ctx context.Context) Step {
		problems, err := storedb.Protection(ctx, pool)
		switch {
		case err != nil:
			return Step{Status: StatusWarning, Detail: notChecked(err)}
		case len(problems) > 0:
			return Step{Status: StatusWarning, Detail: service.AuditUnprotected + " (" + strings.Join(problems, "; ") +
				"): give store.url a writer role and store.owner_url the schema's owner (docs/operations-store.md)"}
		}
		return Step{Status: StatusOK, Detail: "append-only for the writer role"}
	})
}

// driverCause is what the database driver said about a refused login or
// database: the SQL Server error number and message, or the SQLSTATE and
// message (a user, database or address name, never a password); for other
// database errors only the number or SQLSTATE (their messages can quote
// values). "" for errors that are not the server's.
func driverCause(err error) string {
	c := source.Classify(err)
	login := c == source.ClassLoginFailed || c == source.ClassDatabase
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if login {
			return fmt.Sprintf("(SQLSTATE %s: %s)", pg.Code, pg.Message)
		}
		return fmt.Sprintf("(SQLSTATE %s)", pg.Code)
	}
	if n, msg, ok := sqlServerError(err); ok {
		if login {
			return fmt.Sprintf("(SQL Server error %d: %s)", n, msg)
		}
		return fmt.Sprintf("(SQL Server error %d)", n)
	}
	return ""
}
