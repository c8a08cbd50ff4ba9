package storedb

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The store's roles (docs/operations-store.md). The owner owns the ehrsync
// schema and runs Migrate; the writer (store.url) is what ehrsync syncs
// with, and gets only WriterPrivileges there: it may append to the audit
// and the position history, never change or remove a row of them. When
// the two are one role (the demo, and deployments that give one URL),
// everything works, and Protection says what is not protected.

// Querier runs statements: a pool, a connection or a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// TablePrivileges are the privileges a role holds on one table of the
// ehrsync schema.
type TablePrivileges struct {
	Table      string // in schema ehrsync
	Privileges string // for GRANT: "SELECT, INSERT"
}

// WriterPrivileges are the writer role's privileges on the ehrsync schema's
// tables: exactly these (GrantWriter revokes any other). Every table a
// migration creates is listed here.
var WriterPrivileges = []TablePrivileges{
	{"schema_migrations", "SELECT"},
	{"positions", "SELECT, INSERT, UPDATE, DELETE"},
	{"position_history", "SELECT, INSERT"},
	{"reconciliations", "SELECT, INSERT, UPDATE, DELETE"},
	{"audit", "SELECT, INSERT"},
	{"audit_chain", "SELECT"},
	{"backfills", "SELECT, INSERT, UPDATE, DELETE"},
	{"table_runs", "SELECT, INSERT, UPDATE"},
	{"deferred_indexes", "SELECT, INSERT, UPDATE, DELETE"},
	{"lake_tables", "SELECT, INSERT, UPDATE"},
	{"store_identity", "SELECT"},
}

// LakeSchemaName is the store schema of the change lake's Iceberg catalog.
const LakeSchemaName = "ehrsync_lake"

// LakeWriterPrivileges are the writer role's privileges on the lake
// catalog's tables (schema LakeSchemaName): iceberg-go's SQL catalog reads,
// creates and swaps their rows.
var LakeWriterPrivileges = []TablePrivileges{
	{"iceberg_tables", "SELECT, INSERT, UPDATE, DELETE"},
	{"iceberg_namespace_properties", "SELECT, INSERT, UPDATE, DELETE"},
}

// CurrentRole is the role q's session runs as.
func CurrentRole(ctx context.Context, q Querier) (string, error) {
	var role string
	if err := q.QueryRow(ctx, "SELECT current_user").Scan(&role); err != nil {
		return "", fmt.Errorf("read the store role: %w", err)
	}
	return role, nil
}

// GrantWriter gives writer exactly WriterPrivileges on the ehrsync schema,
// revoking any other privilege it held there (UPDATE, DELETE or TRUNCATE
// on the audit, granted by hand). q runs as the schema's owner, after
// Migrate. Nothing is done when writer is q's own role. It is idempotent.
func GrantWriter(ctx context.Context, q Querier, writer string) error {
	self, err := CurrentRole(ctx, q)
	if err != nil || self == writer {
		return err
	}
	w := pgx.Identifier{writer}.Sanitize()
	stmts := []string{"GRANT USAGE ON SCHEMA ehrsync TO " + w}
	for _, p := range WriterPrivileges {
		t := pgx.Identifier{SchemaName, p.Table}.Sanitize()
		stmts = append(stmts, "REVOKE ALL ON "+t+" FROM "+w, "GRANT "+p.Privileges+" ON "+t+" TO "+w)
	}
	stmts = append(stmts, "GRANT USAGE ON SCHEMA "+LakeSchemaName+" TO "+w)
	for _, p := range LakeWriterPrivileges {
		t := pgx.Identifier{LakeSchemaName, p.Table}.Sanitize()
		stmts = append(stmts, "REVOKE ALL ON "+t+" FROM "+w, "GRANT "+p.Privileges+" ON "+t+" TO "+w)
	}
	stmts = append(stmts,
		"REVOKE ALL ON ALL SEQUENCES IN SCHEMA ehrsync FROM "+w,
		// The sink reserves each commit's history id (its rows'
		// _ehrsync_batch) before it writes them.
		"GRANT USAGE ON SEQUENCE ehrsync.position_history_id_seq TO "+w)
	if _, err := q.Exec(ctx, strings.Join(stmts, ";\n")); err != nil {
		return fmt.Errorf("grant the writer role %s its privileges: %w", writer, err)
	}
	return nil
}

