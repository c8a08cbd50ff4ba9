package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/lake/laketest"
	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/schemas"
)

// withLake turns the change lake on for every table of the environment's
// configuration, in a warehouse directory of the test's own.
func (e *env) withLake(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(e.config)
	require.NoError(t, err)
	cfg := strings.Replace(string(b), "defaults:\n", fmt.Sprintf("lake:\n  warehouse: %q\ndefaults:\n", "file://"+t.TempDir()), 1)
	cfg = strings.ReplaceAll(cfg, "strategy: auto,", "strategy: auto, lake: true,")
	require.Contains(t, cfg, "lake: true")
	require.NoError(t, os.WriteFile(e.config, []byte(cfg), 0o600))
}

// lakeRows reads table's lake table with the independent reader (DuckDB
// and avsc from npm): nil when the lake has no such table.
func (e *env) lakeRows(t *testing.T, tb *schemas.Table) []laketest.Row {
	t.Helper()
	lt := engine.LakeTable(org, tb)
	var meta string
	err := e.store.QueryRow(context.Background(), "SELECT metadata_location FROM ehrsync_lake.iceberg_tables WHERE catalog_name = $1 AND table_namespace = $2 AND table_name = $3",
		lake.CatalogName, lt.Schema, lt.Ident()[1]).Scan(&meta)
	if err == pgx.ErrNoRows {
		return nil
	}
	require.NoError(t, err)
	return laketest.Read(t, meta)
}

// lakeCheck is what requireLakeExact compared: rows, the store commits
// they are of, and the tables whose last images were compared.
type lakeCheck struct {
	rows, batches int64
	imaged        int
}

// requireLakeExact flushes the lake, then checks every table's lake table
// against the store's commits, read by the independent reader: every lake
// row is of a store commit (the table's position history, its backfills'
// included, and its reconciliations), no commit's row is there twice (a
// commit's rows are its changes: all of a CDC chunk's or of a load into an
// empty table, those of an observation that changed the store), and no
// commit has more rows there than it committed. Unless a table is in
// skipImages, it also checks that each key's last change in the lake is
// the store's row, column by column (or a delete of a key the store no
// longer holds), which a lost commit would break.
func (e *env) requireLakeExact(t *testing.T, skipImages map[string]bool) lakeCheck {
	t.Helper()
	ctx := context.Background()
	out, err := e.run(t, "lake", "flush", "--config", e.config, "--actor", "lake-test")
	require.NoError(t, err, out)
	var c lakeCheck
	for _, tb := range schemas.NextGen().Tables() {
		q := tb.QualifiedName()
		var waiting int64
		require.NoError(t, e.store.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{sink.SchemaFor(org), sink.OutboxName(sink.TableName(tb))}.Sanitize()).Scan(&waiting))
		require.Zero(t, waiting, "%s: the outbox still holds chunks after a flush", q)

		hist, err := e.store.Query(ctx, `SELECT id, rows FROM ehrsync.position_history
			WHERE org = $1 AND table_name IN ($2, $3) AND rows > 0`, org, q, engine.BackfillPosition(q))
		require.NoError(t, err)
		committed := map[int64]int64{}
		for hist.Next() {
			var id, n int64
			require.NoError(t, hist.Scan(&id, &n))
			committed[id] = n
		}
		require.NoError(t, hist.Err())

		lakeRows := e.lakeRows(t, tb)
		got := map[int64]int64{}
		seen := map[[2]int64]bool{}
		var twice int
		for _, r := range lakeRows {
			id := [2]int64{number(t, r[lake.BatchColumn]), number(t, r[schemas.SeqColumn])}
			if seen[id] {
				twice++
			}
			seen[id] = true
			got[id[0]]++
		}
		require.Zero(t, twice, "%s: lake rows there twice (one commit's row, by its batch and seq)", q)
		var extra []string
		for id, n := range got {
			if want, ok := committed[id]; !ok || n > want {
				extra = append(extra, fmt.Sprintf("batch %d: %d rows in the lake, %d committed", id, n, want))
			}
		}
		slices.Sort(extra)
		require.Empty(t, extra, "%s: lake rows of no store commit, or more than it committed", q)
		c.rows += int64(len(lakeRows))
		c.batches += int64(len(got))
		if !skipImages[q] {
			e.requireLakeLastImages(t, tb, lakeRows)
			c.imaged++
		}
	}
	require.Positive(t, c.rows)
	return c
}

