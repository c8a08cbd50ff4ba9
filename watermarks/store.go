package watermarks

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Store keeps each table's position in the store database's
// ehrsync.positions, and every move in ehrsync.position_history. It is safe
// for concurrent use.
type Store struct {
	pool *pgxpool.Pool
}

// NewStore returns a Store on pool. The ehrsync schema must be migrated
// (storedb.Migrate).
func NewStore(pool *pgxpool.Pool) *Store { return &Store{pool: pool} }

// Reason says why a position moved; it is recorded in its history.
type Reason string

// The reasons a position moves.
const (
	ReasonSync     Reason = "sync"     // an incremental chunk was applied
	ReasonSnapshot Reason = "snapshot" // a snapshot chunk was applied
	ReasonBackfill Reason = "backfill" // an operator's backfill chunk was applied
	ReasonReset    Reason = "reset"    // an operator removed the position: full re-sync next run
	ReasonRewind   Reason = "rewind"   // an operator set the position
	// ReasonReconcile records a key reconciliation that deleted rows gone
	// at the source: the position does not move (from and to are the
	// position as it was), and the rows it deleted carry its id.
	ReasonReconcile Reason = "reconcile"
)

func (r Reason) valid() bool {
	switch r {
	case ReasonSync, ReasonSnapshot, ReasonBackfill, ReasonReset, ReasonRewind, ReasonReconcile:
		return true
	}
	return false
}

// Move is one move of a table's position, from the position its rows were
// read from to the position after them.
type Move struct {
	Org, Table string
	From       Position // the position the chunk was read from; nil: the table had none
	To         Position // never nil (Reset removes positions)
	Reason     Reason
	Actor      string // who moved it: the service or operator
	RunID      string // the run, if any
	Rows       int64  // change rows the move covers
	// Batch, when not 0, is the position-history id QueueReserve gave this
	// move in its transaction: the rows it writes carry it, and the move is
	// recorded under it.
	Batch int64
}

func (m Move) check() error {
	switch {
	case m.Org == "":
		return errors.New("no org")
	case m.Table == "":
		return errors.New("no table")
	case m.To == nil:
		return errors.New("no position to move to (Reset removes positions)")
	case !m.Reason.valid():
		return fmt.Errorf("unknown reason %q", m.Reason)
	case m.Actor == "":
		return errors.New("no actor")
	case m.Rows < 0:
		return fmt.Errorf("negative row count %d", m.Rows)
	}
	return nil
}

// Advance moves a table's position from m.From to m.To inside tx, the
// transaction that applies the rows the move covers (PITFALLS P5): the
// position is saved if and only if tx commits.
//
// Advance is a compare-and-set. It locks the table's row (SELECT ... FOR
// UPDATE) and fails with a *MovedError (ErrPositionMoved) unless the saved
// position equals m.From (nil: no saved position); tx must then be rolled
// back, as it holds the refused move's writes. Of two
// runners moving from the same position, the second blocks until the first's
// transaction ends and then fails, so a chunk is never committed twice.
// Positions compare by their canonical encoding. tx must be READ COMMITTED
// (PostgreSQL's default); under REPEATABLE READ or SERIALIZABLE the loser
// gets a serialization failure instead.
//
// Advance records the move in the history in tx, except a move that neither
// changes the position nor covers rows (an idle run with nothing new),
// which only refreshes updated_at. A saved position that does not decode
// is a *CorruptError (ErrCorruptPosition); an operator's Reset repairs it.
func (s *Store) Advance(ctx context.Context, tx pgx.Tx, m Move) error {
	b := &pgx.Batch{}
	s.QueueClaim(b, m.Org, m.Table, m.From)
	if err := s.QueueAdvance(b, m); err != nil {
		return err
	}
	return tx.SendBatch(ctx, b).Close()
}