// EnsureSchemas creates each organization schema that does not exist yet,
// owned by pool's role (the owner), and lets writer create its tables
// there (USAGE, CREATE); a schema writer owns already is left as it is. The
// writer then needs no CREATE on the database.
func EnsureSchemas(ctx context.Context, pool *pgxpool.Pool, writer string, schemas ...string) error {
	for _, s := range schemas {
		ident := pgx.Identifier{s}.Sanitize()
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			// As the sink prepares a schema: concurrent creators serialize.
			if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('ehrsync.prepare'), hashtext($1))", ident); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
				return err
			}
			var owner string
			if err := tx.QueryRow(ctx, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = $1", s).Scan(&owner); err != nil {
				return err
			}
			if owner == writer {
				return nil
			}
			_, err := tx.Exec(ctx, "GRANT USAGE, CREATE ON SCHEMA "+ident+" TO "+pgx.Identifier{writer}.Sanitize())
			return err
		})
		if err != nil {
			return fmt.Errorf("create schema %s for the writer role: %w", s, err)
		}
	}
	return nil
}

// appendOnly are the tables no role ehrsync writes with may change, with
// the trigger that refuses it.
var appendOnly = []struct{ table, trigger string }{
	{"audit", "audit_append_only"},
	{"position_history", "position_history_append_only"},
}

// Protection says why the audit and the position history are not
// append-only for q's role: it is a superuser, owns them (or may become
// their owner), holds UPDATE, DELETE or TRUNCATE on them, or their
// append-only trigger is missing or disabled. None: they are protected.
func Protection(ctx context.Context, q Querier) ([]string, error) {
	var problems []string
	var role string
	var super bool
	if err := q.QueryRow(ctx, "SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&role, &super); err != nil {
		return nil, fmt.Errorf("read the store role: %w", err)
	}
	if super {
		problems = append(problems, fmt.Sprintf("role %s is a superuser", role))
	}
	for _, a := range appendOnly {
		var owns, changes, trigger bool
		err := q.QueryRow(ctx, `SELECT pg_has_role(current_user, c.relowner, 'MEMBER'),
				has_table_privilege(c.oid, 'UPDATE') OR has_table_privilege(c.oid, 'DELETE') OR has_table_privilege(c.oid, 'TRUNCATE'),
				EXISTS (SELECT FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname = $2 AND t.tgenabled <> 'D')
			FROM pg_class c WHERE c.oid = to_regclass($1)`, SchemaName+"."+a.table, a.trigger).Scan(&owns, &changes, &trigger)
		if err != nil {
			return nil, fmt.Errorf("read the privileges on %s.%s: %w", SchemaName, a.table, err)
		}
		switch {
		case super:
		case owns:
			problems = append(problems, fmt.Sprintf("role %s owns %s.%s (or may act as its owner)", role, SchemaName, a.table))
		case changes:
			problems = append(problems, fmt.Sprintf("role %s may UPDATE, DELETE or TRUNCATE %s.%s", role, SchemaName, a.table))
		}
		if !trigger {
			problems = append(problems, fmt.Sprintf("the append-only trigger of %s.%s is missing or disabled", SchemaName, a.table))
		}
	}
	return problems, nil
}

// Grant is a privilege a role lacks, with the statement that gives it.
type Grant struct {
	Privilege string // "INSERT on ehrsync.audit"
	Statement string // "GRANT INSERT ON ehrsync.audit TO writer;", run as the schema's owner
}