// requireLakeLastImages checks that the last change of each key in the lake
// (by commit, then source order) is the store's row: every column, as the
// reader renders it; and that the keys whose last change is a delete are
// not in the store.
func (e *env) requireLakeLastImages(t *testing.T, tb *schemas.Table, lakeRows []laketest.Row) {
	t.Helper()
	slices.SortStableFunc(lakeRows, func(a, b laketest.Row) int {
		if d := number(t, a[lake.BatchColumn]) - number(t, b[lake.BatchColumn]); d != 0 {
			return int(d)
		}
		return int(number(t, a[schemas.SeqColumn]) - number(t, b[schemas.SeqColumn]))
	})
	cols := make([]string, len(tb.Columns))
	for i, c := range tb.Columns {
		cols[i] = c.Name
	}
	keyOf := func(values func(string) string) string {
		parts := make([]string, len(tb.Key))
		for i, k := range tb.Key {
			parts[i] = values(k)
		}
		return strings.Join(parts, "|")
	}
	last := map[string]laketest.Row{}
	for _, r := range lakeRows {
		last[keyOf(func(c string) string { return lakeText(r[c]) })] = r
	}
	store := e.storeRows(t, tb, cols)
	for k, r := range last {
		row, held := store[k]
		if number(t, r[schemas.OpColumn]) == int64(schemas.OpDelete) {
			require.False(t, held, "%s: a key the lake last deleted is in the store", tb.QualifiedName())
			continue
		}
		require.True(t, held, "%s: a key the lake holds is not in the store", tb.QualifiedName())
		for i, c := range cols {
			if row[i] != lakeText(r[c]) { // values stay out of the test's output
				t.Fatalf("%s: column %s of a key's last change in the lake differs from the store's row", tb.QualifiedName(), c)
			}
		}
		delete(store, k)
	}
	require.Zero(t, len(store), "%s: store rows with no change in the lake", tb.QualifiedName())
}

// storeRows are the store's rows of tb, by key, each column rendered as
// the lake reader renders its type.
func (e *env) storeRows(t *testing.T, tb *schemas.Table, cols []string) map[string][]string {
	t.Helper()
	ctx := context.Background()
	ident := pgx.Identifier{sink.SchemaFor(org), sink.TableName(tb)}
	types, err := e.store.Query(ctx, `SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2`, ident[0], ident[1])
	require.NoError(t, err)
	typeOf := map[string]string{}
	for types.Next() {
		var n, ty string
		require.NoError(t, types.Scan(&n, &ty))
		typeOf[n] = ty
	}
	require.NoError(t, types.Err())
	exprs := make([]string, len(cols))
	for i, c := range cols {
		col := pgx.Identifier{c}.Sanitize()
		switch typeOf[c] {
		case "timestamp without time zone", "timestamp with time zone":
			exprs[i] = "(extract(epoch FROM " + col + ") * 1000000)::bigint::text"
		case "date":
			exprs[i] = "to_char(" + col + ", 'YYYY-MM-DD')"
		case "bytea":
			exprs[i] = "encode(" + col + ", 'hex')"
		case "character":
			exprs[i] = "rtrim(" + col + "::text)"
		default:
			exprs[i] = col + "::text"
		}
		exprs[i] = "coalesce(" + exprs[i] + ", 'NULL')"
	}
	rows, err := e.store.Query(ctx, "SELECT "+strings.Join(exprs, ", ")+" FROM "+ident.Sanitize())
	require.NoError(t, err)
	defer rows.Close()
	out := map[string][]string{}
	keyAt := make([]int, len(tb.Key))
	for i, k := range tb.Key {
		keyAt[i] = slices.Index(cols, k)
	}
	for rows.Next() {
		vals := make([]string, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		require.NoError(t, rows.Scan(ptrs...))
		key := make([]string, len(keyAt))
		for i, j := range keyAt {
			key[i] = vals[j]
		}
		out[strings.Join(key, "|")] = vals
	}
	require.NoError(t, rows.Err())
	return out
}

// lakeText renders a reader value as storeRows renders the store's.
func lakeText(v any) string {
	switch v := v.(type) {
	case nil:
		return "NULL"
	case string:
		return strings.TrimRight(v, " ")
	default:
		return fmt.Sprint(v)
	}
}

func number(t *testing.T, v any) int64 {
	t.Helper()
	var n int64
	_, err := fmt.Sscan(fmt.Sprint(v), &n)
	require.NoError(t, err, "not a number")
	return n
}

// TestLakeAgreesWithTheStore: with the lake on, the first sync and an
// incremental after a workload (inserts, updates, deletes found by
// reconciliation) reach the lake once each, the last change of every key
// in the lake, read by an independent reader, is the store's row (which
// verify compares with the source), and a sync with nothing new adds
// nothing.
func TestLakeAgreesWithTheStore(t *testing.T) {
	e := newEnv(t, 20, 2000)
	e.withLake(t)
	e.sync(t)
	require.Positive(t, e.requireEqual(t))
	first := e.requireLakeExact(t, nil)

	e.simulate(t, 3)
	e.sync(t)
	e.requireEqual(t)
	second := e.requireLakeExact(t, nil)
	require.Greater(t, second.rows, first.rows)
	require.Greater(t, second.batches, first.batches)

	// Nothing new at the source: the syncs read the snapshot tables again
	// and change nothing, so nothing reaches the lake.
	e.sync(t)
	third := e.requireLakeExact(t, nil)
	require.Equal(t, second, third)

	// Each lake commit is audited, in the audit's hash chain: the syncs'
	// (actor sync) and nothing from the hand flushes, which found nothing
	// waiting.
	var commits, rows int64
	require.NoError(t, e.store.QueryRow(context.Background(),
		"SELECT count(*), coalesce(sum(rows_inserted), 0) FROM ehrsync.audit WHERE action = 'lake' AND outcome = 'ok'").Scan(&commits, &rows))
	require.Positive(t, commits)
	require.Equal(t, third.rows, rows, "the audited lake rows are the lake's")
	out, err := e.run(t, "audit", "verify", "--config", e.config)
	require.NoError(t, err, out)
}
