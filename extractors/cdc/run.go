package cdc

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Run is one incremental CDC run over the window (saved position, highest
// harvested LSN at Open]. It implements extractors.Run; it is not safe for
// concurrent use.
type Run struct {
	e     *Extractor
	ins   []Instance
	cur   int            // index in ins of the instance read from
	sel   []string       // its columns to select
	idx   []int          // table column -> index in sel, -1 for NULL
	pos   watermarks.CDC // the position after the last chunk handed out
	bound watermarks.LSN // the window's upper bound
	seq   int64
	done  bool
	// checked is true while the position was checked against the current
	// instance's minimum LSN by Open and nothing was read since.
	checked bool
}

// use switches the run to instance i.
func (r *Run) use(i int) error {
	sel, idx, err := r.e.columnsOf(r.ins[i])
	if err != nil {
		return err
	}
	if pc := r.e.table.Practice; pc != "" && len(r.e.opts.Practices) > 0 {
		if !containsFold(sel, pc) {
			return fmt.Errorf("capture instance %s does not capture the practice column %s", r.ins[i].Name, pc)
		}
	}
	r.cur, r.sel, r.idx = i, sel, idx
	r.pos.Instance = r.ins[i].Name
	return nil
}

// upper is the current instance's upper bound: the window's bound, or the
// start of the next instance when it starts inside the window (the run
// switches there, P7).
func (r *Run) upper() (watermarks.LSN, bool) {
	if r.cur+1 < len(r.ins) {
		if next := r.ins[r.cur+1].StartLSN; next.Compare(r.bound) < 0 {
			return next, true
		}
	}
	return r.bound, false
}

// checkMin fails with an ExpiredError when the current instance's minimum
// LSN has passed the position (P1): rows after the position may be gone.
func (r *Run) checkMin(ctx context.Context) error {
	in := r.ins[r.cur]
	name := r.e.table.QualifiedName()
	min, err := r.e.src.MinLSN(ctx, in.Name)
	if err != nil {
		return fmt.Errorf("cdc %s: %w", name, err)
	}
	if min.IsZero() {
		// No LSN is also the answer to a login that may not read the
		// change data: name the grant rather than expire the position
		// (which would re-snapshot, and expire again, every run).
		if err := r.e.selectDenied(ctx, "sys.fn_cdc_get_min_lsn answers no LSN without SELECT on the captured table"); err != nil {
			return err
		}
		if rc, ok := r.e.src.(readableChecker); ok {
			// A gating role the login is not in (P17). A change table
			// that is gone (208) is the expired case below.
			var pe *PermissionError
			switch err := rc.CheckReadable(ctx, in.Name); {
			case errors.As(err, &pe):
				return err
			case err != nil && !isInvalidObject(err):
				return fmt.Errorf("cdc %s: %w", name, err)
			}
		}
		return &extractors.ExpiredError{Table: name, Reason: fmt.Sprintf(
			"sys.fn_cdc_get_min_lsn answers no LSN for capture instance %s: it no longer exists, "+
				"or the login is not a member of its gating role (see sys.sp_cdc_help_change_data_capture)", in.Name)}
	}
	if r.pos.LSN.Compare(min) < 0 {
		return &extractors.ExpiredError{Table: name, Reason: fmt.Sprintf(
			"saved LSN %s is below capture instance %s's minimum %s", r.pos.LSN, in.Name, min)}
	}
	return nil
}

// Next reads the next chunk. Its position is a transaction boundary
// (CDC{LSN}) when the chunk ends one, or the exact last row (LSN,
// CommandID, Seqval, Op) when the chunk ends inside a transaction (P4). A
// chunk that reaches the window's bound moves the position to the bound,
// so an idle table advances too (P3), in a chunk with a nil Batch when it
// has no rows. The caller releases the Batch. Next returns io.EOF after
// the last chunk.
func (r *Run) Next(ctx context.Context) (extractors.Chunk, error) {
	if r.done {
		return extractors.Chunk{}, io.EOF
	}
	e := r.e
	name := e.table.QualifiedName()
	upper, switching := r.upper()
	if r.pos.LSN.Compare(upper) >= 0 && !r.pos.InTransaction() {
		return r.finish(upper, switching)
	}
	if !r.checked {
		if err := r.checkMin(ctx); err != nil {
			return extractors.Chunk{}, err
		}
	}
	r.checked = false
	q := Query{
		Instance: r.ins[r.cur].Name, After: r.pos, To: upper,
		Limit: e.opts.ChunkRows + 1, Columns: r.sel, NoCommandID: r.ins[r.cur].NoCommandID,
	}
	if pc, ok := e.table.Column(e.table.Practice); ok && len(e.opts.Practices) > 0 {
		q.Practice, q.Practices, q.Key = pc, e.opts.Practices, e.table.Key
	}
	changes, err := e.src.Changes(ctx, q)
	if err != nil {
		return extractors.Chunk{}, fmt.Errorf("cdc %s: %w", name, err)
	}
	// The rows read are complete only if cleanup did not pass the position
	// meanwhile.
	if err := r.checkMin(ctx); err != nil {
		return extractors.Chunk{}, err
	}
	if len(changes) == 0 {
		return r.finish(upper, switching)
	}
	b := e.scanner.NewBatch(e.opts.Allocator)
	defer b.Release()
	pos := make([][]byte, 0, len(changes))
	raw := make([]any, len(e.table.Columns))
	n := 0
	for _, c := range changes {
		if n >= e.opts.ChunkRows || b.Bytes() >= e.opts.ChunkBytes {
			break
		}
		op, err := opOf(c.Op)
		if err != nil {
			return extractors.Chunk{}, fmt.Errorf("cdc %s: %w", name, err)
		}
		if c.Foreign {
			op = schemas.OpDelete // another practice's row: its key only
		}
		if len(c.Values) != len(r.sel) {
			return extractors.Chunk{}, fmt.Errorf("cdc %s: change row has %d values for %d columns", name, len(c.Values), len(r.sel))
		}
		for i, j := range r.idx {
			raw[i] = nil
			if j >= 0 && (!c.Foreign || e.table.IsKey(e.table.Columns[i].Name)) {
				raw[i] = c.Values[j]
			}
		}
		r.seq++
		if err := b.Append(raw, op, r.seq); err != nil {
			return extractors.Chunk{}, fmt.Errorf("cdc %s: %w", name, err)
		}
		pos = append(pos, SourcePos(c))
		n++
	}
	last := changes[n-1]
	var to watermarks.CDC
	switch {
	case n < len(changes) && changes[n].LSN != last.LSN:
		to = watermarks.CDC{LSN: last.LSN} // a transaction boundary
	case n < len(changes):
		to = watermarks.CDC{LSN: last.LSN, CommandID: last.CommandID, Seqval: last.Seqval, Op: last.Op} // inside a transaction (P4)
	default:
		// Everything up to upper is read.
		to = watermarks.CDC{LSN: upper}
	}
	to.Instance = r.ins[r.cur].Name
	batch, err := withSourcePos(e.opts.Allocator, b.NewRecordBatch(), pos)
	if err != nil {
		return extractors.Chunk{}, fmt.Errorf("cdc %s: %w", name, err)
	}
	r.pos = to
	if n == len(changes) {
		if err := r.advance(switching); err != nil {
			batch.Release()
			return extractors.Chunk{}, fmt.Errorf("cdc %s: %w", name, err)
		}
	}
	return extractors.Chunk{Batch: batch, To: r.pos, Reason: watermarks.ReasonSync}, nil
}

// finish ends the current instance's range at upper: it moves the position
// there (a heartbeat chunk) when that is an advance, and switches to the
// next instance or ends the run.
func (r *Run) finish(upper watermarks.LSN, switching bool) (extractors.Chunk, error) {
	moved := r.pos.LSN.Compare(upper) < 0 || r.pos.InTransaction()
	if moved {
		r.pos = watermarks.CDC{LSN: upper, Instance: r.ins[r.cur].Name}
	}
	if err := r.advance(switching); err != nil {
		return extractors.Chunk{}, fmt.Errorf("cdc %s: %w", r.e.table.QualifiedName(), err)
	}
	if !moved && !switching {
		return extractors.Chunk{}, io.EOF
	}
	return extractors.Chunk{To: r.pos, Reason: watermarks.ReasonSync}, nil
}

// advance, once the current instance's range is read, switches to the next
// instance (P7) or marks the run done.
func (r *Run) advance(switching bool) error {
	if !switching {
		r.done = true
		return nil
	}
	return r.use(r.cur + 1)
}

// Close ends the run. It holds no source resources between chunks.
func (r *Run) Close() error {
	r.done = true
	return nil
}

// opOf maps __$operation to the batch's Op.
func opOf(op int8) (schemas.Op, error) {
	switch op {
	case 1:
		return schemas.OpDelete, nil
	case 2:
		return schemas.OpInsert, nil
	case 4:
		return schemas.OpUpdate, nil
	}
	return 0, fmt.Errorf("unexpected __$operation %d", op)
}

// SourcePosLen is the length of a CDC _ehrsync_source_pos.
const SourcePosLen = 25

// SourcePos is c's _ehrsync_source_pos: __$start_lsn (10 bytes) ||
// __$command_id (4 bytes, big-endian) || __$seqval (10 bytes) ||
// __$operation (1 byte), 25 bytes, ordered bytewise as the change order
// (command ids are not negative) and unique per change row.
func SourcePos(c Change) []byte {
	b := make([]byte, 0, SourcePosLen)
	b = append(b, c.LSN[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(c.CommandID))
	b = append(b, c.Seqval[:]...)
	return append(b, byte(c.Op))
}

// withSourcePos returns rec with its SourcePosColumn (the last column)
// replaced by pos. It releases rec.
func withSourcePos(mem memory.Allocator, rec arrow.RecordBatch, pos [][]byte) (arrow.RecordBatch, error) {
	defer rec.Release()
	if int(rec.NumRows()) != len(pos) {
		return nil, fmt.Errorf("%d source positions for %d rows", len(pos), rec.NumRows())
	}
	nb := array.NewBinaryBuilder(mem, arrow.BinaryTypes.Binary)
	defer nb.Release()
	for _, p := range pos {
		nb.Append(p)
	}
	col := nb.NewArray()
	defer col.Release()
	cols := make([]arrow.Array, rec.NumCols())
	for i := range cols {
		cols[i] = rec.Column(i)
	}
	cols[len(cols)-1] = col
	return array.NewRecordBatch(rec.Schema(), cols, rec.NumRows()), nil
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}
