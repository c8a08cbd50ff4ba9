// Package dialect writes the extractors' source queries for SQL Server
// (T-SQL) and PostgreSQL, and binds their parameters with the column's exact
// type (PITFALLS.md P15).
//
// Every chunk query is one SELECT: the projected column list (the column
// allow-list), the organization filter (practice_id IN (...)) and a keyset
// condition pushed into the WHERE clause, an ORDER BY, and a row limit.
//
// Isolation: the queries run as single autocommit statements at the
// connection's default isolation, READ COMMITTED on both servers (or, where a
// SQL Server database has READ_COMMITTED_SNAPSHOT on, its statement-level
// snapshot). They carry no table hints and never open a long transaction:
// each chunk is its own statement, so no lock or row version is held between
// chunks (PITFALLS.md P8).
//
// Row comparisons: PostgreSQL compares rows natively, (k1, k2) > ($1, $2),
// which its planner turns into an index range. T-SQL has no row-value
// comparison, so the dialect expands it lexicographically:
// ([k1] > @p1) OR ([k1] = @p1 AND [k2] > @p2). Keys are always compared by the
// server in its own order (uniqueidentifier by byte groups, PITFALLS.md P12),
// never by their text.
package dialect

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/schemas"
)

// Dialect writes queries for one source server. The zero Dialect is not
// usable; get one from New.
type Dialect struct {
	name schemas.Dialect
}

// Dialects.
var (
	SQLServer = Dialect{name: schemas.SQLServer}
	Postgres  = Dialect{name: schemas.Postgres}
)

// New returns the dialect called d.
func New(d schemas.Dialect) (Dialect, error) {
	switch d {
	case schemas.SQLServer:
		return SQLServer, nil
	case schemas.Postgres:
		return Postgres, nil
	}
	return Dialect{}, fmt.Errorf("unknown source dialect %q", string(d))
}

// Name returns the dialect's name.
func (d Dialect) Name() schemas.Dialect { return d.name }

// Quote quotes one identifier: [name] with ] doubled for SQL Server,
// "name" (pgx.Identifier) for PostgreSQL.
func (d Dialect) Quote(name string) string {
	if d.name == schemas.SQLServer {
		return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
	}
	return pgx.Identifier{name}.Sanitize()
}

// QuoteTable quotes t's qualified name.
func (d Dialect) QuoteTable(t *schemas.Table) string {
	return d.Quote(t.Schema) + "." + d.Quote(t.Name)
}

// Op is a comparison in a Cond.
type Op string

// The comparisons a Cond makes. On more than one column they compare rows
// lexicographically.
const (
	Gt Op = ">"
	Ge Op = ">="
	Lt Op = "<"
	Le Op = "<="
)

// Param is a bound parameter: the driver argument and, where the driver has
// no argument type that matches the column exactly, the SQL type the
// parameter is cast to in the query text.
type Param struct {
	Arg  any
	Cast string // "" for none
}

// Cond compares the row (Columns...) with (Values...) by Op.
type Cond struct {
	Columns []string
	Op      Op
	Values  []Param
}

// In restricts Column to one of Values.
type In struct {
	Column string
	Values []Param
}

// Select is one chunk query.
type Select struct {
	Table   *schemas.Table
	Columns []string // the select list, in order
	In      *In      // the organization filter, nil for none
	Where   []Cond   // ANDed
	NotNull string   // a column that must not be NULL, "" for none
	OrderBy []string // ascending
	Limit   int      // > 0
}

// Build returns the query text and its arguments, in the order of their
// placeholders.
func (d Dialect) Build(s Select) (string, []any, error) {
	if len(s.Columns) == 0 {
		return "", nil, fmt.Errorf("select from %s: no columns", s.Table.QualifiedName())
	}
	if s.Limit <= 0 {
		return "", nil, fmt.Errorf("select from %s: limit %d is not positive", s.Table.QualifiedName(), s.Limit)
	}
	b := builder{d: d}
	b.WriteString("SELECT ")
	if d.name == schemas.SQLServer {
		b.WriteString("TOP (")
		b.WriteString(b.bind(Param{Arg: int64(s.Limit)}))
		b.WriteString(") ")
	}
	for i, c := range s.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(d.Quote(c))
	}
	b.WriteString(" FROM ")
	b.WriteString(d.QuoteTable(s.Table))
	var where []string
	if s.In != nil {
		if len(s.In.Values) == 0 {
			return "", nil, fmt.Errorf("select from %s: empty IN list for %s", s.Table.QualifiedName(), s.In.Column)
		}
		ps := make([]string, len(s.In.Values))
		for i, v := range s.In.Values {
			ps[i] = b.bind(v)
		}
		where = append(where, d.Quote(s.In.Column)+" IN ("+strings.Join(ps, ", ")+")")
	}
	if s.NotNull != "" {
		where = append(where, d.Quote(s.NotNull)+" IS NOT NULL")
	}
	for _, c := range s.Where {
		text, err := b.cond(c)
		if err != nil {
			return "", nil, fmt.Errorf("select from %s: %w", s.Table.QualifiedName(), err)
		}
		where = append(where, text)
	}
	if len(where) > 0 {
		b.WriteString(" WHERE ")
		b.WriteString(strings.Join(where, " AND "))
	}
	if len(s.OrderBy) > 0 {
		b.WriteString(" ORDER BY ")
		for i, c := range s.OrderBy {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.Quote(c))
		}
	}
	if d.name == schemas.Postgres {
		b.WriteString(" LIMIT ")
		b.WriteString(b.bind(Param{Arg: int64(s.Limit)}))
	}
	return b.String(), b.args, nil
}

