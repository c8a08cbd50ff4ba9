package lake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/schemas"
)

// committedAtType is CommittedAtColumn's: an instant, microseconds.
var committedAtType = &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"}

var errSchemaBytes = errors.New("an outbox row's schema is not an Arrow IPC stream")

func decodeSchema(b []byte) (*arrow.Schema, error) {
	r, err := ipc.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errSchemaBytes, err)
	}
	defer r.Release()
	return r.Schema(), nil
}

// lakeSchema is the schema a claim is appended with: the change batches'
// fields by name, in the order first seen, each field typed as the last
// schema that has it (a source column widened since), every field
// nullable, then BatchColumn and CommittedAtColumn.
func lakeSchema(schemas []*arrow.Schema) (*arrow.Schema, error) {
	if len(schemas) == 0 {
		return nil, fmt.Errorf("a claim with no schema")
	}
	var fields []arrow.Field
	at := map[string]int{}
	for _, sc := range schemas {
		for _, f := range sc.Fields() {
			f.Nullable = true
			f.Metadata = arrow.Metadata{}
			if i, ok := at[f.Name]; ok {
				fields[i] = f
				continue
			}
			at[f.Name] = len(fields)
			fields = append(fields, f)
		}
	}
	for _, name := range []string{BatchColumn, CommittedAtColumn} {
		if _, ok := at[name]; ok {
			return nil, fmt.Errorf("the source table has a column named %s, which the lake adds: leave it out with the table's columns allow-list", name)
		}
	}
	fields = append(fields,
		arrow.Field{Name: BatchColumn, Type: arrow.PrimitiveTypes.Int64, Nullable: true},
		arrow.Field{Name: CommittedAtColumn, Type: committedAtType, Nullable: true},
	)
	return arrow.NewSchema(fields, nil), nil
}

// claimReader reads a claim's outbox rows, in id order, as record batches of
// the lake schema: each row's batch as it was committed, with the columns it
// lacks null, older types cast to the lake's, and the lake's columns.
//
// It hands each batch over in slices of about sliceBytes: iceberg-go's
// writer queues up to 64 record batches ahead of its Parquet writer
// whatever their size, so the slices bound what the queue holds.
type claimReader struct {
	refs   atomic.Int64
	schema *arrow.Schema
	conn   *pgxpool.Conn
	rows   pgx.Rows
	whole  arrow.RecordBatch // the outbox row being handed over
	at     int64             // its next row to hand over
	step   int64             // rows per slice
	cur    arrow.RecordBatch
	err    error
	mem    memory.Allocator
	ctx    context.Context
}

// sliceBytes is about how much of a batch one slice holds.
const sliceBytes = 256 << 10

func (l *Lake) openClaim(ctx context.Context, t Table, claim int64, schema *arrow.Schema) (*claimReader, error) {
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("read lake outbox %s: %w", t, err)
	}
	rows, err := conn.Query(ctx, "SELECT batch, committed_at, seqs, ops, data FROM "+t.outbox().Sanitize()+" WHERE claim = $1 ORDER BY id", claim)
	if err != nil {
		conn.Release()
		return nil, fmt.Errorf("read lake outbox %s claim %d: %w", t, claim, err)
	}
	r := &claimReader{schema: schema, conn: conn, rows: rows, mem: memory.DefaultAllocator, ctx: ctx}
	r.refs.Store(1)
	return r, nil
}

func (r *claimReader) Retain() { r.refs.Add(1) }

func (r *claimReader) Release() {
	if r.refs.Add(-1) != 0 {
		return
	}
	r.drop()
	if r.whole != nil { // handed over in part
		r.whole.Release()
		r.whole = nil
	}
	if r.rows != nil {
		r.rows.Close()
		r.rows = nil
	}
	if r.conn != nil {
		r.conn.Release()
		r.conn = nil
	}
}

func (r *claimReader) drop() {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	if r.whole != nil && r.at >= r.whole.NumRows() {
		r.whole.Release()
		r.whole = nil
	}
}

func (r *claimReader) Schema() *arrow.Schema { return r.schema }

func (r *claimReader) Err() error { return r.err }

func (r *claimReader) RecordBatch() arrow.RecordBatch { return r.cur }

// Record is RecordBatch.
func (r *claimReader) Record() arrow.RecordBatch { return r.cur }

func (r *claimReader) Next() bool {
	r.drop()
	if r.err != nil {
		return false
	}
	if r.whole == nil && !r.nextRow() {
		return false
	}
	end := min(r.at+r.step, r.whole.NumRows())
	r.cur = r.whole.NewSlice(r.at, end)
	r.at = end
	return true
}

// nextRow reads and decodes the next outbox row with rows into whole;
// false at the end or on an error (Err).
func (r *claimReader) nextRow() bool {
	for r.rows != nil {
		if !r.rows.Next() {
			r.err = r.rows.Err()
			r.rows.Close()
			r.rows = nil
			return false
		}
		var (
			batch int64
			at    time.Time
			seqs  []int64
			ops   []int16
			data  []byte
		)
		if err := r.rows.Scan(&batch, &at, &seqs, &ops, &data); err != nil {
			r.err = err
			return false
		}
		rec, err := r.project(data, batch, at, seqs, ops)
		if err != nil {
			r.err = err
			return false
		}
		if rec.NumRows() == 0 { // an observation whose rows did not change
			rec.Release()
			continue
		}
		r.whole, r.at = rec, 0
		r.step = max(1, int64(sliceBytes)*rec.NumRows()/int64(max(len(data), 1)))
		return true
	}
	return false
}

