package sink

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/decimal128"
	"github.com/apache/arrow-go/v18/arrow/extensions"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// LakeOutboxSuffix ends the name of a table's lake outbox: claims__lake.
//
// A table synced into the change lake (TableOptions.Lake) has an outbox in
// its organization's schema. Each chunk with rows adds one outbox row, in
// the transaction that commits the chunk's rows and position: the chunk's
// change batch as the extractor read it (Arrow IPC stream, uncompressed),
// its commit's position-history id (the rows' _ehrsync_batch), the
// transaction's timestamp and the position it moved the table to (NULL for
// a ranged backfill's chunk, which moves a position of its own, and a
// reconciliation's deletes). pkg/lake moves
// outbox rows into the table's Iceberg table and deletes them; a row
// leaves the outbox only after the Iceberg commit that holds it. So every
// chunk the store commits reaches the lake once, whatever fails between.
// The outbox holds the organization's row values and stays in its schema.
const LakeOutboxSuffix = "__lake"

// OutboxName is the store name of t's lake outbox.
func OutboxName(t string) string { return t + LakeOutboxSuffix }

// createOutboxSQL creates the outbox. claim is the lake flush that took the
// row (NULL until one does); seqs, when set, are the _ehrsync_seq of the
// batch's rows the lake takes (the others were not changes), and ops their
// operations as the store applied them; schema is the batch's Arrow schema (an IPC
// stream of no records), so a flush finds a claim's schemas without
// reading its data; data is stored out of line, uncompressed unless
// ensureOutbox turns lz4 on.
func createOutboxSQL(ident pgx.Identifier) string {
	t := ident.Sanitize()
	return "CREATE TABLE " + t + ` (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch        bigint      NOT NULL,
    committed_at timestamptz NOT NULL,
    rows         integer     NOT NULL,
    bytes        integer     NOT NULL,
    position     bytea,
    claim        bigint,
    seqs         bigint[],
    ops          smallint[],
    schema       bytea       NOT NULL,
    data         bytea       NOT NULL
);
ALTER TABLE ` + t + ` ALTER COLUMN data SET STORAGE EXTERNAL;
COMMENT ON TABLE ` + t + ` IS 'Chunks committed here and not yet in the change lake (Arrow IPC). Rows leave once the lake holds them.'`
}

