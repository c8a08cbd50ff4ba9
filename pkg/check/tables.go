package check

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
)

// table checks one configured table; each query has the step timeout.
func (c *checker) table(ctx context.Context, db *sql.DB, tc config.Table) TableReport {
	src := c.org.Source
	schema, name := tc.SchemaName()
	t := TableReport{Name: schema + "." + name, Status: StatusOK}
	fail := func(p *Problem) {
		if p != nil {
			t.Problems = append(t.Problems, *p)
		}
		t.Status = StatusFailed
	}
	q := func(fn func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
		defer cancel()
		return fn(ctx)
	}
	ms := src.Dialect == config.SQLServer
	qname := pgx.Identifier{schema, name}.Sanitize()
	if ms {
		qname = "[" + strings.ReplaceAll(schema, "]", "]]") + "].[" + strings.ReplaceAll(name, "]", "]]") + "]"
	}
	// Exists.
	if err := q(func(ctx context.Context) error {
		query := "SELECT to_regclass($1) IS NOT NULL"
		if ms {
			query = "SELECT CAST(CASE WHEN OBJECT_ID(@p1, 'U') IS NULL THEN 0 ELSE 1 END AS bit)"
		}
		return db.QueryRowContext(ctx, query, qname).Scan(&t.Exists)
	}); err != nil {
		fail(c.problem(err))
		return t
	}
	if !t.Exists {
		fail(&Problem{Code: "table_missing", Cause: "the table does not exist at the source, or the login cannot see it",
			Fix:   "check the table name in the configuration; the login needs at least SELECT on it to see it (see the GRANT below)",
			Grant: grantSelect(src, qname)})
		return t
	}
	// Key.
	if err := q(func(ctx context.Context) error {
		query := `SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
WHERE i.indrelid = to_regclass($1) AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)`
		if ms {
			query = `SELECT c.name FROM sys.indexes i
JOIN sys.index_columns ic ON ic.object_id = i.object_id AND ic.index_id = i.index_id
JOIN sys.columns c ON c.object_id = ic.object_id AND c.column_id = ic.column_id
WHERE i.object_id = OBJECT_ID(@p1) AND i.is_primary_key = 1 ORDER BY ic.key_ordinal`
		}
		rows, err := db.QueryContext(ctx, query, qname)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var k string
			if err := rows.Scan(&k); err != nil {
				return err
			}
			t.Key = append(t.Key, k)
		}
		return rows.Err()
	}); err != nil {
		t.Notes = append(t.Notes, "primary key not checked: "+c.problem(err).Cause)
	} else if len(t.Key) == 0 {
		t.Notes = append(t.Notes, "no primary key at the source: ehrsync pages and applies changes by the catalog's key, which must be unique")
	}
	// CDC and Change Tracking (SQL Server only).
	if ms {
		var cdc, ct bool
		if err := q(func(ctx context.Context) error {
			return db.QueryRowContext(ctx, `SELECT t.is_tracked_by_cdc,
CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.change_tracking_tables ct WHERE ct.object_id = t.object_id) THEN 1 ELSE 0 END AS bit)
FROM sys.tables t WHERE t.object_id = OBJECT_ID(@p1)`, qname).Scan(&cdc, &ct)
		}); err != nil {
			t.CDC, t.CT = "unknown", "unknown"
			t.Notes = append(t.Notes, "CDC/CT status not checked: "+c.problem(err).Cause)
		} else {
			t.CDC, t.CT = onOff(cdc), onOff(ct)
		}
	}
	// The table as a sync reads it (engine.Resolve): the catalog's, refused
	// when the organization filters by practice and the table does not
	// name its practice column, checked against the source's columns and
	// types (schema drift), projected to the allow-list; then its plan.
	strategy := tc.Strategy
	if c.opts.Catalog != nil {
		if rt := c.resolve(ctx, db, tc, &t, fail); rt != nil && c.opts.Planner != nil {
			plan, err := c.plan(ctx, db, tc, rt)
			if err != nil {
				p := c.problem(err)
				if p.Code == source.ClassUnknown.Code {
					p = &Problem{Code: "plan_failed", Cause: "the table's strategy cannot be planned: " + err.Error(),
						Fix: "fix the table's strategy, cursor or columns in the configuration"}
				}
				fail(p)
			} else {
				strategy = plan.Strategy
				t.Strategy, t.Why = string(plan.Strategy), plan.Why.String()
				switch {
				case plan.SeesDeletes():
				case tc.ReconcileEvery > 0 && plan.Keys != nil:
					t.Notes = append(t.Notes, fmt.Sprintf("the strategy does not see deletes; reconcile_every (%s) finds them by comparing keys", tc.ReconcileEvery))
				default:
					t.Blind = "deletes (set reconcile_every to find them by comparing keys)"
				}
			}
		}
	}
	// Permissions.
	t.Permissions = c.permissions(ctx, db, q, tc, qname, strategy, t)
	for _, p := range t.Permissions {
		switch {
		case p.Needed && p.Granted != nil && !*p.Granted && p.Name == cdcOnDatabase:
			fail(&Problem{Code: source.ClassCDCDisabled.Code,
				Cause: "CDC is not enabled on the database (it has no cdc schema), so " + t.Name + " has no capture instance",
				Fix:   "enable CDC on the database and the table as a sysadmin or database owner, or use another strategy", Grant: p.Grant})
		case p.Needed && p.Granted != nil && !*p.Granted:
			fail(&Problem{Code: source.ClassPermission.Code, Cause: "the login lacks " + p.Name + " on " + t.Name,
				Fix: "run the GRANT as a database owner", Grant: p.Grant})
		case p.Needed && p.Granted == nil && t.Status == StatusOK:
			t.Status = StatusWarning
		}
	}
	return t
}

