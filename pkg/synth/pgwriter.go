package synth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/schemas"
)

// PostgresWriter applies batches to a PostgreSQL source created by
// CreatePostgres: inserts by binary COPY, updates and deletes as one
// set-based statement per Op, the progress into synth_state, all in one
// transaction per batch.
type PostgresWriter struct {
	pool   *pgxpool.Pool
	schema string
	types  map[string]string // "schema.table.column" -> PostgreSQL type
}

// NewPostgresWriter returns a writer to the source behind pool whose
// synth_state table is in schema (the catalog tables' schema, "dbo").
func NewPostgresWriter(pool *pgxpool.Pool, schema string) *PostgresWriter {
	return &PostgresWriter{pool: pool, schema: schema, types: map[string]string{}}
}

// State reads the stored progress.
func (w *PostgresWriter) State(ctx context.Context) (State, bool, error) {
	var text string
	err := w.pool.QueryRow(ctx, "SELECT state FROM "+pgIdent(w.schema, StateTable)+" WHERE id = 1").Scan(&text)
	if errors.Is(err, pgx.ErrNoRows) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read %s: %w", StateTable, err)
	}
	return decodeState(text)
}

// Apply writes b in one transaction.
func (w *PostgresWriter) Apply(ctx context.Context, b *Batch) error {
	state, err := json.Marshal(b.Progress)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tx, err := w.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		// A no-op after Commit; after a cancellation it still ends the
		// transaction.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_ = tx.Rollback(rctx)
	}()
	for i := range b.Ops {
		if err := w.apply(ctx, tx, &b.Ops[i]); err != nil {
			return err
		}
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+pgIdent(w.schema, StateTable)+" (id, state, updated_at) VALUES (1, $1, now()) "+
		"ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, updated_at = EXCLUDED.updated_at", string(state))
	if err != nil {
		return fmt.Errorf("save %s: %w", StateTable, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (w *PostgresWriter) apply(ctx context.Context, tx pgx.Tx, op *Op) error {
	t := op.Table
	switch op.Kind {
	case schemas.OpInsert:
		rows := make([][]any, len(op.Rows))
		for i, r := range op.Rows {
			row := make([]any, len(r))
			for j, v := range r {
				row[j] = pgValue(v)
			}
			rows[i] = row
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{t.Schema, t.Name}, op.Columns, pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("copy into %s: %w", t.QualifiedName(), err)
		}
		return nil
	case schemas.OpUpdate, schemas.OpDelete:
		for _, part := range uniqueKeyRuns(op) {
			query, args, err := w.setStatement(op, part)
			if err != nil {
				return err
			}
			// QueryExecModeExec plans each statement for its arrays: a
			// cached generic plan guesses the unnest size and may scan.
			if _, err := tx.Exec(ctx, query, append([]any{pgx.QueryExecModeExec}, args...)...); err != nil {
				return fmt.Errorf("%s %s: %w", op.Kind, t.QualifiedName(), err)
			}
		}
		return nil
	}
	return fmt.Errorf("op %s on %s: unknown kind", op.Kind, t.QualifiedName())
}

// uniqueKeyRuns splits an update or delete's rows into runs in which no key
// repeats, so that a set-based statement per run keeps the rows' order.
func uniqueKeyRuns(op *Op) [][][]any {
	nk := len(op.Table.Key)
	var runs [][][]any
	start := 0
	seen := map[string]bool{}
	for i, r := range op.Rows {
		k := fmt.Sprint(r[len(r)-nk:]...)
		if seen[k] {
			runs = append(runs, op.Rows[start:i])
			start = i
			clear(seen)
		}
		seen[k] = true
	}
	return append(runs, op.Rows[start:])
}

// setStatement builds
//
//	UPDATE t SET c = v.c0::type, ... FROM unnest($1::text[], ...) AS v(c0, ..., k0)
//	WHERE t.key = v.k0::type
//
// (or DELETE ... USING), every value passed as text and cast to its column's
// type.
func (w *PostgresWriter) setStatement(op *Op, rows [][]any) (string, []any, error) {
	t := op.Table
	cols := append(append([]string(nil), op.Columns...), t.Key...)
	names := make([]string, len(cols))
	params := make([]string, len(cols))
	args := make([]any, len(cols))
	types := make([]string, len(cols))
	for j, c := range cols {
		typ, err := w.columnType(t, c)
		if err != nil {
			return "", nil, err
		}
		types[j] = typ
		names[j] = "c" + strconv.Itoa(j)
		params[j] = "$" + strconv.Itoa(j+1) + "::text[]"
		vals := make([]pgtype.Text, len(rows))
		for i, r := range rows {
			vals[i] = pgText(r[j])
		}
		args[j] = vals
	}
	var set, where []string
	for j, c := range cols {
		expr := "v." + names[j] + "::" + types[j]
		if j < len(op.Columns) {
			set = append(set, pgIdent(c)+" = "+expr)
		} else {
			where = append(where, "t."+pgIdent(c)+" = "+expr)
		}
	}
	from := "unnest(" + strings.Join(params, ", ") + ") AS v(" + strings.Join(names, ", ") + ")"
	table := pgIdent(t.Schema, t.Name) + " AS t"
	if op.Kind == schemas.OpDelete {
		return "DELETE FROM " + table + " USING " + from + " WHERE " + strings.Join(where, " AND "), args, nil
	}
	return "UPDATE " + table + " SET " + strings.Join(set, ", ") + " FROM " + from + " WHERE " + strings.Join(where, " AND "), args, nil
}

func (w *PostgresWriter) columnType(t *schemas.Table, col string) (string, error) {
	k := t.QualifiedName() + "." + col
	if typ, ok := w.types[k]; ok {
		return typ, nil
	}
	c, ok := t.Column(col)
	if !ok {
		return "", fmt.Errorf("table %s has no column %s", t.QualifiedName(), col)
	}
	typ, err := PostgresType(t, c)
	if err != nil {
		return "", err
	}
	w.types[k] = typ
	return typ, nil
}

// pgValue converts a batch value for pgx.
func pgValue(v any) any {
	switch v := v.(type) {
	case UUID:
		return pgtype.UUID{Bytes: v, Valid: true}
	case Amount:
		return pgtype.Numeric{Int: big.NewInt(int64(v)), Exp: -2, Valid: true}
	}
	return v
}

// pgText renders a batch value as PostgreSQL input text.
func pgText(v any) pgtype.Text {
	switch v := v.(type) {
	case nil:
		return pgtype.Text{}
	case string:
		return pgtype.Text{String: v, Valid: true}
	case time.Time:
		return pgtype.Text{String: v.Format("2006-01-02 15:04:05.000"), Valid: true}
	case bool:
		return pgtype.Text{String: strconv.FormatBool(v), Valid: true}
	case []byte:
		return pgtype.Text{String: `\x` + fmt.Sprintf("%x", v), Valid: true}
	}
	return pgtype.Text{String: fmt.Sprint(v), Valid: true}
}
