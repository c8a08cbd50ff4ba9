package arrowscan

import (
	"errors"
	"fmt"
	"math/big"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/ehrsync/ehrsync/schemas"
)

// memRows are rows already read off the wire: ReadPgx without a server.
type memRows struct {
	fds  []pgconn.FieldDescription
	rows [][][]byte
	i    int
}

func (r *memRows) Close()                                       {}
func (r *memRows) Err() error                                   { return nil }
func (r *memRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (r *memRows) FieldDescriptions() []pgconn.FieldDescription { return r.fds }
func (r *memRows) Next() bool                                   { r.i++; return r.i <= len(r.rows) }
func (r *memRows) Scan(...any) error                            { return errors.New("memRows: no Scan") }
func (r *memRows) Values() ([]any, error)                       { return nil, errors.New("memRows: no Values") }
func (r *memRows) RawValues() [][]byte                          { return r.rows[r.i-1] }
func (r *memRows) Conn() *pgx.Conn                              { return nil }
func (r *memRows) TypeMap() *pgtype.Map                         { return nil }

// chargesTable is the benchmark's claim line (bench.Columns) with the
// synthetic source's SQL Server types.
func chargesTable(b *testing.B) *schemas.Table {
	cols := []struct{ name, typ string }{
		{"charge_id", "uniqueidentifier"}, {"practice_id", "char(4)"}, {"person_id", "uniqueidentifier"},
		{"service_item_id", "varchar(36)"}, {"cpt4_code_id", "varchar(36)"},
		{"quantity", "numeric(19,2)"}, {"unit_price", "numeric(19,2)"}, {"amt", "numeric(19,2)"}, {"pat_amt", "numeric(19,2)"},
		{"begin_date_of_service", "varchar(8)"}, {"end_date_of_service", "varchar(8)"}, {"status", "varchar(1)"},
		{"created_by", "int"}, {"create_timestamp", "datetime"}, {"modified_by", "int"}, {"modify_timestamp", "datetime"},
		{"row_timestamp", "rowversion"},
	}
	table := &schemas.Table{Schema: "dbo", Name: "charges", Dialect: schemas.SQLServer, Key: []string{"charge_id"}}
	for _, c := range cols {
		typ, err := schemas.ParseType(schemas.SQLServer, c.typ)
		if err != nil {
			b.Fatal(err)
		}
		table.Columns = append(table.Columns, schemas.Column{Name: c.name, Type: typ, Nullable: c.name != "charge_id"})
	}
	return table
}

// BenchmarkReadPgx reads chunks of the benchmark's claim line (bench.Columns:
// the synthetic source's types) with ReadPgx and makes them record batches.
func BenchmarkReadPgx(b *testing.B) {
	table := chargesTable(b)
	oids := []uint32{pgtype.UUIDOID, pgtype.BPCharOID, pgtype.UUIDOID, pgtype.VarcharOID, pgtype.VarcharOID,
		pgtype.NumericOID, pgtype.NumericOID, pgtype.NumericOID, pgtype.NumericOID,
		pgtype.VarcharOID, pgtype.VarcharOID, pgtype.VarcharOID,
		pgtype.Int4OID, pgtype.TimestampOID, pgtype.Int4OID, pgtype.TimestampOID, pgtype.Int8OID}
	s, err := New(schemas.Postgres, table)
	if err != nil {
		b.Fatal(err)
	}
	m := pgtype.NewMap()
	var fds []pgconn.FieldDescription
	for i, oid := range oids {
		format := int16(pgx.TextFormatCode)
		if f, ok := PgxResultFormats[oid]; ok {
			format = f
		}
		fds = append(fds, pgconn.FieldDescription{Name: table.Columns[i].Name, DataTypeOID: oid, Format: format})
	}
	const chunk = 10000
	rows := make([][][]byte, chunk)
	day := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	for r := range rows {
		x := uint64(r)*0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019
		var id [16]byte
		for i := range id {
			id[i] = byte(x >> (i % 8 * 8))
		}
		ts := day.Add(time.Duration(x%86400000) * time.Millisecond)
		vals := []any{
			pgtype.UUID{Bytes: id, Valid: true}, fmt.Sprintf("%04d", x%40), pgtype.UUID{Bytes: [16]byte{1, byte(r)}, Valid: true},
			fmt.Sprintf("SVC%d", x%9000), fmt.Sprint(99000 + x%1000),
			pgtype.Numeric{Int: big.NewInt(int64(100 * (1 + x%3))), Exp: -2, Valid: true},
			pgtype.Numeric{Int: big.NewInt(int64(x % 50000)), Exp: -2, Valid: true},
			pgtype.Numeric{Int: big.NewInt(int64(x % 150000)), Exp: -2, Valid: true},
			pgtype.Numeric{Int: big.NewInt(int64(x % 30000)), Exp: -2, Valid: true},
			ts.Format("20060102"), ts.Format("20060102"), "A",
			int32(r), pgtype.Timestamp{Time: ts, Valid: true}, int32(x % 500), pgtype.Timestamp{Time: ts, Valid: true},
			int64(r + 1),
		}
		for i, v := range vals {
			raw, err := m.Encode(oids[i], fds[i].Format, v, nil)
			if err != nil {
				b.Fatalf("column %s: %v", table.Columns[i].Name, err)
			}
			rows[r] = append(rows[r], raw)
		}
	}
	// As the reader reads a snapshot: from a Pool, keeping the last key,
	// with the two chunks before still being written (the engine's
	// Writers) when a chunk is read.
	pool := NewPool(memory.NewGoAllocator(), 64<<20)
	var inflight []arrow.RecordBatch
	defer func() {
		for _, rec := range inflight {
			rec.Release()
		}
	}()
	b.ReportAllocs()
	var seq int64
	var hint []int // as the reader sizes a chunk: like the last
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch := s.NewBatch(pool)
		batch.Reserve(chunk, hint)
		res, err := s.ReadPgx(&memRows{fds: fds, rows: rows}, m, batch, schemas.OpInsert, &seq, Limits{Rows: chunk, Last: []int{0}})
		if err != nil || res.Rows != chunk {
			b.Fatal(res.Rows, err)
		}
		hint = batch.DataLens()
		inflight = append(inflight, batch.NewRecordBatch())
		batch.Release()
		if len(inflight) > 2 {
			inflight[0].Release()
			inflight = inflight[1:]
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*chunk), "ns/row")
}
