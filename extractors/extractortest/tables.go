package extractortest

import (
	"context"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

// The suite's tables are declared in the SQL Server dialect, as the catalog
// declares NextGen's: a SQL Server source creates them as declared, a
// PostgreSQL source with the closest types (schemas.Table.AsPostgres) and a
// bigint row_timestamp that a trigger sets to the writing transaction's id,
// as the synthetic NextGen source does.

const (
	// Practice is the organization's practice id; rows of OtherPractice
	// must never reach the store.
	Practice      = "0001"
	OtherPractice = "0002"
)

var tableSeq atomic.Int64

// linesTable is the behaviour table: a composite (GUID, int) key, a
// practice, an amount, a note, a datetime modify stamp and a row version.
func linesTable(name string) *schemas.Table {
	return mustTable(name, []string{"id", "line"}, []colSpec{
		{"id", "uniqueidentifier", false},
		{"line", "int", false},
		{"practice_id", "char(4)", false},
		{"amount", "numeric(19,2)", true},
		{"note", "varchar(40)", true},
		{"modify_timestamp", "datetime", false},
		{"row_timestamp", "rowversion", false},
	})
}

// typesTable has a column of every type the extractors carry.
func typesTable(name string) *schemas.Table {
	return mustTable(name, []string{"id"}, []colSpec{
		{"id", "uniqueidentifier", false},
		{"practice_id", "char(4)", false},
		{"c_bit", "bit", true},
		{"c_tinyint", "tinyint", true},
		{"c_smallint", "smallint", true},
		{"c_int", "int", true},
		{"c_bigint", "bigint", true},
		{"c_num", "numeric(19,2)", true},
		{"c_num38", "numeric(38,0)", true},
		{"c_dec", "decimal(9,4)", true},
		{"c_money", "money", true},
		{"c_smallmoney", "smallmoney", true},
		{"c_float", "float", true},
		{"c_real", "real", true},
		{"c_char", "char(4)", true},
		{"c_varchar", "varchar(8)", true},
		{"c_nvarchar", "nvarchar(40)", true},
		{"c_nvarcharmax", "nvarchar(max)", true},
		{"c_guid", "uniqueidentifier", true},
		{"c_date", "date", true},
		{"c_time", "time(6)", true},
		{"c_datetime", "datetime", true},
		{"c_datetime2", "datetime2(7)", true},
		{"c_smalldatetime", "smalldatetime", true},
		{"c_dto", "datetimeoffset(7)", true},
		{"c_varbinary", "varbinary(max)", true},
		{"modify_timestamp", "datetime", false},
		{"row_timestamp", "rowversion", false},
	})
}

type colSpec struct {
	name, typ string
	nullable  bool
}

func mustTable(name string, key []string, cols []colSpec) *schemas.Table {
	t := &schemas.Table{
		Schema: "dbo", Name: name, Dialect: schemas.SQLServer, Key: key,
		RowVersion: "row_timestamp", ModifiedAt: "modify_timestamp", Practice: "practice_id",
	}
	for _, c := range cols {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		if err != nil {
			panic(err)
		}
		t.Columns = append(t.Columns, schemas.Column{Name: c.name, Type: typ, Nullable: c.nullable})
	}
	if err := t.Validate(); err != nil {
		panic(err)
	}
	return t
}

// uniqueName names a test table uniquely among concurrent test processes
// sharing one source database (the live SQL Server suite).
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%d_%d", prefix, os.Getpid(), tableSeq.Add(1))
}

// execer is *sql.DB or *sql.Tx.
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// db is one test's view of the source: its dialect, connection and tables.
type db struct {
	t       *testing.T
	dialect schemas.Dialect
	conn    *sql.DB
}

func (d *db) exec(x execer, query string) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := x.ExecContext(ctx, query)
	require.NoError(d.t, err, "source statement failed")
}

func (d *db) quote(name string) string {
	if d.dialect == schemas.SQLServer {
		return "[" + strings.ReplaceAll(name, "]", "]]") + "]"
	}
	return pgx.Identifier{name}.Sanitize()
}

func (d *db) qualified(t *schemas.Table) string {
	return d.quote(t.Schema) + "." + d.quote(t.Name)
}