// MissingWriterPrivileges lists what q's role lacks of the privileges the
// writer needs to sync (those GrantWriter and EnsureSchemas give): USAGE
// on the ehrsync schema, WriterPrivileges on its tables, USAGE on the
// position history's sequence, and USAGE and CREATE on each organization
// schema in orgSchemas; for an organization schema that does not exist
// yet, CREATE on the database when createsSchemas (the writer creates it:
// no owner role creates it first). A table of the ehrsync schema that does
// not exist (migrations not applied) is not judged. None: the role has
// them all.
func MissingWriterPrivileges(ctx context.Context, q Querier, orgSchemas []string, createsSchemas bool) ([]Grant, error) {
	role, err := CurrentRole(ctx, q)
	if err != nil {
		return nil, err
	}
	to := " TO " + pgx.Identifier{role}.Sanitize() + ";"
	var out []Grant
	// has asks the server whether the role holds privilege on the object;
	// a NULL answer (the object does not exist) is no answer.
	has := func(query string, args ...any) (bool, bool, error) {
		var ok *bool
		if err := q.QueryRow(ctx, query, args...).Scan(&ok); err != nil {
			return false, false, fmt.Errorf("read the store role's privileges: %w", err)
		}
		return ok != nil && *ok, ok != nil, nil
	}
	check := func(privilege, statement, query string, args ...any) error {
		ok, known, err := has(query, args...)
		if err == nil && known && !ok {
			out = append(out, Grant{Privilege: privilege, Statement: statement + to})
		}
		return err
	}
	// A schema's privilege: NULL when the schema does not exist.
	const schemaPriv = "SELECT (SELECT has_schema_privilege(n.oid, $2) FROM pg_namespace n WHERE n.nspname = $1)"
	if err := check("USAGE on schema "+SchemaName, "GRANT USAGE ON SCHEMA "+pgx.Identifier{SchemaName}.Sanitize(), schemaPriv, SchemaName, "USAGE"); err != nil {
		return nil, err
	}
	for _, p := range WriterPrivileges {
		t := pgx.Identifier{SchemaName, p.Table}.Sanitize()
		for _, priv := range strings.Split(p.Privileges, ", ") {
			if err := check(priv+" on "+SchemaName+"."+p.Table, "GRANT "+priv+" ON "+t,
				"SELECT has_table_privilege(to_regclass($1), $2)", t, priv); err != nil {
				return nil, err
			}
		}
	}
	seq := pgx.Identifier{SchemaName, "position_history_id_seq"}.Sanitize()
	if err := check("USAGE on sequence "+SchemaName+".position_history_id_seq", "GRANT USAGE ON SEQUENCE "+seq,
		"SELECT has_sequence_privilege(to_regclass($1), 'USAGE')", seq); err != nil {
		return nil, err
	}
	for _, s := range orgSchemas {
		ident := pgx.Identifier{s}.Sanitize()
		_, exists, err := has("SELECT (SELECT true FROM pg_namespace WHERE nspname = $1)", s)
		if err != nil {
			return nil, err
		}
		if !exists {
			var db string
			if createsSchemas {
				if err := q.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
					return nil, fmt.Errorf("read the store database's name: %w", err)
				}
				if err := check("CREATE on database "+db+" (to create schema "+s+")", "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize(),
					"SELECT has_database_privilege(current_database(), 'CREATE')"); err != nil {
					return nil, err
				}
			}
			continue
		}
		for _, priv := range []string{"USAGE", "CREATE"} {
			if err := check(priv+" on schema "+s, "GRANT "+priv+" ON SCHEMA "+ident, schemaPriv, s, priv); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// MayMigrate reports whether q's role may apply migrations to the ehrsync
// schema itself: it owns the schema (or is a member of its owner), or,
// when the schema does not exist yet, may create schemas in the database.
func MayMigrate(ctx context.Context, q Querier) (bool, error) {
	var may bool
	err := q.QueryRow(ctx, `SELECT CASE WHEN n.oid IS NULL THEN has_database_privilege(current_database(), 'CREATE')
		ELSE pg_has_role(current_user, n.nspowner, 'MEMBER') END
		FROM (SELECT 1) AS one LEFT JOIN pg_namespace n ON n.nspname = $1`, SchemaName).Scan(&may)
	if err != nil {
		return false, fmt.Errorf("read whether the store role may migrate: %w", err)
	}
	return may, nil
}