// lakeData is rec as the outbox keeps it: an Arrow IPC stream. With a nil
// rec, it is the stream of schema alone.
func lakeData(schema *arrow.Schema, rec arrow.RecordBatch) ([]byte, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(schema))
	if rec != nil {
		if err := w.Write(rec); err != nil {
			return nil, fmt.Errorf("encode the chunk for the lake: %w", err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("encode the chunk for the lake: %w", err)
	}
	return buf.Bytes(), nil
}

// queueOutbox queues the chunk's outbox row on b, in its transaction,
// after its rows are applied.
//
// A chunk of observations (a snapshot's or a high-water mark's rows: the
// rows as they are, whether they changed or not) keeps only its changes:
// the staged rows whose key this commit inserted or updated (the target
// row carries the commit's batch id), and its deletes, each with the
// store's operation (seqs and ops). A chunk of changes (CDC, Change
// Tracking), or one copied straight into an empty target, keeps all its
// rows as the source gave them.
func (p *Pending) queueOutbox(b *pgx.Batch) {
	if p.lake == nil {
		return
	}
	tg := p.tg
	p.res.LakeBytes = int64(len(p.lake))
	// The table's position, not a ranged backfill's own.
	var pos []byte
	if p.m.Table == tg.table.QualifiedName() {
		pos = p.c.pos
	}
	if p.res.Direct || !observes(p.m.From) {
		b.Queue("INSERT INTO "+tg.outbox.Sanitize()+" (batch, committed_at, rows, bytes, position, schema, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
			p.c.id, p.c.at, p.res.Rows, len(p.lake), pos, tg.lakeSchema, p.lake)
		p.lake = nil
		return
	}
	seq, op := "s."+schemas.SeqColumn, "s."+schemas.OpColumn
	b.Queue(fmt.Sprintf(`INSERT INTO %[1]s (batch, committed_at, rows, bytes, position, schema, data, seqs, ops)
	SELECT $1, $2, count(*), $3, $4, $5, $6, array_agg(%[2]s ORDER BY %[2]s),
		array_agg(CASE WHEN %[3]s = %[4]d THEN %[4]d WHEN t.%[5]s = 'insert' THEN %[6]d ELSE %[7]d END ORDER BY %[2]s)::smallint[]
	FROM %[8]s s LEFT JOIN %[9]s t ON %[10]s AND t.%[11]s = $1::bigint
	WHERE %[3]s = %[4]d OR t.%[11]s IS NOT NULL
	HAVING count(*) > 0`,
		tg.outbox.Sanitize(), seq, op, schemas.OpDelete, MetaOp, schemas.OpInsert, schemas.OpUpdate,
		pgx.Identifier{tg.stage}.Sanitize(), tg.ident.Sanitize(), tg.keyMatch("t", "s"), MetaBatch),
		p.c.id, p.c.at, len(p.lake), pos, tg.lakeSchema, p.lake)
	p.lake = nil
}

// observes says whether a chunk read from position from reads rows as
// they are (a snapshot's, a high-water mark's), not changes.
func observes(from watermarks.Position) bool {
	if from == nil {
		return true
	}
	k := from.Kind()
	return k == watermarks.KindSnapshot || k == watermarks.KindCursor
}

// outboxDeletes runs q, a reconciliation's statement answering the keys of
// the rows it deleted, and keeps them in the outbox as one change batch of
// deletes (the key alone, the other columns null), under the
// reconciliation's batch id and time. It returns how many rows q deleted.
func (tg *Target) outboxDeletes(ctx context.Context, tx pgx.Tx, q string, args []any, batch int64, at time.Time) (int64, error) {
	b := array.NewRecordBuilder(memory.DefaultAllocator, tg.schema)
	defer b.Release()
	keyField := make([]int, len(tg.key))
	for i, k := range tg.key {
		keyField[i] = tg.schema.FieldIndices(k)[0]
	}
	rows, err := tx.Query(ctx, q, args...)
	if err != nil {
		return 0, err
	}
	var n int64
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			rows.Close()
			return 0, err
		}
		n++
		for i, v := range vals {
			if err := appendStored(b.Field(keyField[i]), v); err != nil {
				rows.Close()
				return 0, fmt.Errorf("key column %s: %w", tg.key[i], err)
			}
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	for i, f := range tg.schema.Fields() {
		switch {
		case slices.Contains(keyField, i):
		case f.Name == schemas.OpColumn:
			ob := b.Field(i).(*array.Int8Builder)
			for range n {
				ob.Append(int8(schemas.OpDelete))
			}
		case f.Name == schemas.SeqColumn:
			sb := b.Field(i).(*array.Int64Builder)
			for j := range n {
				sb.Append(j + 1)
			}
		default:
			b.Field(i).AppendNulls(int(n))
		}
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	data, err := lakeData(tg.schema, rec)
	if err != nil {
		return 0, err
	}
	_, err = tx.Exec(ctx, "INSERT INTO "+tg.outbox.Sanitize()+" (batch, committed_at, rows, bytes, schema, data) VALUES ($1, $2, $3, $4, $5, $6)",
		batch, at, n, len(data), tg.lakeSchema, data)
	return n, err
}

// appendStored appends a key value as pgx decoded it from the store to b,
// a builder of the key's change-batch type. Errors name the types, never
// the value.
func appendStored(b array.Builder, v any) error {
	if v == nil {
		b.AppendNull()
		return nil
	}
	bad := func() error { return fmt.Errorf("a stored %T does not convert to %s", v, b.Type()) }
	switch b := b.(type) {
	case *extensions.UUIDBuilder:
		u, ok := v.([16]byte)
		if !ok {
			return bad()
		}
		b.Append(u)
	case *array.StringBuilder:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		b.Append(s)
	case *array.BinaryBuilder:
		p, ok := v.([]byte)
		if !ok {
			return bad()
		}
		b.Append(p)
	case *array.FixedSizeBinaryBuilder:
		p, ok := v.([]byte)
		if !ok {
			return bad()
		}
		b.Append(p)
	case *array.Int8Builder, *array.Int16Builder, *array.Int32Builder, *array.Int64Builder, *array.Uint8Builder:
		var n int64
		switch v := v.(type) {
		case int16:
			n = int64(v)
		case int32:
			n = int64(v)
		case int64:
			n = v
		default:
			return bad()
		}
		switch b := b.(type) {
		case *array.Int8Builder:
			b.Append(int8(n))
		case *array.Int16Builder:
			b.Append(int16(n))
		case *array.Int32Builder:
			b.Append(int32(n))
		case *array.Int64Builder:
			b.Append(n)
		case *array.Uint8Builder:
			b.Append(uint8(n))
		}
	case *array.Decimal128Builder:
		num, ok := v.(pgtype.Numeric)
		if !ok || !num.Valid || num.NaN || num.InfinityModifier != pgtype.Finite {
			return bad()
		}
		scale := b.Type().(*arrow.Decimal128Type).Scale
		unscaled := new(big.Int).Set(num.Int)
		switch e := int(num.Exp) + int(scale); {
		case e > 0:
			unscaled.Mul(unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(e)), nil))
		case e < 0:
			unscaled.Quo(unscaled, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(-e)), nil))
		}
		b.Append(decimal128.FromBigInt(unscaled))
	case *array.TimestampBuilder:
		t, ok := v.(time.Time)
		if !ok {
			return bad()
		}
		ts, err := arrow.TimestampFromTime(t, b.Type().(*arrow.TimestampType).Unit)
		if err != nil {
			return bad()
		}
		b.Append(ts)
	case *array.Date32Builder:
		t, ok := v.(time.Time)
		if !ok {
			return bad()
		}
		b.Append(arrow.Date32FromTime(t))
	case *array.BooleanBuilder:
		x, ok := v.(bool)
		if !ok {
			return bad()
		}
		b.Append(x)
	case *array.Float64Builder:
		x, ok := v.(float64)
		if !ok {
			return bad()
		}
		b.Append(x)
	case *array.Float32Builder:
		x, ok := v.(float32)
		if !ok {
			return bad()
		}
		b.Append(x)
	case *array.Time64Builder:
		x, ok := v.(pgtype.Time)
		if !ok || !x.Valid {
			return bad()
		}
		b.Append(arrow.Time64(x.Microseconds * int64(time.Microsecond) / int64(b.Type().(*arrow.Time64Type).Unit.Multiplier())))
	default:
		return bad()
	}
	return nil
}

