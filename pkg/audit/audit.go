// Package audit writes the audit trail to the store's ehrsync.audit: every
// table run, backfill and admin action, with who did it, the org and table,
// the columns read, rows by operation, positions from and to, the outcome
// and its error class, and the duration. Never row values: errors are
// recorded by their class (engine.Class), not by text, and positions by
// their summary (watermarks.Summarize: kind, LSN, version, row-version
// number), never their key or cursor values.
//
// The trail is append-only and tamper-evident: the store's triggers refuse
// UPDATE, DELETE and TRUNCATE, and chain every row to the one before it by
// a sha256 hash (migration 0005). Verify recomputes the chain; Prune
// removes the rows past their retention, keeping the chain verifiable. A
// record that cannot be written is an error of the action it records
// (*WriteError, matching engine.ErrAuditNotWritten).
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Action is the kind of an audited event.
type Action string

// The audited actions.
const (
	ActionRun      Action = "run"
	ActionBackfill Action = "backfill"
	ActionAdmin    Action = "admin"
	// ActionLake is a table's flush into the change lake: Chunks is the
	// store commits it moved, Rows.Inserted the change rows appended, To
	// the position the lake holds to.
	ActionLake Action = "lake"
)

// Record is one audit record.
type Record struct {
	Actor      string // the service ("daemon", "sync") or the operator
	Action     Action
	What       string // for admin actions: "pause", "reset", ...
	Org, Table string
	RunID      string
	Columns    []string
	Chunks     int
	Rows       struct{ Inserted, Updated, Deleted, Unchanged int64 }
	// From and To are recorded as their summaries (watermarks.Summary),
	// never as the full positions, whose keys and cursors are row values.
	From, To   watermarks.Position
	Outcome    string // ok, failed, expired, canceled, ...
	ErrorClass string
	Duration   time.Duration
}

// Recorder writes audit records. It implements engine.Auditor. It is safe
// for concurrent use.
type Recorder struct {
	pool *pgxpool.Pool
	// Action is what table runs are recorded as (ActionRun by default;
	// ActionBackfill for a backfill's runs).
	Action Action
}

// New returns a Recorder on the store's pool.
func New(pool *pgxpool.Pool) *Recorder {
	return &Recorder{pool: pool, Action: ActionRun}
}

// TableRun records a finished table run (engine.Auditor). A record not
// written is a *WriteError: the engine fails the run with it.
func (r *Recorder) TableRun(ctx context.Context, actor, runID string, columns []string, res engine.TableResult) error {
	rec := Record{
		Actor: actor, Action: r.Action, Org: res.Org, Table: res.Table, RunID: runID, Columns: columns,
		Chunks: res.Chunks, From: res.From, To: res.To, Duration: res.Duration, Outcome: "ok",
	}
	rec.Rows.Inserted, rec.Rows.Updated, rec.Rows.Deleted, rec.Rows.Unchanged =
		res.Totals.Inserted, res.Totals.Updated, res.Totals.Deleted, res.Totals.Unchanged
	if res.Expired {
		rec.Outcome = "expired"
	}
	if res.Err != nil {
		rec.Outcome, rec.ErrorClass = "failed", engine.Class(res.Err)
	}
	if rec.Actor == "" {
		rec.Actor = "unknown"
	}
	if err := r.Write(ctx, rec); err != nil {
		return err
	}
	if res.Lake != nil && res.Lake.Commits > 0 {
		return r.LakeFlush(ctx, rec.Actor, runID, res.Org, res.Table, *res.Lake, nil)
	}
	return nil
}

// LakeFlush records a table's flush into the change lake: the store
// commits it moved (Chunks), the change rows it appended (Rows.Inserted),
// the position the lake holds to (To, as its summary) and how long its
// commits took; failed, with the error's class.
func (r *Recorder) LakeFlush(ctx context.Context, actor, runID, org, table string, res lake.Result, err error) error {
	rec := Record{Actor: actor, Action: ActionLake, What: "flush", Org: org, Table: table, RunID: runID,
		Chunks: res.Batches, Duration: res.CommitTime(), Outcome: "ok"}
	rec.Rows.Inserted = res.Rows
	if len(res.Position) > 0 {
		if p, derr := watermarks.Decode(res.Position); derr == nil {
			rec.To = p
		}
	}
	if err != nil {
		rec.Outcome, rec.ErrorClass = "failed", engine.Class(err)
	}
	if rec.Actor == "" {
		rec.Actor = "unknown"
	}
	return r.Write(ctx, rec)
}

// Write stores one record, chained to the one before it by the store. It
// writes even when ctx is done (a canceled run is still audited), within
// its own timeout. Its error is a *WriteError.
func (r *Recorder) Write(ctx context.Context, rec Record) error {
	if err := r.write(ctx, rec); err != nil {
		return &WriteError{Err: err}
	}
	return nil
}

func (r *Recorder) write(ctx context.Context, rec Record) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	return insert(ctx, r.pool, rec)
}

// execer runs a statement: a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// insert writes rec on q; the store's trigger gives it its id, time and
// place in the chain.
func insert(ctx context.Context, q execer, rec Record) error {
	from, err := encode(rec.From)
	if err != nil {
		return err
	}
	to, err := encode(rec.To)
	if err != nil {
		return err
	}
	_, err = q.Exec(ctx, `INSERT INTO ehrsync.audit (actor, action, what, org, table_name, run_id, columns, chunks,
			rows_inserted, rows_updated, rows_deleted, rows_unchanged, from_position, to_position, outcome, error_class, duration_ms)
		VALUES ($1, $2, $3, nullif($4, ''), nullif($5, ''), nullif($6, ''), $7, $8, $9, $10, $11, $12, $13, $14, $15, nullif($16, ''), $17)`,
		rec.Actor, string(rec.Action), rec.What, rec.Org, rec.Table, rec.RunID, rec.Columns, int64(rec.Chunks),
		rec.Rows.Inserted, rec.Rows.Updated, rec.Rows.Deleted, rec.Rows.Unchanged, from, to, rec.Outcome, rec.ErrorClass,
		rec.Duration.Milliseconds())
	return err
}

// encode is the jsonb of p's summary: the audit never holds a key or
// cursor value (the positions themselves stay in ehrsync.positions and
// position_history).
func encode(p watermarks.Position) (any, error) {
	if p == nil {
		return nil, nil
	}
	b, err := json.Marshal(watermarks.Summarize(p))
	if err != nil {
		return nil, fmt.Errorf("audit record: %w", err)
	}
	return string(b), nil
}
