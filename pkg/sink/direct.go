package sink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Snapshot chunks into an empty table skip staging: the rows are copied
// straight into the target, which is what the server can do fastest.
//
// A chunk goes in directly when all of these hold:
//
//   - it is a snapshot chunk (watermarks.ReasonSnapshot) of inserts only,
//     and the table keeps no change log;
//   - either it starts a snapshot (From is nil or a Snapshot with no last
//     key) and the target table is empty in the chunk's own transaction,
//     or it continues, from the To of the chunk this Target began last, a
//     snapshot whose chunks so far were all to go in directly (the chunk
//     before may still be open: it commits first, or this one is refused).
//     A keyset snapshot's chunks cover disjoint, increasing key ranges, so
//     the continuation cannot meet a row it did not write itself;
//   - every column has a direct binary encoding.
//
// A snapshot resumed by a new process after a crash finds the target not
// empty and upserts. Should a key exist all the same (a writer outside
// ehrsync), the COPY fails with a unique violation inside a savepoint and
// the chunk is upserted instead: a direct COPY never fails a chunk that the
// staged upsert would have applied.

// directPlan is what planDirect found before the chunk's first batch was
// sent: whether the chunk may go in directly, and, when that depends on the
// target being empty, where the batch puts the answer.
type directPlan struct {
	candidate bool
	empty     *bool // nil: no need to check
}

// take reports whether the chunk is to be copied straight into the target,
// once the batch planDirect queued on has been sent.
func (p directPlan) take() bool {
	return p.candidate && (p.empty == nil || *p.empty)
}

// planDirect decides whether rec may go straight into the target under the
// rules above and queues, on b, what that needs from the store: the
// emptiness check of a snapshot's first chunk and the savepoint the COPY
// falls back to.
func (tg *Target) planDirect(b *pgx.Batch, rec arrow.RecordBatch, m watermarks.Move) directPlan {
	if !tg.directCandidate(rec, m) {
		return directPlan{}
	}
	continues := tg.continuesDirect(m.From)
	if !continues && !startsSnapshot(m.From) {
		return directPlan{}
	}
	p := directPlan{candidate: true}
	if !continues {
		p.empty = new(bool)
		b.Queue("SELECT NOT EXISTS (SELECT FROM " + tg.ident.Sanitize() + ")").QueryRow(func(row pgx.Row) error {
			if err := row.Scan(p.empty); err != nil {
				return fmt.Errorf("check target is empty: %w", err)
			}
			return nil
		})
	}
	// A direct chunk and the one begun after it are open at once (Pending),
	// and the later one waits, in the engine, for the earlier to commit.
	// Were one store key in both (two source keys the store holds as one),
	// the earlier one's COPY would wait for the later one's row: a cycle
	// PostgreSQL cannot see. Lock waits are bounded instead; the chunk
	// fails, and the rerun (the target no longer empty) upserts.
	b.Queue("SET LOCAL lock_timeout = '" + directLockTimeout + "'")
	b.Queue("SAVEPOINT ehrsync_direct")
	return p
}

// continuesDirect reports whether a chunk from from continues a snapshot
// whose chunks so far went straight into the target: from is the To of the
// chunk begun last, which went in so (or of the last chunk loaded, as
// Prepare found it). Only a snapshot in progress continues: a finished
// one's end position (Snapshot{} for a table snapshotted every run) starts
// the next pass. A position that does not encode does not continue (the
// claim reports it).
func (tg *Target) continuesDirect(from watermarks.Position) bool {
	if tg.directAfter == nil || startsSnapshot(from) {
		return false
	}
	enc, err := watermarks.Encode(from)
	return err == nil && bytes.Equal(enc, tg.directAfter)
}

// directCandidate reports whether rec, moving m, is a chunk of the kind
// that may go straight into the target: a snapshot chunk of inserts only,
// into a table without a change log, every column encodable directly.
func (tg *Target) directCandidate(rec arrow.RecordBatch, m watermarks.Move) bool {
	if tg.opts.ChangeLog || m.Reason != watermarks.ReasonSnapshot || !insertsOnly(rec, len(tg.cols)) {
		return false
	}
	for c, col := range tg.cols {
		if fieldEncoderFor(rec.Column(c), col.pgType) == nil {
			return false
		}
	}
	return true
}

