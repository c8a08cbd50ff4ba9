// Package verify compares a table in the store with the same table at a
// PostgreSQL source, row by row: every row's content, rendered as text by
// PostgreSQL on both sides, streamed in key order from both databases and
// compared. It reports counts (missing, extra, different rows), never row
// values, so its output is safe to print. Org compares an organization's
// tables as the engine syncs them (its column allow-lists and practices),
// for `ehrsync verify` and the demo.
package verify

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/schemas"
)

// Querier runs a query; *pgxpool.Pool and *pgx.Conn implement it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Diff is the comparison of one table: counts, never values.
type Diff struct {
	Table      string `json:"table"`
	SourceRows int64  `json:"source_rows"`
	StoreRows  int64  `json:"store_rows"`
	// Rows only at the source, only in the store, and different.
	Missing int64 `json:"missing"`
	Extra   int64 `json:"extra"`
	Changed int64 `json:"different"`
}

// Equal reports whether the store holds exactly the source's rows.
func (d Diff) Equal() bool { return d.Missing == 0 && d.Extra == 0 && d.Changed == 0 }

func (d Diff) String() string {
	return fmt.Sprintf("%s: source %d rows, store %d rows, %d missing, %d extra, %d different",
		d.Table, d.SourceRows, d.StoreRows, d.Missing, d.Extra, d.Changed)
}

// Options narrow and observe a comparison.
type Options struct {
	// Practices, when set, keeps only the source rows whose practice
	// column (the table's Practice) holds one of them, compared as text:
	// the rows an organization with practice_ids syncs.
	Practices []string
	// Progress, when set, is called with the rows compared so far, every
	// ProgressRows rows and once at the end.
	Progress func(rows int64)
}

// ProgressRows is how many rows a comparison compares between two calls
// of Options.Progress.
const ProgressRows = 10000

// Table compares table t (catalog definition) between the source (schema
// srcSchema, the synthetic PostgreSQL source's layout) and the store (schema
// storeSchema, as the sink writes it): Compare without options.
func Table(ctx context.Context, src, store Querier, srcSchema, storeSchema string, t *schemas.Table) (Diff, error) {
	return Compare(ctx, src, store, srcSchema, storeSchema, t, Options{})
}

// Compare compares table t (catalog definition) between the source (schema
// srcSchema) and the store (schema storeSchema, as the sink writes it).
// Soft-deleted store rows count as absent. The rowversion column is
// compared as the 8 bytes it becomes.
func Compare(ctx context.Context, src, store Querier, srcSchema, storeSchema string, t *schemas.Table, opts Options) (Diff, error) {
	d := Diff{Table: t.QualifiedName()}
	var srcCols, storeCols, keys []string
	for _, c := range t.Columns {
		q := pgx.Identifier{c.Name}.Sanitize()
		if c.Name == t.RowVersion {
			srcCols = append(srcCols, "int8send("+q+")")
		} else {
			srcCols = append(srcCols, q)
		}
		storeCols = append(storeCols, q)
	}
	for _, k := range t.Key {
		keys = append(keys, pgx.Identifier{k}.Sanitize())
	}
	query := func(cols []string, from, where string) string {
		// Ordered by the key's text in byte order on both sides, the order
		// the merge walk below compares in.
		return fmt.Sprintf(`SELECT k, v FROM (SELECT ROW(%s)::text AS k, ROW(%s)::text AS v FROM %s %s) r ORDER BY k COLLATE "C"`,
			strings.Join(keys, ", "), strings.Join(cols, ", "), from, where)
	}
	srcWhere, srcArgs := "", []any(nil)
	if len(opts.Practices) > 0 {
		if t.Practice == "" {
			return d, fmt.Errorf("compare %s: practices given, but the table names no practice column", t.QualifiedName())
		}
		srcWhere, srcArgs = "WHERE rtrim("+pgx.Identifier{t.Practice}.Sanitize()+"::text) = ANY($1::text[])", []any{opts.Practices}
	}
	srcRows, err := src.Query(ctx, query(srcCols, pgx.Identifier{srcSchema, t.Name}.Sanitize(), srcWhere), srcArgs...)
	if err != nil {
		return d, fmt.Errorf("read %s at the source: %w", t.QualifiedName(), err)
	}
	defer srcRows.Close()
	storeRows, err := store.Query(ctx, query(storeCols, pgx.Identifier{storeSchema, sink.TableName(t)}.Sanitize(), "WHERE NOT "+sink.MetaDeleted))
	if err != nil {
		return d, fmt.Errorf("read %s in the store: %w", t.QualifiedName(), err)
	}
	defer storeRows.Close()

	// A merge walk over both sides in key order finds every difference.
	var sk, sv, tk, tv string
	var compared int64
	srcOK, storeOK := next(srcRows, &sk, &sv), next(storeRows, &tk, &tv)
	for srcOK || storeOK {
		if compared++; opts.Progress != nil && compared%ProgressRows == 0 {
			opts.Progress(compared)
		}
		switch {
		case storeOK && (!srcOK || tk < sk):
			d.Extra++
			d.StoreRows++
			storeOK = next(storeRows, &tk, &tv)
		case srcOK && (!storeOK || sk != tk):
			d.Missing++
			d.SourceRows++
			srcOK = next(srcRows, &sk, &sv)
		default:
			if sv != tv {
				d.Changed++
			}
			d.SourceRows++
			d.StoreRows++
			srcOK, storeOK = next(srcRows, &sk, &sv), next(storeRows, &tk, &tv)
		}
	}
	if err := srcRows.Err(); err != nil {
		return d, fmt.Errorf("read %s at the source: %w", t.QualifiedName(), err)
	}
	if err := storeRows.Err(); err != nil {
		return d, fmt.Errorf("read %s in the store: %w", t.QualifiedName(), err)
	}
	if opts.Progress != nil {
		opts.Progress(compared)
	}
	return d, nil
}

