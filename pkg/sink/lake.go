package sink

import (
	"bytes"
	"context"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/jackc/pgx/v5"
)

// LakeOutboxSuffix ends the name of a table's lake outbox: claims__lake.
//
// A table synced into the change lake (TableOptions.Lake) has an outbox in
// its organization's schema. Each chunk with rows adds one outbox row, in
// the transaction that commits the chunk's rows and position: the chunk's
// change batch as the extractor read it (Arrow IPC stream, uncompressed),
// its commit's position-history id (the rows' _ehrsync_batch), the
// transaction's timestamp and the position it moved to. pkg/lake moves
// outbox rows into the table's Iceberg table and deletes them; a row
// leaves the outbox only after the Iceberg commit that holds it. So every
// chunk the store commits reaches the lake once, whatever fails between.
// The outbox holds the organization's row values and stays in its schema.
const LakeOutboxSuffix = "__lake"

// OutboxName is the store name of t's lake outbox.
func OutboxName(t string) string { return t + LakeOutboxSuffix }

// createOutboxSQL creates the outbox. claim is the lake flush that took the
// row (NULL until one does); schema is the batch's Arrow schema (an IPC
// stream of no records), so a flush finds a claim's schemas without
// reading its data; data is stored uncompressed, out of line.
func createOutboxSQL(ident pgx.Identifier) string {
	t := ident.Sanitize()
	return "CREATE TABLE " + t + ` (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch        bigint      NOT NULL,
    committed_at timestamptz NOT NULL,
    rows         integer     NOT NULL,
    bytes        integer     NOT NULL,
    position     bytea       NOT NULL,
    claim        bigint,
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

// queueOutbox queues the chunk's outbox row on b, in its transaction.
func (p *Pending) queueOutbox(b *pgx.Batch) {
	if p.lake == nil {
		return
	}
	b.Queue("INSERT INTO "+p.tg.outbox.Sanitize()+" (batch, committed_at, rows, bytes, position, schema, data) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		p.c.id, p.c.at, p.res.Rows, len(p.lake), p.c.pos, p.tg.lakeSchema, p.lake)
	p.res.LakeBytes = int64(len(p.lake))
	p.lake = nil
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
	return nil
}
