package changetracking

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/ehrsync/ehrsync/extractors/internal/dialect"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
)

// The T-SQL the SQLServer source runs (besides the change query, built per
// chunk by changesQuery).
const (
	currentVersionQuery = "SELECT CHANGE_TRACKING_CURRENT_VERSION()"
	minValidQuery       = "SELECT CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(@p1))"
	// snapshotIsolationQuery reads whether ALLOW_SNAPSHOT_ISOLATION is on
	// (snapshot_isolation_state 1).
	snapshotIsolationQuery = "SELECT CAST(CASE WHEN snapshot_isolation_state = 1 THEN 1 ELSE 0 END AS bit) FROM sys.databases WHERE database_id = DB_ID()"
	// probeQuery: the database tracks changes when its current version is
	// not NULL; the table when it has a row in sys.change_tracking_tables;
	// the grants by HAS_PERMS_BY_NAME.
	probeQuery = `SELECT
  CAST(CASE WHEN CHANGE_TRACKING_CURRENT_VERSION() IS NULL THEN 0 ELSE 1 END AS bit) AS database_enabled,
  CAST(CASE WHEN EXISTS (SELECT 1 FROM sys.change_tracking_tables WHERE object_id = OBJECT_ID(@p1)) THEN 1 ELSE 0 END AS bit) AS table_enabled,
  CAST(ISNULL(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'VIEW CHANGE TRACKING'), 0) AS bit) AS view_change_tracking,
  CAST(ISNULL(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'SELECT'), 0) AS bit) AS can_select,
  CAST(CASE WHEN d.snapshot_isolation_state = 1 THEN 1 ELSE 0 END AS bit) AS snapshot_isolation,
  USER_NAME() AS user_name,
  DB_NAME() AS database_name
FROM sys.databases AS d
WHERE d.database_id = DB_ID()`
)

// SQLServer is the Source over a live SQL Server (a go-mssqldb pool without
// "guid conversion"). It is safe for concurrent use.
//
// Each Changes call is one CHANGETABLE(CHANGES …) query joined to the
// current rows, followed by the table's minimum valid version. When the
// database allows snapshot isolation both run in one SNAPSHOT transaction
// (one consistent view of the change table, the rows and the validity);
// otherwise each is its own READ COMMITTED statement, which is still
// correct: the minimum valid version only rises, so a value not above the
// window's start read after the rows proves that cleanup removed nothing the
// read needed, and a row changed during the read is changed again at a
// version in a later window, which reads its full image again.
type SQLServer struct {
	db *sql.DB
	d  dialect.Dialect

	mu       sync.Mutex
	known    bool // snapshot holds the database's setting
	snapshot bool
}

// NewSource returns the Source over db.
func NewSource(db *sql.DB) *SQLServer {
	d, err := dialect.New(schemas.SQLServer)
	if err != nil {
		panic(err) // the SQL Server dialect always exists
	}
	return &SQLServer{db: db, d: d}
}

// CurrentVersion implements Source.
func (s *SQLServer) CurrentVersion(ctx context.Context) (int64, bool, error) {
	var v sql.NullInt64
	if err := s.db.QueryRowContext(ctx, currentVersionQuery).Scan(&v); err != nil {
		return 0, false, err
	}
	return v.Int64, v.Valid, nil
}

// MinValidVersion implements Source.
func (s *SQLServer) MinValidVersion(ctx context.Context, t *schemas.Table) (int64, bool, error) {
	return minValid(ctx, s.db, t)
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func minValid(ctx context.Context, q queryer, t *schemas.Table) (int64, bool, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, minValidQuery, objectName(t)).Scan(&v); err != nil {
		return 0, false, err
	}
	return v.Int64, v.Valid, nil
}

// objectName is t's name as OBJECT_ID takes it: each part quoted on its
// own, so that a dot inside the schema's name cannot move the split.
func objectName(t *schemas.Table) string {
	q := func(s string) string { return "[" + strings.ReplaceAll(s, "]", "]]") + "]" }
	return q(t.Schema) + "." + q(t.Name)
}

