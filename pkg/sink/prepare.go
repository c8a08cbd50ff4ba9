package sink

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/schemas"
)

// Prepare creates the organization's schema and the table (and its change
// log) when missing, and reconciles columns with the catalog: columns new at
// the source are added; a store column narrower than the source type is
// widened when that is safe; anything else is an error naming the column.
// t should already be projected to the configured column allow-list.
func (s *Sink) Prepare(ctx context.Context, org string, t *schemas.Table, opts TableOptions) (*Target, error) {
	if opts.Schema == "" {
		opts.Schema = SchemaFor(org)
	}
	if opts.DeletePolicy == "" {
		opts.DeletePolicy = DeleteHard
	}
	if opts.DeletePolicy != DeleteHard && opts.DeletePolicy != DeleteSoft {
		return nil, fmt.Errorf("prepare %s: unknown delete policy %q (want hard or soft)", t.QualifiedName(), opts.DeletePolicy)
	}
	schema, err := schemas.ChangeSchema(t)
	if err != nil {
		return nil, fmt.Errorf("prepare %s: %w", t.QualifiedName(), err)
	}
	name := TableName(t)
	if err := checkNames(t, name, opts); err != nil {
		return nil, err
	}
	tg := &Target{
		sink: s, org: org, table: t, opts: opts, schema: schema, key: t.Key,
		ident:   pgx.Identifier{opts.Schema, name},
		changes: pgx.Identifier{opts.Schema, name + ChangeLogSuffix},
		outbox:  pgx.Identifier{opts.Schema, OutboxName(name)},
	}
	for _, c := range t.Columns {
		m, err := schemas.Map(t.Dialect, c.Type)
		if err != nil {
			return nil, fmt.Errorf("prepare %s: column %s: %w", t.QualifiedName(), c.Name, err)
		}
		tg.cols = append(tg.cols, column{name: c.Name, pgType: m.Postgres})
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Processes preparing tables of one schema at once serialize here
		// (CREATE SCHEMA IF NOT EXISTS is not safe against a concurrent
		// creator); the schema's lock is always taken first.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(hashtext('ehrsync.prepare'), hashtext($1))", pgx.Identifier{opts.Schema}.Sanitize()); err != nil {
			return err
		}
		// A writer role without CREATE on the database writes into the
		// schema the owner made for it (storedb.EnsureSchemas): even
		// CREATE SCHEMA IF NOT EXISTS would be refused it.
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT to_regnamespace($1) IS NOT NULL", pgx.Identifier{opts.Schema}.Sanitize()).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{opts.Schema}.Sanitize()); err != nil {
				return err
			}
		}
		if err := tg.canonicalTypes(ctx, tx); err != nil {
			return err
		}
		if err := tg.ensureTable(ctx, tx, tg.ident, tg.createTableSQL()); err != nil {
			return err
		}
		if err := tg.loadDeferral(ctx, tx); err != nil {
			return err
		}
		if err := tg.ensureOutbox(ctx, tx); err != nil {
			return err
		}
		if opts.ChangeLog {
			return tg.ensureTable(ctx, tx, tg.changes, tg.createChangeLogSQL())
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("prepare %s for %s: %w", t.QualifiedName(), org, err)
	}
	h := sha256.New()
	for _, c := range tg.cols {
		fmt.Fprintf(h, "%s %s,", c.name, c.pgType)
	}
	tg.stage = "ehrsync_stage_" + hex.EncodeToString(h.Sum(nil))[:16]
	return tg, nil
}

// maxIdentBytes is PostgreSQL's identifier limit (NAMEDATALEN - 1). A longer
// name is truncated by the server with only a NOTICE: two long names could
// then land in one table or column.
const maxIdentBytes = 63

// checkNames refuses store names PostgreSQL would silently truncate: the
// table's (and its change log's) and each column's. The error names what is
// too long and the fix; names are not row values.
func checkNames(t *schemas.Table, name string, opts TableOptions) error {
	tooLong := func(what, n, fix string) error {
		return fmt.Errorf("prepare %s: %s %q is %d bytes in the store, more than PostgreSQL's %d, which would silently truncate it: %s",
			t.QualifiedName(), what, n, len(n), maxIdentBytes, fix)
	}
	const tableFix = "read the table through a source view with a shorter name, and name the view in a catalog file"
	if len(name) > maxIdentBytes {
		return tooLong("table name", name, tableFix)
	}
	if opts.ChangeLog && len(name+ChangeLogSuffix) > maxIdentBytes {
		return tooLong("change log name", name+ChangeLogSuffix, "turn change_log off for the table, or "+tableFix)
	}
	if opts.Lake && len(OutboxName(name)) > maxIdentBytes {
		return tooLong("lake outbox name", OutboxName(name), "turn lake off for the table, or "+tableFix)
	}
	for _, c := range t.Columns {
		if len(c.Name) > maxIdentBytes {
			return tooLong("column name", c.Name, "leave the column out with the table's columns allow-list, or rename it in a source view")
		}
	}
	return nil
}

