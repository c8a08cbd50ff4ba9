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

// Columns implements engine.Describer: the table's columns as the source
// has them now. It reads PostgreSQL's catalog; for SQL Server it returns
// nil (no drift check yet: a dropped column fails the chunk query there).
// A table missing at the source is an error naming it.
func (p *Planner) Columns(ctx context.Context, db *sql.DB, dialect schemas.Dialect, t *schemas.Table) ([]schemas.SourceColumn, error) {
	if dialect != schemas.Postgres {
		return nil, nil
	}
	rows, err := db.QueryContext(ctx, postgresColumnsQuery, pgx.Identifier{t.Schema, t.Name}.Sanitize())
	if err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.QualifiedName(), err)
	}
	defer rows.Close()
	var out []schemas.SourceColumn
	for rows.Next() {
		var c schemas.SourceColumn
		if err := rows.Scan(&c.Name, &c.TypeText, &c.Nullable); err != nil {
			return nil, fmt.Errorf("read the columns of %s: %w", t.QualifiedName(), err)
		}
		if typ, err := schemas.ParseType(schemas.Postgres, c.TypeText); err == nil {
			c.Type = typ
		}
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the columns of %s: %w", t.QualifiedName(), err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("table %s: %w: it is not at the source (or the login cannot see it): check the name, or GRANT SELECT ON %s",
			t.QualifiedName(), schemas.ErrSourceChanged, strings.TrimSpace(pgx.Identifier{t.Schema, t.Name}.Sanitize()))
	}
	return out, nil
}
