package cdc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
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
	minLSNSQL = `SELECT sys.fn_cdc_get_min_lsn(@p1)`
	maxLSNSQL = `SELECT MAX(start_lsn) FROM cdc.lsn_time_mapping`
	// agentSQL reads the newest log scan session (session 0 aggregates the
	// others) and the capture errors; both need VIEW DATABASE STATE.
	agentSQL = `SELECT
  (SELECT MAX(end_time) FROM sys.dm_cdc_log_scan_sessions WHERE session_id > 0),
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
		return nil, fmt.Errorf("read capture instances: %w", err)
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
		)
		vals := make([]any, len(q.Columns))
		dest := make([]any, 0, 4+len(vals))
		dest = append(dest, &lsn, &cmd, &seq, &op)
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("read change table of %s: %w", q.Instance, source.Redact(err))
		}
		if cmd.Int64 < 0 || cmd.Int64 > math.MaxInt32 {
			return nil, fmt.Errorf("read change table of %s: __$command_id %d is out of range", q.Instance, cmd.Int64)
		}
		c := Change{CommandID: int32(cmd.Int64), Op: int8(op), Values: vals}
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
	b.WriteString(";\nSELECT TOP (@n) [__$start_lsn], [__$command_id], [__$seqval], [__$operation]")
	for _, c := range q.Columns {
		b.WriteString(", " + quote(c))
	}
	b.WriteString("\nFROM [cdc]." + quote(q.Instance+"_CT") + " WITH (READCOMMITTED)")
	b.WriteString("\nWHERE [__$operation] IN (1, 2, 4) AND [__$start_lsn] <= @to")
	switch {
	case after.LSN.IsZero():
	case after.InTransaction():
		b.WriteString("\n  AND ([__$start_lsn] > @lsn OR ([__$start_lsn] = @lsn AND (ISNULL([__$command_id], 0) > @cmd" +
			" OR (ISNULL([__$command_id], 0) = @cmd AND ([__$seqval] > @seqval OR ([__$seqval] = @seqval AND [__$operation] > @op))))))")
	default:
		b.WriteString("\n  AND [__$start_lsn] > @lsn")
	}
	if q.Practice.Name != "" && len(q.Practices) > 0 {
		b.WriteString("\n  AND ([__$operation] = 1 OR " + quote(q.Practice.Name) + " IN (")
		for i, p := range q.Practices {
			param, err := tsql.PracticeParam(q.Practice, schemas.SQLServer, p)
			if err != nil {
				return "", nil, fmt.Errorf("practice filter: %w", err)
			}
			if i > 0 {
				b.WriteString(", ")
			}
			args = append(args, param.Arg)
			ph := "@p" + strconv.Itoa(len(args))
			if param.Cast != "" {
				ph = "CAST(" + ph + " AS " + param.Cast + ")"
			}
			b.WriteString(ph)
		}
		b.WriteString("))")
	}
	b.WriteString("\nORDER BY [__$start_lsn], [__$command_id], [__$seqval], [__$operation]")
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
		last sql.NullTime
		errs int64
	)
	err = s.DB.QueryRowContext(ctx, agentSQL).Scan(&last, &errs)
	switch {
	case isPermissionDenied(err):
		st.Unknown = "the login lacks VIEW DATABASE STATE (GRANT VIEW DATABASE STATE TO <login>)"
		return st, nil
	case err != nil:
		return AgentStatus{}, fmt.Errorf("read capture agent status: %w", err)
	}
	if last.Valid {
		st.LastScan = last.Time
	}
	st.Errors = int(errs)
	return st, nil
}

// CheckReadable reads nothing from the capture instance's change table
// (SELECT TOP (0)) to prove the login may read it: cdc.change_tables lists
// an instance whose gating role the login lacks, and reading it then fails
// (PITFALLS.md P17). A denial is a *PermissionError naming the grant.
func (s *SQLServer) CheckReadable(ctx context.Context, instance string) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	rows, err := s.DB.QueryContext(ctx, "SELECT TOP (0) * FROM [cdc]."+quote(instance+"_CT"))
	if err == nil {
		err = rows.Close()
	}
	switch {
	case isPermissionDenied(err):
		return &PermissionError{Instance: instance, Err: err}
	case err != nil:
		return fmt.Errorf("read change table of %s: %w", instance, err)
	}
	return nil
}

// PermissionError means the login may not read a capture instance's change
// table.
type PermissionError struct {
	Instance string
	Err      error
}

func (e *PermissionError) Error() string {
	return fmt.Sprintf("the login may not read capture instance %s: add it to the instance's gating role "+
		"(EXEC sys.sp_helprolemember on the role named by sys.sp_cdc_help_change_data_capture) "+
		"or GRANT SELECT ON SCHEMA::cdc TO <user>: %v", e.Instance, e.Err)
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