func onOff(b bool) string {
	if b {
		return "enabled"
	}
	return "disabled"
}

// resolve is the table a sync of tc reads (engine.Resolve, with the
// planner's describer as sync has it): nil after recording the problem
// with fail when the catalog lacks it, the organization's practice filter
// refuses it, or the source table no longer matches it. Columns that
// changed type or were added (and are read as they are now), and columns
// that look like a practice column the catalog does not name, are notes.
func (c *checker) resolve(ctx context.Context, db *sql.DB, tc config.Table, t *TableReport, fail func(*Problem)) *schemas.Table {
	ct, ok := c.opts.Catalog.Table(tc.Name)
	if !ok {
		fail(&Problem{Code: "table_not_in_catalog", Cause: notInCatalog(tc.Name),
			Fix: "fix the table's name, or describe the table in a catalog file listed under catalog:"})
		return nil
	}
	if like := ct.PracticeLike(); len(like) > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("column %s looks like a practice column, but the catalog does not name it "+
			"as the table's practice column: practice_ids do not filter this table's rows "+
			"(name it with practice: in the table's catalog file)", strings.Join(like, ", ")))
		if t.Status == StatusOK {
			t.Status = StatusWarning
		}
	}
	d, _ := c.opts.Planner.(engine.Describer)
	ctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
	defer cancel()
	rt, drift, err := engine.Resolve(ctx, d, db, c.org, tc, ct)
	switch {
	case errors.Is(err, schemas.ErrPracticeUndeclared):
		fail(&Problem{Code: "practice_undeclared", Cause: err.Error(),
			Fix: "declare the table's practice column (or practice: none) in its catalog file; until then sync refuses the table"})
		return nil
	case errors.Is(err, schemas.ErrSourceChanged):
		// The problems name tables, columns and types, never values.
		fail(&Problem{Code: "schema_drift", Cause: strings.ReplaceAll(err.Error(), "\n", "; "),
			Fix: "each change above names its fix: leave the column out with the table's columns allow-list, or update the table's catalog file; until then sync stops this table"})
		return nil
	case err != nil:
		p := c.problem(err)
		if p.Code == source.ClassUnknown.Code {
			p = &Problem{Code: "columns_invalid", Cause: err.Error(),
				Fix: "name only columns of the table's catalog entry in its columns allow-list"}
		}
		fail(p)
		return nil
	}
	for _, ch := range drift.Changed {
		t.Notes = append(t.Notes, "the source changed the type of column "+ch+": sync reads it as it is now and widens the store column")
	}
	if len(drift.Added) > 0 {
		t.Notes = append(t.Notes, "allow-listed columns new at the source are read and added to the store: "+strings.Join(drift.Added, ", "))
	}
	return rt
}

