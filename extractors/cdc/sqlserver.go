package cdc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/ehrsync/ehrsync/extractors/internal/dialect"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// SQLServer reads CDC data from a SQL Server database through a go-mssqldb
// pool (without "guid conversion": GUIDs must arrive in wire order). Every
// statement is one autocommit query at the connection's isolation (READ
// COMMITTED) under QueryTimeout.
//
// The login needs SELECT on the cdc schema (or membership of the capture
// instances' gating role, when they have one: without it cdc.change_tables
// still lists the instance but reading its change table fails) and, for
// Agent, VIEW DATABASE STATE.
type SQLServer struct {
	DB           *sql.DB
	QueryTimeout time.Duration // 0: DefaultQueryTimeout
}

var _ AgentProber = (*SQLServer)(nil)

func (s *SQLServer) timeout() time.Duration {
	if s.QueryTimeout > 0 {
		return s.QueryTimeout
	}
	return DefaultQueryTimeout
}

// Statements, exported to the golden tests through the transcript.
const (
	instancesSQL = `SELECT ct.capture_instance, ct.start_lsn, cc.column_name
FROM cdc.change_tables AS ct
JOIN sys.tables AS t ON t.object_id = ct.source_object_id
JOIN sys.schemas AS s ON s.schema_id = t.schema_id
JOIN cdc.captured_columns AS cc ON cc.object_id = ct.object_id
WHERE s.name = @p1 AND t.name = @p2
ORDER BY ct.start_lsn, ct.capture_instance, cc.column_ordinal`
	// commandIDSQL reads whether a change table has __$command_id (NULL:
	// no such column).
	commandIDSQL = `SELECT COL_LENGTH(@p1, '__$command_id')`
	minLSNSQL    = `SELECT sys.fn_cdc_get_min_lsn(@p1)`
	// maxLSNSQL is the highest LSN the capture process has harvested (the
	// largest start_lsn of cdc.lsn_time_mapping); it needs only public.
	maxLSNSQL = `SELECT sys.fn_cdc_get_max_lsn()`
	// agentSQL reads how many seconds ago, by the server's clock, the newest
	// log scan session ended (session 0 aggregates the others; end_time is
	// server-local and zone-less, so the age is computed on the server), and
	// the capture errors; both need VIEW DATABASE STATE.
	agentSQL = `SELECT
  (SELECT DATEDIFF(second, MAX(end_time), GETDATE()) FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0),
  (SELECT COUNT(*) FROM sys.dm_cdc_errors)`
)