// snapshotIsolation reports (once per source) whether the database allows
// SNAPSHOT transactions.
func (s *SQLServer) snapshotIsolation(ctx context.Context) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.known {
		if err := s.db.QueryRowContext(ctx, snapshotIsolationQuery).Scan(&s.snapshot); err != nil {
			return false, fmt.Errorf("read snapshot isolation state: %w", err)
		}
		s.known = true
	}
	return s.snapshot, nil
}

// Changes implements Source.
func (s *SQLServer) Changes(ctx context.Context, q Query) (ChangeSet, error) {
	query, args, err := s.changesQuery(q)
	if err != nil {
		return ChangeSet{}, err
	}
	snap, err := s.snapshotIsolation(ctx)
	if err != nil {
		return ChangeSet{}, err
	}
	var qr queryer = s.db
	var tx *sql.Tx
	if snap {
		if tx, err = s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSnapshot}); err != nil {
			return ChangeSet{}, fmt.Errorf("begin snapshot transaction: %w", err)
		}
		defer func() { _ = tx.Rollback() }()
		qr = tx
	}
	rows, err := qr.QueryContext(ctx, query, args...)
	if err != nil {
		return ChangeSet{}, source.Redact(err)
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return ChangeSet{}, source.Redact(err)
	}
	var cs ChangeSet
	for rows.Next() {
		vals := make([]any, len(cols))
		dest := make([]any, len(cols))
		for i := range vals {
			dest[i] = &vals[i]
		}
		if err := rows.Scan(dest...); err != nil {
			return ChangeSet{}, source.Redact(err)
		}
		cs.Rows = append(cs.Rows, vals)
	}
	if err := rows.Err(); err != nil {
		return ChangeSet{}, source.Redact(err)
	}
	if err := rows.Close(); err != nil {
		return ChangeSet{}, source.Redact(err)
	}
	if cs.MinValid, cs.MinValidOK, err = minValid(ctx, qr, q.Table); err != nil {
		return ChangeSet{}, fmt.Errorf("read minimum valid version after the changes: %w", err)
	}
	if tx != nil {
		if err := tx.Commit(); err != nil {
			return ChangeSet{}, fmt.Errorf("end snapshot transaction: %w", err)
		}
	}
	return cs, nil
}