// project decodes one outbox row's batch and shapes it to the lake schema:
// with seqs (not nil), only the rows of those _ehrsync_seq, their
// operations ops.
func (r *claimReader) project(data []byte, batch int64, at time.Time, seqs []int64, ops []int16) (arrow.RecordBatch, error) {
	rd, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(r.mem))
	if err != nil {
		return nil, fmt.Errorf("decode an outbox batch: %w", err)
	}
	defer rd.Release()
	if !rd.Next() {
		if err := rd.Err(); err != nil {
			return nil, fmt.Errorf("decode an outbox batch: %w", err)
		}
		return nil, fmt.Errorf("decode an outbox batch: no record")
	}
	rec := rd.RecordBatch()
	if seqs != nil {
		kept, err := r.keep(rec, seqs, ops)
		if err != nil {
			return nil, err
		}
		defer kept.Release()
		rec = kept
	}
	n := int(rec.NumRows())
	cols := make([]arrow.Array, 0, r.schema.NumFields())
	defer func() {
		for _, c := range cols {
			c.Release()
		}
	}()
	byName := map[string]int{}
	for i, f := range rec.Schema().Fields() {
		byName[f.Name] = i
	}
	last := r.schema.NumFields() - 2
	for i, f := range r.schema.Fields()[:last] {
		j, ok := byName[f.Name]
		switch {
		case !ok:
			cols = append(cols, array.MakeArrayOfNull(r.mem, f.Type, n))
		case arrow.TypeEqual(rec.Column(j).DataType(), f.Type):
			c := rec.Column(j)
			c.Retain()
			cols = append(cols, c)
		default:
			c, err := compute.CastArray(r.ctx, rec.Column(j), compute.SafeCastOptions(f.Type))
			if err != nil {
				const fix = "fix: a new lake table for the new type (drop or rename the Iceberg table; its files stay), or leave the column out with the table's columns allow-list"
				if errors.Is(err, arrow.ErrNotImplemented) { // quotes types, never values
					return nil, fmt.Errorf("column %s (field %d): the source's %s cannot be written as the lake table's %s: %v; %s",
						f.Name, i, rec.Column(j).DataType(), f.Type, err, fix)
				}
				// The cast's own error may quote a value: it is left out.
				return nil, fmt.Errorf("column %s (field %d): a value of the source's %s does not fit the lake table's %s without loss; %s",
					f.Name, i, rec.Column(j).DataType(), f.Type, fix)
			}
			cols = append(cols, c)
		}
	}
	bb := array.NewInt64Builder(r.mem)
	defer bb.Release()
	ab := array.NewTimestampBuilder(r.mem, committedAtType)
	defer ab.Release()
	ts := arrow.Timestamp(at.UnixMicro())
	bb.Reserve(n)
	ab.Reserve(n)
	for range n {
		bb.UnsafeAppend(batch)
		ab.UnsafeAppend(ts)
	}
	cols = append(cols, bb.NewArray(), ab.NewArray())
	return array.NewRecordBatch(r.schema, cols, int64(n)), nil
}

// keep is rec's rows whose _ehrsync_seq is in seqs (ascending, as rec's
// are), their _ehrsync_op set to ops.
func (r *claimReader) keep(rec arrow.RecordBatch, seqs []int64, ops []int16) (arrow.RecordBatch, error) {
	if len(ops) != len(seqs) {
		return nil, fmt.Errorf("an outbox row's seqs and ops differ in length")
	}
	seqAt, opAt := rec.Schema().FieldIndices(schemas.SeqColumn), rec.Schema().FieldIndices(schemas.OpColumn)
	if len(seqAt) != 1 || len(opAt) != 1 {
		return nil, fmt.Errorf("an outbox batch without %s or %s", schemas.SeqColumn, schemas.OpColumn)
	}
	col, ok := rec.Column(seqAt[0]).(*array.Int64)
	if !ok {
		return nil, fmt.Errorf("an outbox batch's %s is %s, not int64", schemas.SeqColumn, rec.Column(seqAt[0]).DataType())
	}
	mask := array.NewBooleanBuilder(r.mem)
	defer mask.Release()
	mask.Reserve(col.Len())
	next := 0
	for _, v := range col.Int64Values() {
		hit := next < len(seqs) && seqs[next] == v
		if hit {
			next++
		}
		mask.UnsafeAppend(hit)
	}
	if next != len(seqs) {
		return nil, fmt.Errorf("an outbox row names %d rows its batch does not hold", len(seqs)-next)
	}
	m := mask.NewArray()
	defer m.Release()
	kept, err := compute.FilterRecordBatch(r.ctx, rec, m, compute.DefaultFilterOptions())
	if err != nil {
		return nil, fmt.Errorf("keep an outbox batch's changes: %w", err)
	}
	defer kept.Release()
	ob := array.NewInt8Builder(r.mem)
	defer ob.Release()
	ob.Reserve(len(ops))
	for _, o := range ops {
		ob.UnsafeAppend(int8(o))
	}
	opCol := ob.NewArray()
	defer opCol.Release()
	cols := slices.Clone(kept.Columns())
	cols[opAt[0]] = opCol
	return array.NewRecordBatch(kept.Schema(), cols, kept.NumRows()), nil
}