// Instances implements Source.
func (s *SQLServer) Instances(ctx context.Context, schema, table string) ([]Instance, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	rows, err := s.DB.QueryContext(ctx, instancesSQL, schema, table)
	if isInvalidObject(err) {
		// The database is not enabled for CDC: sys.sp_cdc_enable_db creates
		// the cdc schema and its metadata tables, so without it
		// cdc.change_tables does not exist (error 208). No instances.
		return nil, nil
	}
	if isPermissionDenied(err) {
		return nil, &PermissionError{Object: "the CDC metadata (cdc.change_tables)", Grant: grantCDC, Err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("read capture instances: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var (
			name, col string
			start     []byte
		)
		if err := rows.Scan(&name, &start, &col); err != nil {
			return nil, fmt.Errorf("read capture instances: %w", err)
		}
		if n := len(out); n == 0 || out[n-1].Name != name {
			lsn, err := lsnOf(start)
			if err != nil {
				return nil, fmt.Errorf("capture instance %s: start_lsn: %w", name, err)
			}
			out = append(out, Instance{Name: name, StartLSN: lsn})
		}
		out[len(out)-1].Columns = append(out[len(out)-1].Columns, col)
	}
	if err := rows.Err(); err != nil {
		if isInvalidObject(err) {
			return nil, nil
		}
		if isPermissionDenied(err) {
			return nil, &PermissionError{Object: "the CDC metadata (cdc.change_tables)", Grant: grantCDC, Err: err}
		}
		return nil, fmt.Errorf("read capture instances: %w", err)
	}
	for i := range out {
		var n sql.NullInt64
		if err := s.DB.QueryRowContext(ctx, commandIDSQL, "[cdc]."+quote(out[i].Name+"_CT")).Scan(&n); err != nil {
			return nil, fmt.Errorf("read the columns of capture instance %s: %w", out[i].Name, err)
		}
		out[i].NoCommandID = !n.Valid
	}
	return out, nil
}

// MinLSN implements Source.
func (s *SQLServer) MinLSN(ctx context.Context, instance string) (watermarks.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	var b []byte
	if err := s.DB.QueryRowContext(ctx, minLSNSQL, instance).Scan(&b); err != nil {
		return watermarks.LSN{}, fmt.Errorf("read minimum LSN of %s: %w", instance, err)
	}
	return lsnOf(b)
}

// MaxLSN implements Source.
func (s *SQLServer) MaxLSN(ctx context.Context) (watermarks.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	var b []byte
	if err := s.DB.QueryRowContext(ctx, maxLSNSQL).Scan(&b); err != nil {
		return watermarks.LSN{}, fmt.Errorf("read maximum harvested LSN: %w", err)
	}
	return lsnOf(b)
}

// Changes implements Source. It reads cdc.<instance>_CT directly: TOP (n),
// the tie-safe (lsn, command_id, seqval, op) > predicate, LSNs bound as
// binary(10). It needs __$command_id (SQL Server 2016 and later, or the
// 2012/2014 cumulative updates of KB 3030352).
func (s *SQLServer) Changes(ctx context.Context, q Query) ([]Change, error) {
	query, args, err := changesSQL(q)
	if err != nil {
		return nil, fmt.Errorf("read change table of %s: %w", q.Instance, err)
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	rows, err := s.DB.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("read change table of %s: %w", q.Instance, source.Redact(err))
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var (
			lsn, seq []byte
			cmd      sql.NullInt64
			op       int64
			ours     = true
		)
		vals := make([]any, len(q.Columns))
		dest := make([]any, 0, 5+len(vals))
		dest = append(dest, &lsn, &cmd, &seq, &op)
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if q.Practice.Name != "" && len(q.Practices) > 0 {
			dest = append(dest, &ours)
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read change table of %s: %w", q.Instance, source.Redact(err))
		}
		if cmd.Int64 < 0 || cmd.Int64 > math.MaxInt32 {
			return nil, fmt.Errorf("read change table of %s: __$command_id %d is out of range", q.Instance, cmd.Int64)
		}
		c := Change{CommandID: int32(cmd.Int64), Op: int8(op), Values: vals, Foreign: !ours}
		if c.LSN, err = lsnOf(lsn); err != nil {
			return nil, fmt.Errorf("read change table of %s: __$start_lsn: %w", q.Instance, err)
		}
		if c.Seqval, err = lsnOf(seq); err != nil {
			return nil, fmt.Errorf("read change table of %s: __$seqval: %w", q.Instance, err)
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read change table of %s: %w", q.Instance, source.Redact(err))
	}
	return out, nil
}

// changesSQL builds the chunk query. Positions are bound as binary(10), the
// command id as int and the operation as tinyint through typed local
// variables. Rows are ordered by (__$start_lsn, __$command_id, __$seqval,
// __$operation): __$command_id is the order of the operations within a
// transaction, __$seqval is not (Microsoft, cdc.<capture_instance>_CT; KB
// 3030352). The resume predicate reads a NULL __$command_id as 0, where
// ORDER BY sorts NULL, so that the two agree.
func changesSQL(q Query) (string, []any, error) {
	var b strings.Builder
	args := []any{int64(q.Limit), q.To[:]}
	b.WriteString("DECLARE @n bigint = @p1, @to binary(10) = @p2")
	after := q.After
	if !after.LSN.IsZero() {
		args = append(args, after.LSN[:])
		b.WriteString(", @lsn binary(10) = @p3")
		if after.InTransaction() {
			args = append(args, int64(after.CommandID), after.Seqval[:], int64(after.Op))
			b.WriteString(", @cmd int = @p4, @seqval binary(10) = @p5, @op tinyint = @p6")
		}
	}
	// Without __$command_id every row reads as command 0 and the order is
	// (lsn, seqval, operation).
	cmd, order := "[__$command_id]", "[__$start_lsn], [__$command_id], [__$seqval], [__$operation]"
	cmdOrZero := "ISNULL([__$command_id], 0)"
	if q.NoCommandID {
		cmd, order, cmdOrZero = "CAST(NULL AS int)", "[__$start_lsn], [__$seqval], [__$operation]", "0"
	}
	// The organization's practices: ours is the predicate that a row is of
	// one of them; another practice's columns are NULL at the source, but
	// for its key.
	ours := ""
	if q.Practice.Name != "" && len(q.Practices) > 0 {
		ps := make([]string, len(q.Practices))
		for i, p := range q.Practices {
			param, err := tsql.PracticeParam(q.Practice, schemas.SQLServer, p)
			if err != nil {
				return "", nil, fmt.Errorf("practice filter: %w", err)
			}
			args = append(args, param.Arg)
			ps[i] = "@p" + strconv.Itoa(len(args))
			if param.Cast != "" {
				ps[i] = "CAST(" + ps[i] + " AS " + param.Cast + ")"
			}
		}
		ours = quote(q.Practice.Name) + " IN (" + strings.Join(ps, ", ") + ")"
	}
	b.WriteString(";\nSELECT TOP (@n) [__$start_lsn], " + cmd + ", [__$seqval], [__$operation]")
	for _, c := range q.Columns {
		if ours == "" || slices.ContainsFunc(q.Key, func(k string) bool { return strings.EqualFold(k, c) }) {
			b.WriteString(", " + quote(c))
		} else {
			b.WriteString(", CASE WHEN " + ours + " THEN " + quote(c) + " END")
		}
	}
	if ours != "" {
		b.WriteString(", CAST(CASE WHEN " + ours + " THEN 1 ELSE 0 END AS bit)")
	}
	b.WriteString("\nFROM [cdc]." + quote(q.Instance+"_CT") + " WITH (READCOMMITTED)")
	b.WriteString("\nWHERE [__$operation] IN (1, 2, 4) AND [__$start_lsn] <= @to")
	switch {
	case after.LSN.IsZero():
	case after.InTransaction():
		b.WriteString("\n  AND ([__$start_lsn] > @lsn OR ([__$start_lsn] = @lsn AND (" + cmdOrZero + " > @cmd" +
			" OR (" + cmdOrZero + " = @cmd AND ([__$seqval] > @seqval OR ([__$seqval] = @seqval AND [__$operation] > @op))))))")
	default:
		b.WriteString("\n  AND [__$start_lsn] > @lsn")
	}
	if ours != "" {
		// Another practice's update may be a row moving out of the
		// organization; a delete image without a practice (P16) may be
		// ours. Both are read as key-only deletes.
		b.WriteString("\n  AND (" + ours + " OR [__$operation] = 4 OR ([__$operation] = 1 AND " + quote(q.Practice.Name) + " IS NULL))")
	}
	b.WriteString("\nORDER BY " + order)
	return b.String(), args, nil
}

var tsql = func() dialect.Dialect {
	d, err := dialect.New(schemas.SQLServer)
	if err != nil {
		panic(err)
	}
	return d
}()

// Agent implements AgentProber. Without VIEW DATABASE STATE it reports the
// missing grant in Unknown rather than failing.
func (s *SQLServer) Agent(ctx context.Context) (AgentStatus, error) {
	max, err := s.MaxLSN(ctx)
	if err != nil {
		return AgentStatus{}, err
	}
	st := AgentStatus{HarvestedLSN: max}
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	var (
		age  sql.NullInt64
		errs int64
	)
	err = s.DB.QueryRowContext(ctx, agentSQL).Scan(&age, &errs)
	switch {
	case isPermissionDenied(err):
		st.Unknown = "the login lacks VIEW DATABASE STATE (GRANT VIEW DATABASE STATE TO <login>)"
		return st, nil
	case err != nil:
		return AgentStatus{}, fmt.Errorf("read capture agent status: %w", err)
	}
	st.SinceScan = -1
	if age.Valid {
		st.SinceScan = time.Duration(age.Int64) * time.Second
		if st.SinceScan < 0 { // an end_time ahead of the server clock
			st.SinceScan = 0
		}
	}
	st.Errors = int(errs)
	return st, nil
}

// CheckReadable reads nothing from the capture instance's change table
// (SELECT TOP (0)) to prove the login may read it: cdc.change_tables lists
// an instance whose change table the login may not read (P17). A denial is
// a *PermissionError naming the grant.
func (s *SQLServer) CheckReadable(ctx context.Context, instance string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	rows, err := s.DB.QueryContext(ctx, "SELECT TOP (0) * FROM [cdc]."+quote(instance+"_CT"))
	if err == nil {
		err = rows.Close()
	}
	switch {
	case isPermissionDenied(err):
		pe := &PermissionError{Object: "the change table of capture instance " + instance, Grant: grantCDC, Err: err}
		// A gating role (P17): membership is what the login lacks, unless
		// it lacks SELECT on the cdc schema too. cdc.change_tables names
		// the role to any login that may read it.
		var role sql.NullString
		if s.DB.QueryRowContext(ctx, gatingRoleSQL, instance).Scan(&role) == nil && role.String != "" {
			pe.Object += " (its gating role is " + role.String + ")"
			pe.Grant = "ALTER ROLE " + quote(role.String) + " ADD MEMBER <login>; " + grantCDC
		}
		return pe
	case err != nil:
		return fmt.Errorf("read change table of %s: %w", instance, err)
	}
	return nil
}

// gatingRoleSQL reads a capture instance's gating role (NULL: none).
const gatingRoleSQL = `SELECT role_name FROM cdc.change_tables WHERE capture_instance = @p1`

// Capture is what a probe of a table's CDC finds.
type Capture struct {
	// Instance is the newest capture instance with a start LSN; the login
	// may read its change table.
	Instance Instance
	// Computed are the table's computed columns: CDC records them as NULL
	// in every change row (P16), so a CDC extractor leaves them out.
	Computed []string
}

// Probe reports what CDC offers for t: ErrNotTracked (wrapped) when the
// table has no capture instance with a start LSN, a *PermissionError when
// the login may not read the CDC metadata or the instance's change table.
func (s *SQLServer) Probe(ctx context.Context, t *schemas.Table) (Capture, error) {
	instances, err := s.Instances(ctx, t.Schema, t.Name)
	if err != nil {
		return Capture{}, err
	}
	var newest *Instance
	for i := range instances {
		if !instances[i].StartLSN.IsZero() {
			newest = &instances[i]
		}
	}
	if newest == nil {
		return Capture{}, fmt.Errorf("%w: no capture instance of %s with a start LSN", ErrNotTracked, t.QualifiedName())
	}
	if err := s.CheckReadable(ctx, newest.Name); err != nil {
		return Capture{}, err
	}
	computed, err := s.Computed(ctx, t)
	if err != nil {
		return Capture{}, err
	}
	return Capture{Instance: *newest, Computed: computed}, nil
}

// computedSQL lists a table's computed columns.
const computedSQL = `SELECT c.name FROM sys.columns AS c WHERE c.object_id = OBJECT_ID(@p1) AND c.is_computed = 1 ORDER BY c.column_id`

// Computed returns the names of t's computed columns. CDC records them as
// NULL in every change row (P16), so a CDC extractor does not read them.
func (s *SQLServer) Computed(ctx context.Context, t *schemas.Table) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	rows, err := s.DB.QueryContext(ctx, computedSQL, quote(t.Schema)+"."+quote(t.Name))
	if err != nil {
		return nil, fmt.Errorf("read the computed columns of %s: %w", t.QualifiedName(), err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("read the computed columns of %s: %w", t.QualifiedName(), err)
		}
		out = append(out, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the computed columns of %s: %w", t.QualifiedName(), err)
	}
	return out, nil
}

// selectGrantedSQL reads whether the login may SELECT from a table.
const selectGrantedSQL = `SELECT CAST(ISNULL(HAS_PERMS_BY_NAME(@p1, 'OBJECT', 'SELECT'), 0) AS bit)`

// CanSelect implements SelectChecker.
func (s *SQLServer) CanSelect(ctx context.Context, t *schemas.Table) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	var ok bool
	if err := s.DB.QueryRowContext(ctx, selectGrantedSQL, quote(t.Schema)+"."+quote(t.Name)).Scan(&ok); err != nil {
		return false, fmt.Errorf("read the SELECT permission on %s: %w", t.QualifiedName(), err)
	}
	return ok, nil
}

// grantCDC is the grant that lets a login read CDC's metadata and change
// tables.
const grantCDC = "GRANT SELECT ON SCHEMA::cdc TO <login>"

// PermissionError means the login may not read what CDC needs: the CDC
// metadata (cdc.change_tables), a capture instance's change table, or the
// captured table itself (without SELECT on it, sys.fn_cdc_get_min_lsn
// answers no LSN). It is permanent until the grant is made.
type PermissionError struct {
	Object string // what the login may not read
	Grant  string // the statement that fixes it
	Err    error  // the server's denial; nil when the server answered nothing
}

func (e *PermissionError) Error() string {
	msg := fmt.Sprintf("the login may not read %s: %s", e.Object, e.Grant)
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

func (e *PermissionError) Unwrap() error { return e.Err }

// isPermissionDenied reports SQL Server errors 229 (permission denied on an
// object), 262 (a permission denied in the database), 297 (no permission
// to perform the action) and 300 (a permission such as VIEW DATABASE STATE
// denied on an object).
func isPermissionDenied(err error) bool {
	var e mssql.Error
	return errors.As(err, &e) && (e.Number == 229 || e.Number == 262 || e.Number == 297 || e.Number == 300)
}

// isInvalidObject reports SQL Server error 208, "Invalid object name".
func isInvalidObject(err error) bool {
	var e mssql.Error
	return errors.As(err, &e) && e.Number == 208
}

// lsnOf converts a binary(10) value; NULL is the zero LSN.
func lsnOf(b []byte) (watermarks.LSN, error) {
	if b == nil {
		return watermarks.LSN{}, nil
	}
	if len(b) != len(watermarks.LSN{}) {
		return watermarks.LSN{}, fmt.Errorf("LSN has %d bytes, want 10", len(b))
	}
	return watermarks.LSN(b), nil
}

func quote(name string) string {
	return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
}