// changesQuery writes one chunk's query (see Query and ChangeSet):
//
//	SELECT TOP (@p1) ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION,
//	  CAST(CASE WHEN t.[k] IS NULL THEN 0 ELSE 1 END AS bit),
//	  <key columns from ct, other columns from t, in table order>
//	FROM CHANGETABLE(CHANGES [s].[t], @p2) AS ct
//	LEFT JOIN [s].[t] AS t ON t.[k] = ct.[k] … AND t.[practice] IN (…)
//	WHERE ct.SYS_CHANGE_VERSION <= @p…
//	  AND (ct.[k] …) > (@after …)
//	ORDER BY ct.[k] …
//
// The organization filter sits in the join: a row of another practice
// joins nothing and reads as gone, a key-only delete (a no-op in the store
// unless the row was moved out of the organization's practice, when it
// removes it).
//
// Key parameters are bound with the key column's exact type (PITFALLS.md
// P12, P15); the server compares keys in its own order.
func (s *SQLServer) changesQuery(q Query) (string, []any, error) {
	t := q.Table
	if t == nil || len(t.Key) == 0 {
		return "", nil, fmt.Errorf("changes query: no table or no key")
	}
	if q.Limit <= 0 {
		return "", nil, fmt.Errorf("changes query on %s: limit %d is not positive", t.QualifiedName(), q.Limit)
	}
	var args []any
	bind := func(p dialect.Param) string {
		args = append(args, p.Arg)
		ph := "@p" + strconv.Itoa(len(args))
		if p.Cast != "" {
			return "CAST(" + ph + " AS " + p.Cast + ")"
		}
		return ph
	}
	quote := s.d.Quote
	table := s.d.QuoteTable(t)
	firstKey := quote(t.Key[0])
	var b strings.Builder
	b.WriteString("SELECT TOP (" + bind(dialect.Param{Arg: int64(q.Limit)}) + ") ct.SYS_CHANGE_OPERATION, ct.SYS_CHANGE_VERSION, ")
	b.WriteString("CAST(CASE WHEN t." + firstKey + " IS NULL THEN 0 ELSE 1 END AS bit)")
	for _, c := range t.Columns {
		alias := "t."
		if t.IsKey(c.Name) {
			alias = "ct."
		}
		b.WriteString(", " + alias + quote(c.Name))
	}
	b.WriteString("\nFROM CHANGETABLE(CHANGES " + table + ", " + bind(dialect.Param{Arg: q.From}) + ") AS ct")
	b.WriteString("\nLEFT JOIN " + table + " AS t ON ")
	for i, k := range t.Key {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString("t." + quote(k) + " = ct." + quote(k))
	}
	if t.Practice != "" && len(q.Practices) > 0 {
		col, ok := t.Column(t.Practice)
		if !ok {
			return "", nil, fmt.Errorf("changes query on %s: practice column %s does not exist", t.QualifiedName(), t.Practice)
		}
		ps := make([]string, len(q.Practices))
		for i, p := range q.Practices {
			param, err := s.d.PracticeParam(col, schemas.SQLServer, p)
			if err != nil {
				return "", nil, fmt.Errorf("changes query on %s: practice filter: %w", t.QualifiedName(), err)
			}
			ps[i] = bind(param)
		}
		b.WriteString(" AND t." + quote(col.Name) + " IN (" + strings.Join(ps, ", ") + ")")
	}
	b.WriteString("\nWHERE ct.SYS_CHANGE_VERSION <= " + bind(dialect.Param{Arg: q.To}))
	if len(q.After) > 0 {
		if len(q.After) != len(t.Key) {
			return "", nil, fmt.Errorf("changes query on %s: %d key values for %d key columns", t.QualifiedName(), len(q.After), len(t.Key))
		}
		ps := make([]string, len(t.Key))
		for i, k := range t.Key {
			col, ok := t.Column(k)
			if !ok {
				return "", nil, fmt.Errorf("changes query on %s: key column %s does not exist", t.QualifiedName(), k)
			}
			native, err := reader.Native(q.After[i])
			if err != nil {
				return "", nil, fmt.Errorf("changes query on %s: key column %s: %w", t.QualifiedName(), k, err)
			}
			p, err := s.d.Param(col, schemas.SQLServer, native)
			if err != nil {
				return "", nil, fmt.Errorf("changes query on %s: %w", t.QualifiedName(), err)
			}
			ps[i] = bind(p)
		}
		// (k1, k2, …) > (v1, v2, …), expanded: T-SQL has no row values.
		terms := make([]string, len(t.Key))
		for i := range t.Key {
			parts := make([]string, 0, i+1)
			for j := range i {
				parts = append(parts, "ct."+quote(t.Key[j])+" = "+ps[j])
			}
			parts = append(parts, "ct."+quote(t.Key[i])+" > "+ps[i])
			terms[i] = "(" + strings.Join(parts, " AND ") + ")"
		}
		b.WriteString("\n  AND (" + strings.Join(terms, " OR ") + ")")
	}
	b.WriteString("\nORDER BY ")
	for i, k := range t.Key {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("ct." + quote(k))
	}
	return b.String(), args, nil
}

// Probe implements Source.
func (s *SQLServer) Probe(ctx context.Context, t *schemas.Table) (Status, error) {
	st := Status{Table: t.QualifiedName()}
	if err := s.db.QueryRowContext(ctx, probeQuery, objectName(t)).Scan(
		&st.DatabaseEnabled, &st.TableEnabled, &st.ViewChangeTracking, &st.Select,
		&st.SnapshotIsolation, &st.User, &st.Database,
	); err != nil {
		return Status{}, fmt.Errorf("probe change tracking of %s: %w", t.QualifiedName(), err)
	}
	return st, nil
}
