package planner

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/schemas"
)

// postgresColumnsQuery lists a PostgreSQL table's columns with their types
// as format_type spells them (the spelling schemas.ParseType reads).
const postgresColumnsQuery = `SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

// sqlServerColumnsQuery lists a SQL Server table's columns with their base
// types (system_type_id: an alias type reads as its base type) and the
// sizes sqlServerType spells them with.
const sqlServerColumnsQuery = `SELECT c.name, c.system_type_id, c.max_length, c.precision, c.scale, c.is_nullable
FROM sys.columns c WHERE c.object_id = OBJECT_ID(@p1) ORDER BY c.column_id`

// Columns implements engine.Describer: the table's columns as the source
// has them now, from PostgreSQL's catalog or SQL Server's sys.columns. A
// table missing at the source (or that the login cannot see) is an error
// naming it.
func (p *Planner) Columns(ctx context.Context, db *sql.DB, dialect schemas.Dialect, t *schemas.Table) ([]schemas.SourceColumn, error) {
	var out []schemas.SourceColumn
	var err error
	name := pgx.Identifier{t.Schema, t.Name}.Sanitize()
	switch dialect {
	case schemas.Postgres:
		out, err = describe(ctx, db, postgresColumnsQuery, name, func(rows *sql.Rows, c *schemas.SourceColumn) error {
			if err := rows.Scan(&c.Name, &c.TypeText, &c.Nullable); err != nil {
				return err
			}
			c.Type, _ = schemas.ParseType(schemas.Postgres, c.TypeText) // the zero Type when ehrsync does not know it
			return nil
		})
	case schemas.SQLServer:
		name = "[" + strings.ReplaceAll(t.Schema, "]", "]]") + "].[" + strings.ReplaceAll(t.Name, "]", "]]") + "]"
		out, err = describe(ctx, db, sqlServerColumnsQuery, name, func(rows *sql.Rows, c *schemas.SourceColumn) error {
			var id, length, precision, scale int
			if err := rows.Scan(&c.Name, &id, &length, &precision, &scale, &c.Nullable); err != nil {
				return err
			}
			c.TypeText = sqlServerType(id, length, precision, scale)
			c.Type, _ = schemas.ParseType(schemas.SQLServer, c.TypeText)
			return nil
		})
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.QualifiedName(), err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("table %s: %w: it is not at the source (or the login cannot see it): check the name, or GRANT SELECT ON %s",
			t.QualifiedName(), schemas.ErrSourceChanged, name)
	}
	return out, nil
}

// describe runs a describe query for the table name and reads each row
// into a column with scan.
func describe(ctx context.Context, db *sql.DB, query, name string, scan func(*sql.Rows, *schemas.SourceColumn) error) ([]schemas.SourceColumn, error) {
	rows, err := db.QueryContext(ctx, query, name)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []schemas.SourceColumn
	for rows.Next() {
		var c schemas.SourceColumn
		if err := scan(rows, &c); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// sqlServerTypes are SQL Server's base types by system_type_id.
var sqlServerTypes = map[int]string{
	34: "image", 35: "text", 36: "uniqueidentifier", 40: "date", 41: "time", 42: "datetime2", 43: "datetimeoffset",
	48: "tinyint", 52: "smallint", 56: "int", 58: "smalldatetime", 59: "real", 60: "money", 61: "datetime",
	62: "float", 98: "sql_variant", 99: "ntext", 104: "bit", 106: "decimal", 108: "numeric", 122: "smallmoney",
	127: "bigint", 165: "varbinary", 167: "varchar", 173: "binary", 175: "char", 189: "rowversion",
	231: "nvarchar", 239: "nchar", 241: "xml",
}

// sqlServerType spells a sys.columns type as SQL Server declares it:
// nvarchar(40) from max_length 80, varchar(max) from -1, decimal(p,s),
// datetime2(scale). A type ehrsync does not know (a CLR type such as
// geography) is "system type N", which schemas.ParseType does not parse.
func sqlServerType(id, length, precision, scale int) string {
	name, ok := sqlServerTypes[id]
	if !ok {
		return fmt.Sprintf("system type %d", id)
	}
	size := func(n int) string {
		if length == -1 {
			return name + "(max)"
		}
		return fmt.Sprintf("%s(%d)", name, n)
	}
	switch name {
	case "char", "varchar", "binary", "varbinary":
		return size(length)
	case "nchar", "nvarchar":
		return size(length / 2)
	case "decimal", "numeric":
		return fmt.Sprintf("%s(%d,%d)", name, precision, scale)
	case "time", "datetime2", "datetimeoffset":
		return fmt.Sprintf("%s(%d)", name, scale)
	}
	return name
}
