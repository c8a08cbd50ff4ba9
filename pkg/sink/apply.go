package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ehrsync/ehrsync/schemas"
)

// createStageSQL creates the connection's staging table for the target's
// column set, once.
func (tg *Target) createStageSQL() string {
	defs := append(tg.colDefs(), schemas.OpColumn+" smallint", schemas.SeqColumn+" bigint", schemas.SourcePosColumn+" bytea")
	// Set by the apply on a staged delete whose key the target held. Every
	// staging table has it: one may serve tables with and without a change
	// log (its name hashes only the columns).
	defs = append(defs, stageHeld+" boolean NOT NULL DEFAULT false")
	// Set by the COPY on a row whose key the chunk before also holds: its
	// apply waits for that chunk's commit (partLate).
	defs = append(defs, stageLate+" boolean NOT NULL DEFAULT false")
	return "CREATE TEMP TABLE IF NOT EXISTS " + pgx.Identifier{tg.stage}.Sanitize() + " (" + strings.Join(defs, ", ") + ") ON COMMIT DELETE ROWS"
}

// stageHeld is the staging table's column that says a staged delete's key
// was in the target when the chunk was applied.
const stageHeld = "_ehrsync_held"

// stageLate is the staging table's column that says a staged row's key is
// one the chunk before also holds.
const stageLate = "_ehrsync_late"

// An apply part is which staged rows one apply statement takes: all of
// them, or, for a chunk that shares keys with the one committing before it
// (Pending.late), those of the keys it does not share (upserted early, while
// that one commits) or those it does (at commit, after it).
type applyPart int

const (
	partAll applyPart = iota
	partEarly
	partLate
)

// where is the condition on the staged rows, aliased alias, of the part;
// "" for partAll.
func (part applyPart) where(alias string) string {
	switch part {
	case partEarly:
		return "NOT " + qualify(alias, stageLate)
	case partLate:
		return qualify(alias, stageLate)
	}
	return ""
}

// copyToStage copies rec into the staging table: straight from the Arrow
// columns when every column has a direct encoding (copyEncoder), through
// pgx's encoder otherwise. With late (one flag per row, direct encodings
// only) it sets each row's stageLate.
func (tg *Target) copyToStage(ctx context.Context, conn *pgx.Conn, rec arrow.RecordBatch, late []bool) error {
	names, types := tg.stageColumns()
	if enc, ok := newCopyEncoder(rec, types); ok {
		if late != nil {
			names = append(names, stageLate)
			enc.fields = append(enc.fields, func(b []byte, i int) []byte {
				v := byte(0)
				if late[i] {
					v = 1
				}
				return append(b, 0, 0, 0, 1, v)
			})
		}
		cols := make([]string, len(names))
		for i, n := range names {
			cols[i] = pgx.Identifier{n}.Sanitize()
		}
		sql := "COPY " + pgx.Identifier{"pg_temp", tg.stage}.Sanitize() + " (" + strings.Join(cols, ", ") + ") FROM STDIN BINARY"
		// pgconn reads enc from a goroutine that can outlive CopyFrom when
		// the connection fails or ctx is canceled; the caller releases rec
		// after we return, so the guard stops every read then.
		g := &guardedReader{r: enc}
		_, err := conn.PgConn().CopyFrom(ctx, g, sql)
		g.close()
		if err != nil {
			return fmt.Errorf("copy into staging: %w", err)
		}
		return nil
	}
	if late != nil {
		return errors.New("copy into staging: rows marked late need a direct encoding")
	}
	src, err := newRecordSource(rec)
	if err != nil {
		return err
	}
	if _, err := conn.CopyFrom(ctx, pgx.Identifier{"pg_temp", tg.stage}, names, src); err != nil {
		return fmt.Errorf("copy into staging: %w", err)
	}
	return nil
}

// stageColumns are the names and store types of the staging table's
// columns that a batch fills, in batch order.
func (tg *Target) stageColumns() (names, types []string) {
	names = make([]string, 0, len(tg.cols)+3)
	types = make([]string, 0, len(tg.cols)+3)
	for _, c := range tg.cols {
		names = append(names, c.name)
		types = append(types, c.pgType)
	}
	names = append(names, schemas.OpColumn, schemas.SeqColumn, schemas.SourcePosColumn)
	types = append(types, "smallint", "bigint", "bytea") // op, seq, source position
	return names, types
}

// directStage reports whether rec goes into the staging table straight
// from its Arrow columns.
func (tg *Target) directStage(rec arrow.RecordBatch) bool {
	_, types := tg.stageColumns()
	_, ok := newCopyEncoder(rec, types)
	return ok
}