// ErrNotPostgres means an organization's source is not PostgreSQL: Org
// compares PostgreSQL sources only.
var ErrNotPostgres = errors.New("verify compares PostgreSQL sources only")

// Org compares org's tables (configured names; none: every one) between
// its PostgreSQL source src and the store, as the engine syncs them: each
// table in the catalog's schema at the source and in the organization's
// schema in the store, its column allow-list, and the organization's
// practices. progress, when set, is called as each table is compared:
// the table, its place (1 to n) and the rows compared so far. A table's
// error stops the comparison; the diffs so far are returned with it.
func Org(ctx context.Context, src, store Querier, org *config.Org, catalog *schemas.Catalog, tables []string,
	progress func(table string, i, n int, rows int64)) ([]Diff, error) {
	if d := org.Source.Dialect; d != config.Postgres {
		return nil, fmt.Errorf("org %s: %w (its source's dialect is %s)", org.Name, ErrNotPostgres, d)
	}
	selected := org.Tables
	if len(tables) > 0 {
		selected = nil
		for _, n := range tables {
			tc, ok := org.Table(n)
			if !ok {
				return nil, fmt.Errorf("org %s has no table %q in its configuration", org.Name, n)
			}
			selected = append(selected, *tc)
		}
	}
	var out []Diff
	for i, tc := range selected {
		t, ok := catalog.Table(tc.Name)
		if !ok {
			return out, fmt.Errorf("table %s is not in the catalog", tc.Name)
		}
		if len(tc.Columns) > 0 {
			var err error
			if t, err = t.Project(tc.Columns); err != nil {
				return out, fmt.Errorf("columns of %s: %w", tc.Name, err)
			}
		}
		opts := Options{Practices: org.Source.PracticeIDs}
		if t.Practice == "" {
			opts.Practices = nil // shared by every practice (sync refuses the others)
		}
		if progress != nil {
			name := t.QualifiedName()
			opts.Progress = func(rows int64) { progress(name, i+1, len(selected), rows) }
		}
		d, err := Compare(ctx, src, store, t.Schema, sink.SchemaFor(org.Name), t, opts)
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
	return out, nil
}

// WithConn runs fn with one of db's connections as a Querier: db is a
// PostgreSQL source opened with database/sql through pgx (source.Open).
func WithConn(ctx context.Context, db *sql.DB, fn func(Querier) error) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connect to the source: %w", err)
	}
	defer conn.Close()
	return conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("the source's connection is %T, not PostgreSQL's: %w", dc, ErrNotPostgres)
		}
		return fn(c.Conn())
	})
}

func next(rows pgx.Rows, key, val *string) bool {
	if !rows.Next() {
		return false
	}
	return rows.Scan(key, val) == nil
}
