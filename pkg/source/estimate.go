package source

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// postgresEstimateQuery is a PostgreSQL table's row count from its
// statistics: the planner's count from the last ANALYZE or VACUUM
// (pg_class.reltuples), or before the first (reltuples -1) the live rows
// the statistics system counts as rows are written (n_live_tup, which
// rows written just before an ANALYZE can count twice). NULL when the
// table is missing.
const postgresEstimateQuery = `SELECT (SELECT CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint ELSE coalesce(s.n_live_tup, 0) END
FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE c.oid = to_regclass($1))`

// sqlServerEstimateQuery is a SQL Server table's row count from its
// partitions' metadata: the rows of its heap (index 0) or clustered index
// (index 1) in every partition. NULL when the table is missing or the
// login cannot see it (metadata visibility).
const sqlServerEstimateQuery = `SELECT SUM(p.rows) FROM sys.partitions AS p
WHERE p.object_id = OBJECT_ID(@p1) AND p.index_id < 2`

// EstimateRows is the source's estimate of the rows in table schema.name,
// from its statistics (no table scan): 0 when the source has none (a table
// never analyzed and not yet counted, a table the login cannot see). It
// reads PostgreSQL's pg_class and pg_stat_user_tables, or SQL Server's
// sys.partitions, which need no permission beyond seeing the table. The
// caller bounds it with ctx (the source's query timeout).
func EstimateRows(ctx context.Context, db *sql.DB, dialect config.Dialect, schema, name string) (int64, error) {
	var (
		n   sql.NullInt64
		err error
	)
	switch dialect {
	case config.Postgres:
		err = db.QueryRowContext(ctx, postgresEstimateQuery, pgx.Identifier{schema, name}.Sanitize()).Scan(&n)
	case config.SQLServer:
		err = db.QueryRowContext(ctx, sqlServerEstimateQuery, bracket(schema)+"."+bracket(name)).Scan(&n)
	default:
		return 0, fmt.Errorf("estimate the rows of %s.%s: unknown dialect %q", schema, name, dialect)
	}
	if err != nil {
		return 0, fmt.Errorf("estimate the rows of %s.%s: %w", schema, name, err)
	}
	return max(n.Int64, 0), nil
}

// bracket quotes a SQL Server identifier.
func bracket(s string) string { return "[" + strings.ReplaceAll(s, "]", "]]") + "]" }