// applyStatement is applySQL(unique, deletes, part), built once.
func (tg *Target) applyStatement(unique, deletes bool, part applyPart) string {
	i := int(part) << 2
	if unique {
		i |= 1
	}
	if deletes {
		i |= 2
	}
	if tg.applies[i] == "" {
		tg.applies[i] = tg.applySQL(unique, deletes, part)
	}
	return tg.applies[i]
}

// applySQL collapses the staged changes to the last one per key (in source
// order) and applies them in one statement: the deletes and the upserts touch
// disjoint keys. Upserts that would not change a row skip it, so a replayed
// batch rewrites nothing. An upsert's _ehrsync_op says what it did to the
// store, whatever the source called the change: insert when the key was
// not there (or was a tombstone), update when it was; the counts are the
// same. With unique (no key staged twice) there is nothing to collapse;
// without deletes the statement has no delete step and reads the staged
// rows once (a CTE read twice is copied aside first). part limits it to a
// part of the staged rows. Returns (keys, deleted, inserted, updated).
func (tg *Target) applySQL(unique, deletes bool, part applyPart) string {
	stage := pgx.Identifier{tg.stage}.Sanitize()
	target := tg.ident.Sanitize()
	keyMatch := tg.keyMatch("t", "l")
	var cols, excluded, current, sets []string
	for _, c := range tg.cols {
		q := pgx.Identifier{c.name}.Sanitize()
		cols = append(cols, q)
		// json has no equality operator: compare its text.
		cast := ""
		if c.pgType == "json" {
			cast = "::text"
		}
		excluded = append(excluded, "EXCLUDED."+q+cast)
		current = append(current, "t."+q+cast)
		sets = append(sets, q+" = EXCLUDED."+q)
	}
	sets = append(sets, fmt.Sprintf("%[1]s = CASE WHEN t.%[2]s THEN 'insert' ELSE 'update' END", MetaOp, MetaDeleted))
	for _, m := range []string{MetaBatch, MetaSyncedAt, MetaDeleted} {
		sets = append(sets, m+" = EXCLUDED."+m)
	}
	current = append(current, "t."+MetaDeleted)
	excluded = append(excluded, "EXCLUDED."+MetaDeleted)

	var del string
	if tg.opts.DeletePolicy == DeleteSoft {
		del = fmt.Sprintf(`UPDATE %s t SET %s = 'delete', %s = $1::bigint, %s = now(), %s = true
			FROM last l WHERE l.%s = %d AND %s AND NOT t.%s RETURNING 1`,
			target, MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted,
			schemas.OpColumn, schemas.OpDelete, keyMatch, MetaDeleted)
	} else {
		del = fmt.Sprintf(`DELETE FROM %s t USING last l WHERE l.%s = %d AND %s RETURNING 1`,
			target, schemas.OpColumn, schemas.OpDelete, keyMatch)
	}
	// The part's staged rows; the changes of one key are all in one part.
	staged := stage
	if w := part.where(""); w != "" {
		staged = stage + " WHERE " + w
	}
	last := fmt.Sprintf("SELECT DISTINCT ON (%[1]s) * FROM %[2]s ORDER BY %[1]s, %[3]s DESC", tg.keyList(""), staged, schemas.SeqColumn)
	// upsert inserts or updates from the changes in from (alias l).
	upsert := func(from string) string {
		return fmt.Sprintf(`INSERT INTO %[1]s AS t (%[2]s, %[3]s, %[4]s, %[5]s, %[6]s)
		SELECT %[7]s, 'insert', $1::bigint, now(), false
		FROM %[13]s l WHERE l.%[8]s <> %[9]d
		ON CONFLICT (%[10]s) DO UPDATE SET %[11]s
		WHERE (%[12]s) IS DISTINCT FROM (%[14]s)
		RETURNING t.%[3]s = 'insert' AS inserted`,
			target, strings.Join(cols, ", "), MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted,
			prefixAll("l.", cols), schemas.OpColumn, schemas.OpDelete,
			tg.keyList(""), strings.Join(sets, ", "), strings.Join(current, ", "), from, strings.Join(excluded, ", "))
	}
	held := ""
	if tg.opts.ChangeLog {
		// Which staged changes find their key in the target, as it is
		// before this statement (every CTE sees that state): the change log
		// calls a change an insert or an update by it, as the upsert does,
		// and records a delete only when its key was there (changeLogSQL).
		live := ""
		if tg.opts.DeletePolicy == DeleteSoft {
			live = " AND NOT t." + MetaDeleted // a tombstone is not held
		}
		if w := part.where("s"); w != "" {
			live += " AND " + w
		}
		held = fmt.Sprintf(`, held AS (UPDATE %s s SET %s = true FROM %s t WHERE %s%s RETURNING 1
	)`, stage, stageHeld, target, tg.keyMatch("t", "s"), live)
	}
	if !deletes {
		from, with := stage, ""
		switch {
		case !unique:
			from, with = "last", "last AS ("+last+"), "
		case part != partAll:
			from, with = "last", "last AS (SELECT * FROM "+staged+"), "
		}
		return fmt.Sprintf(`WITH %sups AS (%s)%s
	SELECT (SELECT count(*) FROM %s), 0, count(*) FILTER (WHERE inserted), count(*) FILTER (WHERE NOT inserted) FROM ups`,
			with, upsert(from), held, from)
	}
	if unique {
		last = "SELECT * FROM " + staged
	}
	return fmt.Sprintf(`WITH last AS (%s
	), del AS (%s
	), ups AS (%s
	)%s
	SELECT (SELECT count(*) FROM last), (SELECT count(*) FROM del), (SELECT count(*) FROM ups WHERE inserted), (SELECT count(*) FROM ups WHERE NOT inserted)`,
		last, del, upsert("last"), held)
}

