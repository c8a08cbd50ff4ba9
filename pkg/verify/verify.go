// Package verify compares a table in the store with the same table at a
// PostgreSQL source, row by row: every row's content, rendered as text by
// PostgreSQL on both sides, streamed in key order from both databases and
// compared. It reports counts (missing, extra, different rows), never row
// values, so its output is safe to print.
package verify

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/schemas"
)

// Querier runs a query; *pgxpool.Pool and *pgx.Conn implement it.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Diff is the comparison of one table.
type Diff struct {
	Table                   string
	SourceRows, StoreRows   int64
	Missing, Extra, Changed int64 // rows only at the source, only in the store, and different
}

// Equal reports whether the store holds exactly the source's rows.
func (d Diff) Equal() bool { return d.Missing == 0 && d.Extra == 0 && d.Changed == 0 }

func (d Diff) String() string {
	return fmt.Sprintf("%s: source %d rows, store %d rows, %d missing, %d extra, %d different",
		d.Table, d.SourceRows, d.StoreRows, d.Missing, d.Extra, d.Changed)
}

// Table compares table t (catalog definition) between the source (schema
// srcSchema, the synthetic PostgreSQL source's layout) and the store (schema
// storeSchema, as the sink writes it). Soft-deleted store rows count as
// absent. The rowversion column is compared as the 8 bytes it becomes.
func Table(ctx context.Context, src, store Querier, srcSchema, storeSchema string, t *schemas.Table) (Diff, error) {
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
	srcRows, err := src.Query(ctx, query(srcCols, pgx.Identifier{srcSchema, t.Name}.Sanitize(), ""))
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
	srcOK, storeOK := next(srcRows, &sk, &sv), next(storeRows, &tk, &tv)
	for srcOK || storeOK {
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
	return d, nil
}

func next(rows pgx.Rows, key, val *string) bool {
	if !rows.Next() {
		return false
	}
	return rows.Scan(key, val) == nil
}
