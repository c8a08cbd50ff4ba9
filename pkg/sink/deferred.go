package sink

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ehrsync/ehrsync/watermarks"
)

// A first snapshot loads, then indexes, as pg_dump does: when a table is
// empty as its first snapshot starts, its primary key and secondary indexes
// are dropped (their definitions kept in ehrsync.deferred_indexes, in the
// same transaction), the pass's chunks are copied straight into the bare
// table, and the indexes are built again in the transaction of the chunk
// that ends the pass, which is the one that moves the position out of the
// snapshot. So:
//
//   - no chunk commits a position past the pass without the indexes;
//   - each loaded chunk also records its position in deferred_indexes
//     (loaded_to), in its own transaction: a pass resumed by a new process
//     continues straight into the bare table only from exactly there, where
//     a keyset snapshot cannot meet a key it has loaded (a position reset
//     or rewound elsewhere does not match, and its chunk builds the
//     indexes first, then upserts);
//   - a chunk that is not to be loaded straight in while the indexes are
//     deferred builds them first, in its own transaction, before it writes:
//     nothing upserts into a table without its primary key;
//   - duplicate keys loaded from a broken source make the build fail: the
//     chunk, and so the pass's end, fails with KeyBuildError, naming the
//     table and the fix.
//
// A table some other object depends on through an index (a foreign key
// referencing it) or that the store role does not own keeps its indexes
// and today's direct path (direct.go).

// loadDeferral reads whether the target's first snapshot is loading it
// without its indexes, and where a resumed pass continues. A table that
// has its primary key is not loading so (it was dropped and created again
// since, say): its record is removed.
func (tg *Target) loadDeferral(ctx context.Context, q pgx.Tx) error {
	var loadedTo []byte
	var keyed bool
	err := q.QueryRow(ctx, `SELECT loaded_to, EXISTS (SELECT FROM pg_index WHERE indrelid = $3::regclass AND indisprimary)
		FROM ehrsync.deferred_indexes WHERE schema_name = $1 AND table_name = $2`,
		tg.ident[0], tg.ident[1], tg.ident.Sanitize()).Scan(&loadedTo, &keyed)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return nil
	case err != nil:
		return fmt.Errorf("read the deferred indexes of %s: %w", tg.ident.Sanitize(), err)
	case keyed:
		_, err = q.Exec(ctx, "DELETE FROM ehrsync.deferred_indexes WHERE schema_name = $1 AND table_name = $2", tg.ident[0], tg.ident[1])
		return err
	}
	tg.deferred = true
	tg.directAfter = loadedTo
	return nil
}

// deferIndexes drops the target's indexes, keeping their definitions, when
// the target is empty, owned by the store role and no foreign key refers to
// it; in a transaction of its own on conn, which it ends. A lock it cannot
// take within directLockTimeout (a reader holding the table) leaves the
// indexes where they are, as does any other failure: the load then goes
// through today's path.
func (tg *Target) deferIndexes(ctx context.Context, conn *pgx.Conn) {
	table := tg.ident.Sanitize()
	// A table with rows keeps its indexes; it is not locked to learn that.
	var empty bool
	if err := conn.QueryRow(ctx, "SELECT NOT EXISTS (SELECT FROM "+table+")").Scan(&empty); err != nil || !empty {
		return
	}
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '"+directLockTimeout+"'"); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
			return err
		}
		var ok bool
		if err := tx.QueryRow(ctx, `SELECT NOT EXISTS (SELECT FROM `+table+`)
			AND pg_has_role(c.relowner, 'USAGE')
			AND NOT EXISTS (SELECT FROM pg_constraint f WHERE f.confrelid = c.oid)
			FROM pg_class c WHERE c.oid = $1::regclass`, table).Scan(&ok); err != nil || !ok {
			return errNotDeferred
		}
		rows, err := tx.Query(ctx, `SELECT con.conname IS NOT NULL,
				coalesce(quote_ident(con.conname), quote_ident(n.nspname) || '.' || quote_ident(ic.relname)),
				CASE WHEN con.oid IS NULL THEN pg_get_indexdef(i.indexrelid)
				ELSE 'ALTER TABLE ' || $2::text || ' ADD CONSTRAINT ' || quote_ident(con.conname) || ' ' || pg_get_constraintdef(con.oid) END
			FROM pg_index i
			JOIN pg_class ic ON ic.oid = i.indexrelid
			JOIN pg_namespace n ON n.oid = ic.relnamespace
			LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
			WHERE i.indrelid = $1::regclass
			ORDER BY i.indisprimary DESC, con.oid IS NULL, ic.relname`, table, table)
		if err != nil {
			return err
		}
		var drops, defs []string
		for rows.Next() {
			var constraint bool
			var name, def string
			if err := rows.Scan(&constraint, &name, &def); err != nil {
				return err
			}
			defs = append(defs, def)
			if constraint {
				drops = append(drops, "ALTER TABLE "+table+" DROP CONSTRAINT "+name)
			} else {
				drops = append(drops, "DROP INDEX "+name)
			}
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(defs) == 0 {
			return errNotDeferred
		}
		if _, err := tx.Exec(ctx, `INSERT INTO ehrsync.deferred_indexes (schema_name, table_name, definitions) VALUES ($1, $2, $3)`,
			tg.ident[0], tg.ident[1], defs); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, strings.Join(drops, ";\n")); err != nil {
			return err
		}
		return nil
	})
	tg.deferred = err == nil
}

// errNotDeferred ends deferIndexes' transaction when the table keeps its
// indexes.
var errNotDeferred = errors.New("the table keeps its indexes")

// buildIndexes builds the deferred indexes again and forgets them, in the
// transaction open on conn. Should another run have built them first,
// there is nothing left to build.
func (tg *Target) buildIndexes(ctx context.Context, conn *pgx.Conn) error {
	// The build waits for readers of the table however long they hold it
	// (a chunk that may load straight in bounds its lock waits, and the
	// statement that reads the definitions lifts the bound): no chunk of
	// the table waits for this one meanwhile. The chunk before never does,
	// and those after touch the table only once this one commits.
	var defs []string
	err := conn.QueryRow(ctx, `WITH d AS (DELETE FROM ehrsync.deferred_indexes WHERE schema_name = $1 AND table_name = $2 RETURNING definitions)
		SELECT definitions, set_config('lock_timeout', '0', true) FROM d`,
		tg.ident[0], tg.ident[1]).Scan(&defs, nil)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the deferred indexes of %s: %w", tg.ident.Sanitize(), err)
	}
	for _, def := range defs {
		if _, err := conn.Exec(ctx, def); err != nil {
			var pgErr *pgconn.PgError
			if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
				return &KeyBuildError{Table: tg.ident.Sanitize(), Key: tg.key}
			}
			return fmt.Errorf("build the indexes of %s after its first snapshot: %w", tg.ident.Sanitize(), err)
		}
	}
	return nil
}

// queueLoaded queues, on b, the record that the pass has loaded the chunk
// ending at pos.
func (tg *Target) queueLoaded(b *pgx.Batch, pos []byte) {
	b.Queue("UPDATE ehrsync.deferred_indexes SET loaded_to = $3 WHERE schema_name = $1 AND table_name = $2", tg.ident[0], tg.ident[1], pos)
}

// endsPass reports whether a chunk moving to to ends a snapshot pass: its
// position is no snapshot under way.
func endsPass(to watermarks.Position) bool {
	return watermarks.StateOf(to, nil) != watermarks.StateSnapshotting
}