// create creates t at the source (and drops it when the test ends).
func (d *db) create(t *schemas.Table) {
	d.t.Helper()
	var cols []string
	switch d.dialect {
	case schemas.SQLServer:
		for _, c := range t.Columns {
			null := " NULL"
			if !c.Nullable {
				null = " NOT NULL"
			}
			cols = append(cols, d.quote(c.Name)+" "+c.Type.String()+null)
		}
	case schemas.Postgres:
		d.exec(d.conn, `CREATE SCHEMA IF NOT EXISTS dbo`)
		d.exec(d.conn, `CREATE OR REPLACE FUNCTION dbo.ehrsync_test_row_timestamp() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.row_timestamp := pg_current_xact_id()::text::bigint;
  RETURN NEW;
END $$`)
		pt, err := t.AsPostgres()
		require.NoError(d.t, err)
		for _, c := range pt.Columns {
			typ := c.Type.String()
			if strings.EqualFold(c.Name, t.RowVersion) {
				typ = "bigint"
			}
			null := ""
			if !c.Nullable {
				null = " NOT NULL"
			}
			cols = append(cols, d.quote(c.Name)+" "+typ+null)
		}
	}
	keys := make([]string, len(t.Key))
	for i, k := range t.Key {
		keys[i] = d.quote(k)
	}
	cols = append(cols, "PRIMARY KEY ("+strings.Join(keys, ", ")+")")
	d.exec(d.conn, "CREATE TABLE "+d.qualified(t)+" (\n  "+strings.Join(cols, ",\n  ")+"\n)")
	if d.dialect == schemas.Postgres {
		d.exec(d.conn, "CREATE TRIGGER row_timestamp BEFORE INSERT OR UPDATE ON "+d.qualified(t)+
			" FOR EACH ROW EXECUTE FUNCTION dbo.ehrsync_test_row_timestamp()")
	} else {
		// The row-version window reads by seek, as NextGen's indexes allow;
		// a scan would wait on other sessions' uncommitted rows.
		d.exec(d.conn, "CREATE INDEX "+d.quote("ix_"+t.Name+"_rv")+" ON "+d.qualified(t)+" ("+d.quote(t.RowVersion)+")")
	}
	d.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		_, _ = d.conn.ExecContext(ctx, "DROP TABLE "+d.qualified(t))
	})
}

// bump writes to a side table so that the source's row-version counter
// (SQL Server's @@DBTS, PostgreSQL's transaction ids) moves without touching
// the table under test.
func (d *db) bump() {
	d.t.Helper()
	name := "bump"
	if d.dialect == schemas.SQLServer {
		name = uniqueName("ehrsync_bump")
		d.exec(d.conn, "CREATE TABLE dbo."+d.quote(name)+" (id int NOT NULL, rv rowversion NOT NULL)")
		d.t.Cleanup(func() { _, _ = d.conn.ExecContext(context.Background(), "DROP TABLE dbo."+d.quote(name)) })
	} else {
		d.exec(d.conn, "CREATE TABLE IF NOT EXISTS dbo.bump (id int NOT NULL)")
	}
	d.exec(d.conn, "INSERT INTO dbo."+d.quote(name)+" (id) VALUES (1)")
}

// Literals. Test values are written into SQL text, per dialect.

type (
	num   string    // an exact decimal literal
	nstr  string    // a Unicode string literal (N'...' on SQL Server)
	stamp time.Time // a datetime (wall clock)
	raw   string    // SQL text as it is
)

func (d *db) lit(v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case string:
		return "'" + strings.ReplaceAll(x, "'", "''") + "'"
	case nstr:
		q := "'" + strings.ReplaceAll(string(x), "'", "''") + "'"
		if d.dialect == schemas.SQLServer {
			return "N" + q
		}
		return q
	case int:
		return fmt.Sprint(x)
	case num:
		return string(x)
	case uuid.UUID:
		return "'" + x.String() + "'"
	case stamp:
		return "'" + time.Time(x).Format("2006-01-02T15:04:05.000") + "'"
	case bool:
		if d.dialect == schemas.SQLServer {
			if x {
				return "1"
			}
			return "0"
		}
		return fmt.Sprint(x)
	case []byte:
		if d.dialect == schemas.SQLServer {
			return "0x" + hex.EncodeToString(x)
		}
		return `'\x` + hex.EncodeToString(x) + `'::bytea`
	case raw:
		return string(x)
	}
	panic(fmt.Sprintf("extractortest: no literal for %T", v))
}

// line is one row of the lines table.
type line struct {
	ID       uuid.UUID
	Line     int
	Practice string
	Amount   any // num or nil
	Note     any // string or nil
	Stamp    time.Time
}

func (d *db) insertLines(x execer, t *schemas.Table, rows ...line) {
	d.t.Helper()
	if len(rows) == 0 {
		return
	}
	vals := make([]string, len(rows))
	for i, r := range rows {
		vals[i] = "(" + strings.Join([]string{
			d.lit(r.ID), d.lit(r.Line), d.lit(r.Practice), d.lit(r.Amount), d.lit(r.Note), d.lit(stamp(r.Stamp)),
		}, ", ") + ")"
	}
	d.exec(x, "INSERT INTO "+d.qualified(t)+" (id, line, practice_id, amount, note, modify_timestamp) VALUES "+strings.Join(vals, ", "))
}

func (d *db) updateLine(x execer, t *schemas.Table, r line) {
	d.t.Helper()
	d.exec(x, "UPDATE "+d.qualified(t)+" SET amount = "+d.lit(r.Amount)+", note = "+d.lit(r.Note)+
		", modify_timestamp = "+d.lit(stamp(r.Stamp))+" WHERE id = "+d.lit(r.ID)+" AND line = "+d.lit(r.Line))
}

func (d *db) deleteLine(x execer, t *schemas.Table, r line) {
	d.t.Helper()
	d.exec(x, "DELETE FROM "+d.qualified(t)+" WHERE id = "+d.lit(r.ID)+" AND line = "+d.lit(r.Line))
}

// clock hands out application modify stamps, one second apart, as an
// application server would.
type clock struct{ next time.Time }

func newClock() *clock {
	return &clock{next: time.Date(2026, 1, 5, 8, 0, 0, 0, time.UTC)}
}

func (c *clock) tick() time.Time {
	t := c.next
	c.next = c.next.Add(time.Second)
	return t
}