// canonicalTypes rewrites each wanted type in PostgreSQL's own spelling
// (format_type), by creating a throwaway table, so that comparisons with the
// existing table are exact.
func (tg *Target) canonicalTypes(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "CREATE TEMP TABLE ehrsync_probe ("+strings.Join(tg.colDefs(), ", ")+") ON COMMIT DROP"); err != nil {
		return fmt.Errorf("check store types: %w", err)
	}
	types, err := columnTypes(ctx, tx, "pg_temp.ehrsync_probe")
	if err != nil {
		return err
	}
	for i := range tg.cols {
		tg.cols[i].pgType = types[tg.cols[i].name]
	}
	_, err = tx.Exec(ctx, "DROP TABLE pg_temp.ehrsync_probe")
	return err
}

// columnTypes returns a table's columns and their types, nil when the table
// does not exist.
func columnTypes(ctx context.Context, tx pgx.Tx, table string) (map[string]string, error) {
	rows, err := tx.Query(ctx, `SELECT a.attname, format_type(a.atttypid, a.atttypmod)
		FROM pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`, table)
	if err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	types := map[string]string{}
	for rows.Next() {
		var name, typ string
		if err := rows.Scan(&name, &typ); err != nil {
			return nil, err
		}
		types[name] = typ
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns of %s: %w", table, err)
	}
	if len(types) == 0 {
		return nil, nil
	}
	return types, nil
}

func (tg *Target) ensureTable(ctx context.Context, tx pgx.Tx, ident pgx.Identifier, create string) error {
	have, err := columnTypes(ctx, tx, ident.Sanitize())
	if err != nil {
		return err
	}
	if have == nil {
		if _, err := tx.Exec(ctx, create); err != nil {
			return fmt.Errorf("create %s: %w", ident.Sanitize(), err)
		}
		return nil
	}
	if err := migrateMeta(ctx, tx, ident, have); err != nil {
		return err
	}
	var problems []error
	for _, c := range tg.cols {
		col := pgx.Identifier{c.name}.Sanitize()
		got, ok := have[c.name]
		switch {
		case !ok:
			// New at the source (or newly allowed): add it. Rows synced
			// before have NULL there until they change or are backfilled.
			_, err = tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" ADD COLUMN "+col+" "+c.pgType)
		case got == c.pgType || holds(got, c.pgType):
			continue
		case holds(c.pgType, got):
			_, err = tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" ALTER COLUMN "+col+" TYPE "+c.pgType)
		default:
			err = &DriftError{Table: ident.Sanitize(), Column: c.name, StoreType: got, SourceType: c.pgType}
		}
		if err != nil {
			problems = append(problems, err)
		}
	}
	return errors.Join(problems...)
}

// legacyPosition is the jsonb copy of the position that rows carried
// before MetaBatch; Prepare drops it (position_history keeps every
// position).
const legacyPosition = "_ehrsync_position"

// migrateMeta brings the sync metadata of a table created by an earlier
// version up to date: rows used to carry a jsonb copy of their chunk's
// position (_ehrsync_position); they now carry the id of the commit's
// position-history entry (_ehrsync_batch), which holds that position. The
// drop is a catalog change (no rewrite); the positions stay in
// ehrsync.position_history.
func migrateMeta(ctx context.Context, tx pgx.Tx, ident pgx.Identifier, have map[string]string) error {
	if _, ok := have[MetaBatch]; !ok {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" ADD COLUMN IF NOT EXISTS "+MetaBatch+" bigint"); err != nil {
			return fmt.Errorf("add %s to %s: %w", MetaBatch, ident.Sanitize(), err)
		}
	}
	if _, ok := have[legacyPosition]; ok {
		if _, err := tx.Exec(ctx, "ALTER TABLE "+ident.Sanitize()+" DROP COLUMN IF EXISTS "+legacyPosition); err != nil {
			return fmt.Errorf("drop %s from %s (it is replaced by %s; drop or change what depends on it, a view for instance): %w",
				legacyPosition, ident.Sanitize(), MetaBatch, err)
		}
	}
	return nil
}

func (tg *Target) createTableSQL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s (", tg.ident.Sanitize())
	keys := map[string]bool{}
	for _, k := range tg.key {
		keys[k] = true
	}
	for _, c := range tg.cols {
		fmt.Fprintf(&b, "%s %s", pgx.Identifier{c.name}.Sanitize(), c.pgType)
		if keys[c.name] {
			b.WriteString(" NOT NULL")
		}
		b.WriteString(", ")
	}
	fmt.Fprintf(&b, "%s text NOT NULL, %s bigint, %s timestamptz NOT NULL DEFAULT now(), %s boolean NOT NULL DEFAULT false, PRIMARY KEY (%s))",
		MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted, tg.keyList(""))
	return b.String()
}

func (tg *Target) createChangeLogSQL() string {
	var b strings.Builder
	fmt.Fprintf(&b, "CREATE TABLE %s (%s bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, ", tg.changes.Sanitize(), MetaChangeID)
	for _, d := range tg.colDefs() {
		b.WriteString(d + ", ")
	}
	fmt.Fprintf(&b, "%s text NOT NULL, %s bigint NOT NULL, %s bytea, %s bytea NOT NULL UNIQUE, %s bigint, %s timestamptz NOT NULL DEFAULT now())",
		MetaOp, schemas.SeqColumn, schemas.SourcePosColumn, MetaChangeKey, MetaBatch, MetaSyncedAt)
	return b.String()
}