// QueueAdvance queues Advance's writes on b after a Claim of m.From queued
// before it on the same transaction (Claim's lock and check stand): the
// sink sends a chunk's statements in a few round trips, not one each. A
// first move that meets a position saved meanwhile fails the batch.
//
// The checks (the claim's, this one's) are made on the batch's replies, and
// the server runs the whole batch whatever they say: a batch that fails
// leaves its writes in the transaction, which the caller must roll back.
// Never queue COMMIT on the same batch.
func (s *Store) QueueAdvance(b *pgx.Batch, m Move) error {
	if err := m.check(); err != nil {
		return fmt.Errorf("advance position: %w", err)
	}
	to, err := Encode(m.To)
	if err != nil {
		return fmt.Errorf("advance position of %s %s: %w", m.Org, m.Table, err)
	}
	var from []byte
	if m.From != nil {
		if from, err = Encode(m.From); err != nil {
			return fmt.Errorf("advance position of %s %s: %w", m.Org, m.Table, err)
		}
	}
	// From a saved position, the claimed (locked, checked) row is updated.
	// A first move inserts; a concurrent first move blocks it until it
	// ends and, if it committed, leaves it nothing to do.
	b.Queue(`INSERT INTO ehrsync.positions (org, table_name, kind, position, updated_by) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (org, table_name) DO UPDATE SET kind = EXCLUDED.kind, position = EXCLUDED.position, updated_at = now(), updated_by = EXCLUDED.updated_by
		WHERE $6::boolean`,
		m.Org, m.Table, string(m.To.Kind()), to, m.Actor, m.From != nil).Exec(func(tag pgconn.CommandTag) error {
		if tag.RowsAffected() != 1 {
			return &MovedError{Org: m.Org, Table: m.Table}
		}
		return nil
	})
	if m.Rows == 0 && m.From != nil && bytes.Equal(from, to) {
		return nil // an idle run: updated_at only
	}
	queueHistory(b, m.Batch, m.Org, m.Table, from, to, m.Reason, m.Actor, m.RunID, &m.Rows)
	return nil
}

// QueueReserve queues, on b, the reservation of the position-history id
// that the move committed in b's transaction will be recorded under
// (Move.Batch), with the transaction's timestamp, into id and at. The sink
// reserves it before writing a chunk's rows, so that every row can say
// which commit wrote it (the target's _ehrsync_batch) in eight bytes
// instead of a copy of the position. Ids of rolled-back transactions are
// skipped.
func (s *Store) QueueReserve(b *pgx.Batch, id *int64, at *time.Time) {
	b.Queue("SELECT nextval(pg_get_serial_sequence('ehrsync.position_history', 'id')), now()").QueryRow(func(row pgx.Row) error {
		if err := row.Scan(id, at); err != nil {
			return fmt.Errorf("reserve position history id: %w", err)
		}
		return nil
	})
}

// Claim locks the table's position row for the rest of tx and checks that
// it still is from, failing with ErrPositionMoved otherwise. The sink calls
// it before upserting a chunk's staged rows when the chunk before it may
// touch the same rows, so that a second runner on the same table waits
// here, or fails here, instead of deadlocking on the rows; a chunk's rows
// staged, or copied into a target range only it writes, take no lock
// another chunk waits for. A chunk whose keys are disjoint from the one
// before it is upserted first and claims after (sink.Pending): should a
// second runner (which the table's lease keeps away) meet its rows, every
// wait is one the server sees, and its deadlock detector fails one side
// (40P01, retried) instead of ErrPositionMoved. A runner's chunks claim one
// after the other: each waits for the one before it to commit, and finds
// the position that one moved to.
func (s *Store) Claim(ctx context.Context, tx pgx.Tx, org, table string, from Position) error {
	b := &pgx.Batch{}
	s.QueueClaim(b, org, table, from)
	return tx.SendBatch(ctx, b).Close()
}

// QueueClaim queues Claim on b.
func (s *Store) QueueClaim(b *pgx.Batch, org, table string, from Position) {
	var want []byte
	var wantErr error
	if from != nil {
		want, wantErr = Encode(from)
	}
	b.Queue("SELECT position FROM ehrsync.positions WHERE org = $1 AND table_name = $2 FOR UPDATE", org, table).QueryRow(func(row pgx.Row) error {
		var raw []byte
		err := row.Scan(&raw)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if from != nil {
				return &MovedError{Org: org, Table: table}
			}
			return nil // a first move: QueueAdvance's insert settles a race
		case err != nil:
			return fmt.Errorf("lock position of %s %s: %w", org, table, err)
		}
		cur, err := decodeStored(org, table, raw) // a corrupt position says so first
		if err != nil {
			return err
		}
		if from == nil {
			return &MovedError{Org: org, Table: table}
		}
		if wantErr != nil {
			return fmt.Errorf("claim position of %s %s: %w", org, table, wantErr)
		}
		if !bytes.Equal(cur, want) {
			return &MovedError{Org: org, Table: table}
		}
		return nil
	})
}

// decodeStored decodes a stored position and returns its canonical encoding.
func decodeStored(org, table string, raw []byte) ([]byte, error) {
	p, err := decodePosition(org, table, raw)
	if err != nil {
		return nil, err
	}
	b, err := Encode(p)
	if err != nil {
		return nil, &CorruptError{Org: org, Table: table, Err: err}
	}
	return b, nil
}

