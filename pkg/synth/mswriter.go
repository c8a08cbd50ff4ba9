package synth

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/ehrsync/ehrsync/schemas"
)

// SQLServerWriter applies batches to a SQL Server source created with
// SQLServerStatements, through database/sql (the caller opens db with the
// sqlserver driver). It sends the statements SQLServerBatch returns, then
// the progress, in one transaction per batch. Parameters are @p1, @p2, ...;
// GUIDs and amounts travel as strings and convert on the server.
type SQLServerWriter struct {
	db     *sql.DB
	schema string
}

// NewSQLServerWriter returns a writer to db whose synth_state table is in
// schema ("dbo").
func NewSQLServerWriter(db *sql.DB, schema string) *SQLServerWriter {
	return &SQLServerWriter{db: db, schema: schema}
}

// Statement is one parameterized T-SQL statement.
type Statement struct {
	SQL  string
	Args []any
}

// State reads the stored progress.
func (w *SQLServerWriter) State(ctx context.Context) (State, bool, error) {
	var text string
	err := w.db.QueryRowContext(ctx, "SELECT [state] FROM "+msIdent(w.schema, StateTable)+" WHERE [id] = 1").Scan(&text)
	if errors.Is(err, sql.ErrNoRows) {
		return State{}, false, nil
	}
	if err != nil {
		return State{}, false, fmt.Errorf("read %s: %w", StateTable, err)
	}
	return decodeState(text)
}

// Apply writes b in one transaction.
func (w *SQLServerWriter) Apply(ctx context.Context, b *Batch) (err error) {
	stmts, err := SQLServerBatch(b, w.schema)
	if err != nil {
		return err
	}
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() {
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	for _, s := range stmts {
		if _, err := tx.ExecContext(ctx, s.SQL, s.Args...); err != nil {
			return fmt.Errorf("exec: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// SQLServer limits: 2,100 parameters a statement, 1,000 rows a VALUES list.
const (
	msMaxParams = 2000
	msMaxRows   = 1000
)

// SQLServerBatch returns the statements that apply b to SQL Server, the
// progress upsert into schema's synth_state last.
func SQLServerBatch(b *Batch, schema string) ([]Statement, error) {
	var out []Statement
	for i := range b.Ops {
		op := &b.Ops[i]
		t := op.Table
		table := msIdent(t.Schema, t.Name)
		switch op.Kind {
		case schemas.OpInsert:
			if len(op.Columns) == 0 {
				return nil, fmt.Errorf("insert into %s: no columns", t.QualifiedName())
			}
			cols := make([]string, len(op.Columns))
			for j, c := range op.Columns {
				cols[j] = msIdent(c)
			}
			per := max(1, min(msMaxRows, msMaxParams/len(cols)))
			for start := 0; start < len(op.Rows); start += per {
				rows := op.Rows[start:min(start+per, len(op.Rows))]
				var sb strings.Builder
				sb.WriteString("INSERT INTO " + table + " (" + strings.Join(cols, ", ") + ") VALUES ")
				args := make([]any, 0, len(rows)*len(cols))
				for i, r := range rows {
					if i > 0 {
						sb.WriteString(", ")
					}
					sb.WriteByte('(')
					for j, v := range r {
						if j > 0 {
							sb.WriteString(", ")
						}
						args = append(args, msValue(v))
						sb.WriteString("@p" + strconv.Itoa(len(args)))
					}
					sb.WriteByte(')')
				}
				out = append(out, Statement{SQL: sb.String(), Args: args})
			}
		case schemas.OpUpdate, schemas.OpDelete:
			var sb strings.Builder
			n := 0
			param := func() string { n++; return "@p" + strconv.Itoa(n) }
			if op.Kind == schemas.OpUpdate {
				sb.WriteString("UPDATE " + table + " SET ")
				for j, c := range op.Columns {
					if j > 0 {
						sb.WriteString(", ")
					}
					sb.WriteString(msIdent(c) + " = " + param())
				}
			} else {
				sb.WriteString("DELETE FROM " + table)
			}
			sb.WriteString(" WHERE ")
			for j, k := range t.Key {
				if j > 0 {
					sb.WriteString(" AND ")
				}
				sb.WriteString(msIdent(k) + " = " + param())
			}
			query := sb.String()
			for _, r := range op.Rows {
				args := make([]any, len(r))
				for j, v := range r {
					args[j] = msValue(v)
				}
				out = append(out, Statement{SQL: query, Args: args})
			}
		default:
			return nil, fmt.Errorf("op %s on %s: unknown kind", op.Kind, t.QualifiedName())
		}
	}
	state, err := json.Marshal(b.Progress)
	if err != nil {
		return nil, fmt.Errorf("encode state: %w", err)
	}
	st := msIdent(schema, StateTable)
	out = append(out, Statement{
		SQL: "UPDATE " + st + " SET [state] = @p1, [updated_at] = SYSUTCDATETIME() WHERE [id] = 1;\n" +
			"IF @@ROWCOUNT = 0 INSERT INTO " + st + " ([id], [state], [updated_at]) VALUES (1, @p1, SYSUTCDATETIME())",
		Args: []any{string(state)},
	})
	return out, nil
}

// msValue converts a batch value to a database/sql argument.
func msValue(v any) any {
	switch v := v.(type) {
	case UUID:
		return strings.ToUpper(v.String())
	case Amount:
		return v.String()
	case time.Time:
		return v
	}
	return v
}