// ensureOutbox creates the outbox when the table goes to the lake.
func (tg *Target) ensureOutbox(ctx context.Context, tx pgx.Tx) error {
	if !tg.opts.Lake {
		return nil
	}
	var err error
	if tg.lakeSchema, err = lakeData(tg.schema, nil); err != nil {
		return err
	}
	var exists bool
	if err := tx.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", tg.outbox.Sanitize()).Scan(&exists); err != nil || exists {
		return err
	}
	if _, err := tx.Exec(ctx, createOutboxSQL(tg.outbox)); err != nil {
		return fmt.Errorf("create %s: %w", tg.outbox.Sanitize(), err)
	}
	return compressOutbox(ctx, tx, tg.outbox)
}

// compressOutbox stores the outbox's data compressed with lz4 where the
// server has it (PostgreSQL 14 and later, built with lz4): a chunk's
// Arrow IPC then takes fewer TOAST pages and less WAL, which costs the
// server less CPU than writing it whole (docs/performance.md). A server
// without lz4 refuses, and the data stays uncompressed.
func compressOutbox(ctx context.Context, tx pgx.Tx, outbox pgx.Identifier) error {
	if _, err := tx.Exec(ctx, "SAVEPOINT ehrsync_lz4"); err != nil {
		return err
	}
	t := outbox.Sanitize()
	if _, err := tx.Exec(ctx, "ALTER TABLE "+t+" ALTER COLUMN data SET STORAGE EXTENDED, ALTER COLUMN data SET COMPRESSION lz4"); err != nil {
		_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT ehrsync_lz4")
		return err
	}
	_, err := tx.Exec(ctx, "RELEASE SAVEPOINT ehrsync_lz4")
	return err
}