// queueApply queues, on b, the apply statement stmt of the staged rows,
// which adds to the result's counts.
func (p *Pending) queueApply(b *pgx.Batch, stmt string) {
	b.Queue(stmt, p.c.id).QueryRow(func(row pgx.Row) error {
		var keys, deleted, inserted, updated int64
		if err := row.Scan(&keys, &deleted, &inserted, &updated); err != nil {
			return fmt.Errorf("apply staged changes: %w", err)
		}
		p.res.Deleted += deleted
		p.res.Inserted += inserted
		p.res.Updated += updated
		p.res.Unchanged += keys - deleted - inserted - updated
		return nil
	})
}

// changeLogSQL appends every staged change in source order, each once: a
// change's key in the log is its source position where the strategy has one
// (CDC), and otherwise a digest of its row image (plus, for a delete, the
// chunk's position), so that re-reading the same row image (a look-back
// window, a snapshot every run, the first run's handoff) logs it once.
// Whether the store held the key just before a change decides what it is
// logged as: held when the chunk's previous change of the key is not a
// delete, or the chunk has none before it and the target held the key when
// the chunk was applied (the apply marks it). A change of a key held is an
// update, of one not held an insert, whatever the source called it, as in
// the target's _ehrsync_op. A delete is logged only when the key was held:
// a delete of a key the store did not hold (another practice's row, read
// as a key-only delete; a key already deleted) leaves no trace. $1 is the
// chunk's position (its text), $2 the commit's batch id.
func (tg *Target) changeLogSQL() string {
	cols := tg.colNames()
	const prev = "_ehrsync_prev_op"
	held := fmt.Sprintf("(s.%[1]s IS NULL AND s.%[2]s OR s.%[1]s <> %[3]d)", prev, stageHeld, schemas.OpDelete)
	return fmt.Sprintf(`INSERT INTO %s (%s, %s, %s, %s, %s, %s)
		SELECT %s, CASE WHEN s.%s = %d THEN 'delete' WHEN %s THEN 'update' ELSE 'insert' END, %s, %s,
			coalesce(%s, decode(md5(CASE WHEN %s = %d THEN $1::text ELSE '' END || ROW(%s)::text), 'hex')), $2::bigint
		FROM (SELECT *, lag(%s) OVER (PARTITION BY %s ORDER BY %s) AS %s FROM %s) s
		WHERE s.%s <> %d OR %s
		ORDER BY %s
		ON CONFLICT (%s) DO NOTHING`,
		tg.changes.Sanitize(), strings.Join(cols, ", "), MetaOp, schemas.SeqColumn, schemas.SourcePosColumn, MetaChangeKey, MetaBatch,
		prefixAll("s.", cols), schemas.OpColumn, schemas.OpDelete, held, "s."+schemas.SeqColumn, "s."+schemas.SourcePosColumn,
		"s."+schemas.SourcePosColumn, "s."+schemas.OpColumn, schemas.OpDelete, prefixAll("s.", cols),
		schemas.OpColumn, tg.keyList(""), schemas.SeqColumn, prev, pgx.Identifier{tg.stage}.Sanitize(),
		schemas.OpColumn, schemas.OpDelete, held,
		"s."+schemas.SeqColumn, MetaChangeKey)
}

// queueChangeLog queues, on b, the staged rows' change-log append, when
// the table keeps one. It runs at commit, after the chunk before has
// committed: two chunks may log one change key.
func (p *Pending) queueChangeLog(b *pgx.Batch) {
	if p.tg.opts.ChangeLog {
		b.Queue(p.tg.changeLogSQL(), p.c.pos, p.c.id).Exec(func(tag pgconn.CommandTag) error {
			p.res.Logged = tag.RowsAffected()
			return nil
		})
	}
}