// historySQL records one move; batch is its reserved id, 0 for a new one.
const historySQL = `INSERT INTO ehrsync.position_history
	(id, org, table_name, from_position, to_position, reason, actor, run_id, rows, note)
	VALUES (coalesce($1, nextval(pg_get_serial_sequence('ehrsync.position_history', 'id'))), $2, $3, $4, $5, $6, $7, $8, $9, $10)`

func historyArgs(batch int64, org, table string, from, to []byte, reason Reason, actor, runID string, rows *int64, note string) []any {
	return []any{idOrNull(batch), org, table, jsonOrNull(from), jsonOrNull(to), string(reason), actor, textOrNull(runID), rows, textOrNull(note)}
}

func insertHistory(ctx context.Context, tx pgx.Tx, org, table string, from, to []byte, reason Reason, actor, runID string, rows *int64, note string) error {
	if _, err := tx.Exec(ctx, historySQL, historyArgs(0, org, table, from, to, reason, actor, runID, rows, note)...); err != nil {
		return fmt.Errorf("record position history of %s %s: %w", org, table, err)
	}
	return nil
}

// queueHistory queues a sync's move (it has no note) under its reserved id.
func queueHistory(b *pgx.Batch, batch int64, org, table string, from, to []byte, reason Reason, actor, runID string, rows *int64) {
	b.Queue(historySQL, historyArgs(batch, org, table, from, to, reason, actor, runID, rows, "")...).Exec(func(pgconn.CommandTag) error { return nil })
}

