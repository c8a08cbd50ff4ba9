package audit

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// row is an audit row as stored, with what its hash covers.
type row struct {
	ID                                    int64
	At                                    time.Time
	Actor, Action, What                   *string
	Org, Table, RunID                     *string
	Columns                               pgtype.Array[pgtype.Text]
	Chunks                                *int64
	Inserted, Updated, Deleted, Unchanged *int64
	From, To                              *string // the positions' jsonb text
	Outcome, ErrorClass                   *string
	DurationMS                            *int64
	PrevHash, Hash                        []byte
}

// rowColumns reads a row in the order of row's fields.
const rowColumns = `id, at, actor, action, what, org, table_name, run_id, columns, chunks,
	rows_inserted, rows_updated, rows_deleted, rows_unchanged, from_position::text, to_position::text,
	outcome, error_class, duration_ms, prev_hash, hash`

func (r *row) scan(rows pgx.Rows) error {
	return rows.Scan(&r.ID, &r.At, &r.Actor, &r.Action, &r.What, &r.Org, &r.Table, &r.RunID, &r.Columns, &r.Chunks,
		&r.Inserted, &r.Updated, &r.Deleted, &r.Unchanged, &r.From, &r.To, &r.Outcome, &r.ErrorClass, &r.DurationMS,
		&r.PrevHash, &r.Hash)
}

// hashRow is the chain hash of r after prev, in the canonical encoding of
// migration 0005 (version 1), computed here independently of the store's
// own functions, so that a verification does not trust them.
func hashRow(prev []byte, r *row) []byte {
	h := sha256.New()
	h.Write([]byte("ehrsync.audit v1"))
	h.Write(prev)
	at := r.At.UnixMicro()
	putInt(h, &r.ID)
	putInt(h, &at)
	for _, s := range []*string{r.Actor, r.Action, r.What, r.Org, r.Table, r.RunID} {
		putText(h, s)
	}
	if !r.Columns.Valid {
		h.Write([]byte{0})
	} else {
		h.Write([]byte{1})
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(r.Columns.Elements))))
		for _, e := range r.Columns.Elements {
			if e.Valid {
				putText(h, &e.String)
			} else {
				putText(h, nil)
			}
		}
	}
	for _, n := range []*int64{r.Chunks, r.Inserted, r.Updated, r.Deleted, r.Unchanged} {
		putInt(h, n)
	}
	putText(h, r.From)
	putText(h, r.To)
	putText(h, r.Outcome)
	putText(h, r.ErrorClass)
	putInt(h, r.DurationMS)
	return h.Sum(nil)
}

func putText(h hash.Hash, s *string) {
	if s == nil {
		h.Write([]byte{0})
		return
	}
	h.Write([]byte{1})
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(*s))))
	h.Write([]byte(*s))
}

func putInt(h hash.Hash, n *int64) {
	if n == nil {
		h.Write([]byte{0})
		return
	}
	h.Write([]byte{1})
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(*n)))
}

// Chain is what Verify found: an intact chain.
type Chain struct {
	Rows            int64  // rows verified
	FirstID, LastID int64  // the first and last row kept; 0 when none
	AnchorID        int64  // the last row pruned; 0 when none was
	Head            string // the hash of the last row (hex): record it elsewhere to detect a rewritten chain
}

// Beginner starts transactions: a pool or a connection.
type Beginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Verify reads the whole audit in one snapshot and checks its chain: the
// first row follows the anchor (genesis, or the last row pruned), each row's
// hash matches its fields and the row before it, and the last row is the
// chain's recorded head. The first broken link is a *BrokenError
// (ErrBroken) naming the row and what is wrong.
func Verify(ctx context.Context, db Beginner) (Chain, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return Chain{}, fmt.Errorf("verify audit chain: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read-only
	return verify(ctx, tx)
}

// verify is Verify inside tx.
func verify(ctx context.Context, tx pgx.Tx) (Chain, error) {
	var (
		headID, anchorID     *int64
		headHash, anchorHash []byte
	)
	err := tx.QueryRow(ctx, "SELECT head_id, head_hash, anchor_id, anchor_hash FROM ehrsync.audit_chain").
		Scan(&headID, &headHash, &anchorID, &anchorHash)
	if err != nil {
		return Chain{}, fmt.Errorf("read the audit chain's head: %w", err)
	}
	c := Chain{}
	if anchorID != nil {
		c.AnchorID = *anchorID
	}
	rows, err := tx.Query(ctx, "SELECT "+rowColumns+" FROM ehrsync.audit ORDER BY id")
	if err != nil {
		return Chain{}, fmt.Errorf("read the audit: %w", err)
	}
	defer rows.Close()
	prev, prevID := anchorHash, c.AnchorID
	var r row
	for rows.Next() {
		if err := r.scan(rows); err != nil {
			return Chain{}, fmt.Errorf("read the audit: %w", err)
		}
		switch {
		case !bytes.Equal(r.PrevHash, prev) && c.Rows == 0 && c.AnchorID == 0:
			return c, &BrokenError{ID: r.ID, Problem: "it does not start the chain: rows before it were deleted"}
		case !bytes.Equal(r.PrevHash, prev) && c.Rows == 0:
			return c, &BrokenError{ID: r.ID, Problem: fmt.Sprintf("it does not follow row %d, the last row pruned: rows between them were deleted", prevID)}
		case !bytes.Equal(r.PrevHash, prev):
			return c, &BrokenError{ID: r.ID, Problem: fmt.Sprintf("it does not follow row %d, the row before it: rows between them were deleted, or row %d was rewritten", prevID, prevID)}
		case !bytes.Equal(hashRow(prev, &r), r.Hash):
			return c, &BrokenError{ID: r.ID, Problem: "its fields do not match its hash: the row was edited"}
		}
		if c.Rows == 0 {
			c.FirstID = r.ID
		}
		c.Rows++
		c.LastID = r.ID
		prev, prevID = r.Hash, r.ID
	}
	if err := rows.Err(); err != nil {
		return Chain{}, fmt.Errorf("read the audit: %w", err)
	}
	head := int64(0)
	if headID != nil {
		head = *headID
	}
	switch {
	case head > prevID:
		return c, &BrokenError{ID: head, Problem: fmt.Sprintf("the chain's head is row %d, but the last row is %d: rows at the end were deleted", head, prevID)}
	case head != prevID || !bytes.Equal(headHash, prev):
		return c, &BrokenError{ID: prevID, Problem: "it is not the chain's recorded head: the chain was rewritten"}
	}
	c.Head = hex.EncodeToString(prev)
	return c, nil
}