// directLockTimeout bounds the lock waits of a chunk that may go straight
// into the target (a variable for tests).
var directLockTimeout = "10s"

// applyDirect copies rec straight into the target when p allows it,
// reporting whether it did. It runs inside the chunk's transaction, after
// the batch planDirect queued on; on false nothing was written.
func (tg *Target) applyDirect(ctx context.Context, conn *pgx.Conn, rec arrow.RecordBatch, p directPlan, c commit, res *Result) (bool, error) {
	if !p.take() {
		return false, nil
	}
	enc, ok := tg.directEncoder(rec, c)
	if !ok {
		return false, nil
	}
	names := append(tg.colNames(), MetaOp, MetaBatch, MetaSyncedAt, MetaDeleted)
	g := &guardedReader{r: enc}
	tag, err := conn.PgConn().CopyFrom(ctx, g, "COPY "+tg.ident.Sanitize()+" ("+strings.Join(names, ", ")+") FROM STDIN BINARY")
	g.close()
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23505" { // unique_violation
			if _, err := conn.Exec(ctx, "ROLLBACK TO SAVEPOINT ehrsync_direct"); err != nil {
				return false, err
			}
			return false, nil
		}
		return false, fmt.Errorf("copy into target: %w", err)
	}
	// The savepoint is released with the transaction.
	res.Inserted = tag.RowsAffected()
	res.Direct = true
	return true, nil
}

// startsSnapshot reports whether from is where a snapshot starts: nothing
// saved, or a snapshot that has not read a key yet.
func startsSnapshot(from watermarks.Position) bool {
	switch p := from.(type) {
	case nil:
		return true
	case watermarks.Snapshot:
		return len(p.LastKey) == 0
	}
	return false
}

// insertsOnly reports whether every change of rec is an insert. The op
// column follows the n data columns (schemas.ChangeSchema).
func insertsOnly(rec arrow.RecordBatch, n int) bool {
	return onlyOps(rec, n, func(op schemas.Op) bool { return op == schemas.OpInsert })
}

// onlyOps reports whether want holds for the op of every change of rec.
func onlyOps(rec arrow.RecordBatch, n int, want func(schemas.Op) bool) bool {
	ops, ok := rec.Column(n).(*array.Int8)
	if !ok || ops.NullN() > 0 {
		return false
	}
	for _, op := range ops.Int8Values() {
		if !want(schemas.Op(op)) {
			return false
		}
	}
	return true
}

// directEncoder encodes rec's data columns and the metadata the upsert
// would write: _ehrsync_op 'insert', _ehrsync_batch, _ehrsync_synced_at the
// transaction's timestamp (the upsert's now()) and _ehrsync_deleted false.
// Every one is sent, not left to a column default: a default is an
// expression the server evaluates per row.
func (tg *Target) directEncoder(rec arrow.RecordBatch, b commit) (*copyEncoder, bool) {
	e := &copyEncoder{rows: int(rec.NumRows()), fields: make([]fieldEncoder, 0, len(tg.cols)+2)}
	for c, col := range tg.cols {
		f := fieldEncoderFor(rec.Column(c), col.pgType)
		if f == nil {
			return nil, false
		}
		e.fields = append(e.fields, f)
	}
	e.fields = append(e.fields,
		constField([]byte("insert")),
		constField(binary.BigEndian.AppendUint64(nil, uint64(b.id))),
		constField(binary.BigEndian.AppendUint64(nil, uint64(b.at.UnixMicro()-pgEpochMicros))),
		constField([]byte{0}))
	return e, true
}

// constField encodes the same field bytes v in every row.
func constField(v []byte) fieldEncoder {
	field := binary.BigEndian.AppendUint32(nil, uint32(len(v)))
	field = append(field, v...)
	return func(b []byte, _ int) []byte { return append(b, field...) }
}