// notInCatalog says that the catalog has no table name.
func notInCatalog(name string) string {
	return fmt.Sprintf("table %q is in neither the NextGen catalog nor a file of catalog:", name)
}

func (c *checker) plan(ctx context.Context, db *sql.DB, tc config.Table, t *schemas.Table) (extractors.Plan, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
	defer cancel()
	return c.opts.Planner.Plan(ctx, extractors.PlanRequest{
		Bounds:  extractors.Bounds{Practices: c.org.Source.PracticeIDs, ChunkRows: 1000, ChunkBytes: 1 << 20, QueryTimeout: c.opts.StepTimeout},
		DB:      db,
		Dialect: schemas.Dialect(c.org.Source.Dialect),
		Table:   t,
		Config:  tc,
	})
}

// permissions lists what the strategy needs (and, on SQL Server, what CDC
// or Change Tracking would need when they are enabled on the table).
func (c *checker) permissions(ctx context.Context, db *sql.DB, q func(func(context.Context) error) error, tc config.Table, qname string, strategy config.Strategy, t TableReport) []Permission {
	src := c.org.Source
	user := src.User
	var out []Permission
	check := func(name string, needed bool, grant string, query string, args ...any) {
		p := Permission{Name: name, Needed: needed}
		var ok sql.NullBool
		err := q(func(ctx context.Context) error { return db.QueryRowContext(ctx, query, args...).Scan(&ok) })
		switch {
		case err != nil || !ok.Valid:
			// Not checkable (no rights to look): say so.
		default:
			g := ok.Bool
			p.Granted = &g
		}
		if p.Granted == nil || !*p.Granted {
			p.Grant = grant
		}
		out = append(out, p)
	}
	if src.Dialect == config.Postgres {
		check("SELECT", true, grantSelect(src, qname), "SELECT has_table_privilege(to_regclass($1), 'SELECT')", qname)
		return out
	}
	// Every strategy needs SELECT: CDC's first run snapshots the table, and
	// sys.fn_cdc_get_min_lsn answers no LSN without SELECT on it.
	check("SELECT", true, grantSelect(src, qname), "SELECT CAST(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'SELECT') AS bit)", qname)
	if t.CT == "enabled" || strategy == config.StrategyChangeTracking {
		check("VIEW CHANGE TRACKING", strategy == config.StrategyChangeTracking,
			fmt.Sprintf("GRANT VIEW CHANGE TRACKING ON %s TO %s;", qname, msIdent(user)),
			"SELECT CAST(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'VIEW CHANGE TRACKING') AS bit)", qname)
	}
	if t.CDC == "enabled" || strategy == config.StrategyCDC {
		needed := strategy == config.StrategyCDC
		// The capture instance's gating role (P17): without membership the
		// change functions return nothing rather than failing.
		var role sql.NullString
		err := q(func(ctx context.Context) error {
			return db.QueryRowContext(ctx, "SELECT TOP 1 role_name FROM cdc.change_tables WHERE source_object_id = OBJECT_ID(@p1) ORDER BY create_date DESC", qname).Scan(&role)
		})
		var ms mssql.Error
		if errors.As(err, &ms) && ms.Number == 208 {
			// No cdc schema: CDC is not enabled on the database (checked,
			// not a matter of rights); sys.sp_cdc_enable_db creates it.
			no := false
			schema, name := tc.SchemaName()
			out = append(out, Permission{Name: cdcOnDatabase, Needed: needed, Granted: &no,
				Grant: "EXEC sys.sp_cdc_enable_db; EXEC sys.sp_cdc_enable_table @source_schema = " + msLiteral(schema) +
					", @source_name = " + msLiteral(name) + ", @role_name = NULL;"})
			return out
		}
		check("SELECT ON SCHEMA cdc", needed, fmt.Sprintf("GRANT SELECT ON SCHEMA::cdc TO %s;", msIdent(user)),
			"SELECT CAST(HAS_PERMS_BY_NAME('cdc', 'SCHEMA', 'SELECT') AS bit)")
		switch {
		case err != nil && !errors.Is(err, sql.ErrNoRows):
			out = append(out, Permission{Name: "CDC gating role", Needed: needed,
				Grant: "-- could not read cdc.change_tables; GRANT SELECT ON SCHEMA::cdc first, then re-run check"})
		case role.Valid && role.String != "":
			check("member of CDC gating role "+role.String, needed,
				fmt.Sprintf("ALTER ROLE %s ADD MEMBER %s;", msIdent(role.String), msIdent(user)),
				"SELECT CAST(IS_ROLEMEMBER(@p1) AS bit)", role.String)
		}
	}
	return out
}