// Max returns a query for the largest value of column in t (NULL for no
// rows), under the organization filter in (nil for none).
func (d Dialect) Max(t *schemas.Table, column string, in *In) (string, []any, error) {
	b := builder{d: d}
	b.WriteString("SELECT MAX(" + d.Quote(column) + ") FROM " + d.QuoteTable(t))
	if in != nil {
		if len(in.Values) == 0 {
			return "", nil, fmt.Errorf("max of %s: empty IN list for %s", t.QualifiedName(), in.Column)
		}
		ps := make([]string, len(in.Values))
		for i, v := range in.Values {
			ps[i] = b.bind(v)
		}
		b.WriteString(" WHERE " + d.Quote(in.Column) + " IN (" + strings.Join(ps, ", ") + ")")
	}
	return b.String(), b.args, nil
}

// RowVersionBound returns the query for the exclusive upper bound of a
// row-version window: every row version below it belongs to a finished
// transaction, and no running or future transaction can write one below it.
//
// SQL Server: MIN_ACTIVE_ROWVERSION(), the lowest rowversion of any active
// transaction in the database (@@DBTS + 1 when none is active), binary(8).
//
// PostgreSQL: the current snapshot's xmin, the oldest transaction id still
// running (every id below it has committed or aborted), as a bigint. It is the
// bound for a row-version column that holds the writing transaction's id
// (pg_current_xact_id()), as the synthetic source's row_timestamp does.
func (d Dialect) RowVersionBound() string {
	if d.name == schemas.SQLServer {
		return "SELECT MIN_ACTIVE_ROWVERSION()"
	}
	return "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
}

type builder struct {
	strings.Builder
	d    Dialect
	args []any
}

// bind adds p's argument and returns its placeholder, cast where p says.
func (b *builder) bind(p Param) string {
	b.args = append(b.args, p.Arg)
	n := strconv.Itoa(len(b.args))
	if b.d.name == schemas.SQLServer {
		if p.Cast != "" {
			return "CAST(@p" + n + " AS " + p.Cast + ")"
		}
		return "@p" + n
	}
	if p.Cast != "" {
		return "$" + n + "::" + p.Cast
	}
	return "$" + n
}

func (b *builder) cond(c Cond) (string, error) {
	if len(c.Columns) == 0 || len(c.Columns) != len(c.Values) {
		return "", fmt.Errorf("comparison of %d columns with %d values", len(c.Columns), len(c.Values))
	}
	switch c.Op {
	case Gt, Ge, Lt, Le:
	default:
		return "", fmt.Errorf("unknown comparison %q", string(c.Op))
	}
	ps := make([]string, len(c.Values))
	for i, v := range c.Values {
		ps[i] = b.bind(v)
	}
	cols := make([]string, len(c.Columns))
	for i, col := range c.Columns {
		cols[i] = b.d.Quote(col)
	}
	if len(cols) == 1 {
		return cols[0] + " " + string(c.Op) + " " + ps[0], nil
	}
	if b.d.name == schemas.Postgres {
		return "(" + strings.Join(cols, ", ") + ") " + string(c.Op) + " (" + strings.Join(ps, ", ") + ")", nil
	}
	// T-SQL: (c1 > v1) OR (c1 = v1 AND c2 > v2) OR ... with the last term
	// taking the inclusive operator for >= and <=.
	strict := Op(strings.TrimSuffix(string(c.Op), "="))
	terms := make([]string, len(cols))
	for i := range cols {
		parts := make([]string, 0, i+1)
		for j := range i {
			parts = append(parts, cols[j]+" = "+ps[j])
		}
		op := strict
		if i == len(cols)-1 {
			op = c.Op
		}
		parts = append(parts, cols[i]+" "+string(op)+" "+ps[i])
		terms[i] = "(" + strings.Join(parts, " AND ") + ")"
	}
	return "(" + strings.Join(terms, " OR ") + ")", nil
}