func jsonOrNull(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

func idOrNull(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func textOrNull(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Reconciled records, in tx, a key reconciliation of a table that deleted
// rows rows, under batch, the id QueueReserve gave it in tx (the rows it
// soft-deleted and its change-log entries carry it), as actor. The entry's
// from and to are the table's position as it is: a reconciliation does not
// move it.
func (s *Store) Reconciled(ctx context.Context, tx pgx.Tx, batch int64, org, table, actor string, rows int64) error {
	_, err := tx.Exec(ctx, `INSERT INTO ehrsync.position_history (id, org, table_name, from_position, to_position, reason, actor, rows)
		SELECT $1, $2, $3, p.position, p.position, $4, $5, $6
		FROM (SELECT (SELECT position FROM ehrsync.positions WHERE org = $2 AND table_name = $3) AS position) p`,
		batch, org, table, string(ReasonReconcile), actor, rows)
	if err != nil {
		return fmt.Errorf("record reconciliation of %s %s: %w", org, table, err)
	}
	return nil
}

// Load returns a table's saved position: nil and no error when it has none.
// A saved position that does not decode is a *CorruptError
// (ErrCorruptPosition).
func (s *Store) Load(ctx context.Context, org, table string) (Position, error) {
	var raw []byte
	err := s.pool.QueryRow(ctx, "SELECT position FROM ehrsync.positions WHERE org = $1 AND table_name = $2",
		org, table).Scan(&raw)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load position of %s %s: %w", org, table, err)
	}
	return decodePosition(org, table, raw)
}

func decodePosition(org, table string, raw []byte) (Position, error) {
	p, err := Decode(raw)
	if err == nil && p == nil {
		err = errors.New("position is null")
	}
	if err != nil {
		return nil, &CorruptError{Org: org, Table: table, Err: err}
	}
	return p, nil
}

// Entry is a table's saved position. Its JSON keys are snake_case, as
// `ehrsync positions list --json` prints them; the position is its full
// encoding (Encode).
type Entry struct {
	Org       string    `json:"org"`
	Table     string    `json:"table"`
	Position  Position  `json:"position"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

// List returns the saved positions of org's tables ("" for every org),
// ordered by org and table. Rows that do not decode are left out and
// reported together in the error (each a *CorruptError), with the entries
// that did decode: callers that show positions can show the rest.
func (s *Store) List(ctx context.Context, org string) ([]Entry, error) {
	rows, err := s.pool.Query(ctx, `SELECT org, table_name, position, updated_at, updated_by FROM ehrsync.positions
		WHERE $1 = '' OR org = $1 ORDER BY org, table_name`, org)
	if err != nil {
		return nil, fmt.Errorf("list positions: %w", err)
	}
	defer rows.Close()
	var (
		out     []Entry
		corrupt []error
	)
	for rows.Next() {
		var (
			e   Entry
			raw []byte
		)
		if err := rows.Scan(&e.Org, &e.Table, &raw, &e.UpdatedAt, &e.UpdatedBy); err != nil {
			return nil, fmt.Errorf("list positions: %w", err)
		}
		if e.Position, err = decodePosition(e.Org, e.Table, raw); err != nil {
			corrupt = append(corrupt, err)
			continue
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list positions: %w", err)
	}
	return out, errors.Join(corrupt...)
}

// HistoryEntry is one recorded move of a table's position. Its JSON keys
// are snake_case, as `ehrsync positions show --json` prints them.
type HistoryEntry struct {
	ID     int64     `json:"id"`
	From   Position  `json:"from"` // nil: no position
	To     Position  `json:"to"`   // nil: no position
	Reason Reason    `json:"reason"`
	Actor  string    `json:"actor"`
	RunID  string    `json:"run_id"`
	Rows   int64     `json:"rows"` // 0 for operator moves
	Note   string    `json:"note"`
	At     time.Time `json:"at"`
}

// History returns a table's recorded moves, newest first, at most limit of
// them (all when limit <= 0). A recorded position that does not decode is a
// *CorruptError (ErrCorruptPosition).
func (s *Store) History(ctx context.Context, org, table string, limit int) ([]HistoryEntry, error) {
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	rows, err := s.pool.Query(ctx, `SELECT id, from_position, to_position, reason, actor, coalesce(run_id, ''),
			coalesce(rows, 0), coalesce(note, ''), at
		FROM ehrsync.position_history WHERE org = $1 AND table_name = $2 ORDER BY id DESC LIMIT $3`,
		org, table, lim)
	if err != nil {
		return nil, fmt.Errorf("read position history of %s %s: %w", org, table, err)
	}
	defer rows.Close()
	var out []HistoryEntry
	for rows.Next() {
		var (
			h        HistoryEntry
			from, to []byte
			reason   string
		)
		if err := rows.Scan(&h.ID, &from, &to, &reason, &h.Actor, &h.RunID, &h.Rows, &h.Note, &h.At); err != nil {
			return nil, fmt.Errorf("read position history of %s %s: %w", org, table, err)
		}
		h.Reason = Reason(reason)
		if from != nil {
			if h.From, err = decodePosition(org, table, from); err != nil {
				return nil, err
			}
		}
		if to != nil {
			if h.To, err = decodePosition(org, table, to); err != nil {
				return nil, err
			}
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read position history of %s %s: %w", org, table, err)
	}
	return out, nil
}

// Reset is an operator's move, outside any sync. With to nil it removes the
// table's position, so the next run starts over with a full snapshot
// (ReasonReset); otherwise it sets the position to to (ReasonRewind). It does
// not compare: it replaces whatever is saved, even a corrupt position. A
// runner still working from the old position then fails its next Advance with
// ErrPositionMoved. The move is recorded in the history with actor and note.
func (s *Store) Reset(ctx context.Context, org, table string, to Position, actor, note string) error {
	switch {
	case org == "":
		return errors.New("reset position: no org")
	case table == "":
		return errors.New("reset position: no table")
	case actor == "":
		return errors.New("reset position: no actor")
	}
	reason := ReasonReset
	var enc []byte
	if to != nil {
		reason = ReasonRewind
		var err error
		if enc, err = Encode(to); err != nil {
			return fmt.Errorf("rewind position of %s %s: %w", org, table, err)
		}
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// The saved position, as stored: copied into the history even when it
		// does not decode.
		var from []byte
		err := tx.QueryRow(ctx, "SELECT position FROM ehrsync.positions WHERE org = $1 AND table_name = $2 FOR UPDATE",
			org, table).Scan(&from)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("lock position of %s %s: %w", org, table, err)
		}
		if to == nil {
			if _, err := tx.Exec(ctx, "DELETE FROM ehrsync.positions WHERE org = $1 AND table_name = $2", org, table); err != nil {
				return fmt.Errorf("reset position of %s %s: %w", org, table, err)
			}
		} else if _, err := tx.Exec(ctx, `INSERT INTO ehrsync.positions (org, table_name, kind, position, updated_by)
			VALUES ($1, $2, $3, $4, $5)
			ON CONFLICT (org, table_name) DO UPDATE
			SET kind = EXCLUDED.kind, position = EXCLUDED.position, updated_at = now(), updated_by = EXCLUDED.updated_by`,
			org, table, string(to.Kind()), enc, actor); err != nil {
			return fmt.Errorf("rewind position of %s %s: %w", org, table, err)
		}
		return insertHistory(ctx, tx, org, table, from, enc, reason, actor, "", nil, note)
	})
}