// captureAgent checks that the CDC capture job runs (P6), where the login
// may look. end_time is the server's local time without a zone, so the age
// of the last log scan is computed on the server.
func (c *checker) captureAgent(ctx context.Context, db *sql.DB) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
	defer cancel()
	var age sql.NullInt64
	var errorsLastHour int
	err := db.QueryRowContext(ctx, `SELECT (SELECT DATEDIFF(second, MAX(end_time), GETDATE()) FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0),
(SELECT COUNT(*) FROM sys.dm_cdc_errors WHERE entry_time > DATEADD(hour, -1, GETDATE()))`).Scan(&age, &errorsLastHour)
	s := Step{Name: "capture agent", DurationMS: time.Since(start).Milliseconds()}
	since := time.Duration(age.Int64) * time.Second
	switch {
	case err != nil && source.Classify(err) == source.ClassPermission:
		s.Status = StatusWarning
		s.Detail = fmt.Sprintf("not checked: the login may not read sys.dm_cdc_log_scan_sessions (GRANT VIEW DATABASE STATE TO %s; to let check see the capture job)", msIdent(c.org.Source.User))
	case err != nil:
		s.Status, s.Problem = StatusWarning, c.problem(err)
		s.Detail = "not checked"
	case !age.Valid && errorsLastHour == 0:
		s.Status = StatusWarning
		s.Detail = "unknown: no finished log scan on record (the server restarted or failed over recently, or this is an Availability Group secondary: check the capture job on the primary)"
	case !age.Valid || since > 15*time.Minute || errorsLastHour > 0:
		s.Status = StatusFailed
		s.Problem = c.problem(source.ErrCaptureAgentStopped)
		if age.Valid {
			s.Detail = fmt.Sprintf("last log scan session ended %s ago; %d capture errors in the last hour", since, errorsLastHour)
		} else {
			s.Detail = fmt.Sprintf("no finished log scan on record; %d capture errors in the last hour", errorsLastHour)
		}
	default:
		s.Status = StatusOK
		s.Detail = fmt.Sprintf("last log scan session ended %s ago", since)
	}
	c.rep.Steps = append(c.rep.Steps, s)
}

// cdcOnDatabase is the pseudo-permission of a database without CDC.
const cdcOnDatabase = "CDC enabled on the database"

// msLiteral is s as a T-SQL Unicode string literal.
func msLiteral(s string) string { return "N'" + strings.ReplaceAll(s, "'", "''") + "'" }

func grantSelect(src config.Source, qname string) string {
	if src.Dialect == config.SQLServer {
		return fmt.Sprintf("GRANT SELECT ON %s TO %s;", qname, msIdent(src.User))
	}
	return fmt.Sprintf("GRANT SELECT ON %s TO %s;", qname, pgx.Identifier{src.User}.Sanitize())
}

func msIdent(s string) string { return "[" + strings.ReplaceAll(s, "]", "]]") + "]" }
