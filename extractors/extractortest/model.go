package extractortest

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
	"github.com/ehrsync/ehrsync/schemas"
)

// Model is a source the suite writes to without SQL: RunTDS's SQL Server
// held in a model (pkg/mssqlmodel) and served over TDS, which the
// extractor under test reads through go-mssqldb. Values are driver values
// shaped as
// go-mssqldb returns them: GUIDs as 16 bytes in SQL Server's wire order,
// decimals as text bytes, integers as int64, floats as float64, strings,
// []byte, date-times as time.Time (zone-less types in UTC), NULL as nil.
type Model interface {
	// Create creates table (as declared, its full column list) with its
	// change data on (CDC enabled, change tracking on).
	Create(t *testing.T, table *schemas.Table)
	// Begin opens a transaction: its writes are invisible until Commit.
	Begin(t *testing.T) ModelTx
	// Bump commits a transaction elsewhere in the database: the source's
	// position moves (and, for CDC, is harvested), no suite table changes.
	Bump(t *testing.T)
	// Rows returns table's committed rows, every column by name.
	Rows(t *testing.T, table *schemas.Table) []map[string]any
	// Expire cleans the table's change data up to the source's current
	// position (CDC cleanup raising the instance's minimum LSN, Change
	// Tracking's minimum valid version raised): every position saved
	// before the table's last change expires.
	Expire(t *testing.T, table *schemas.Table)
	// New builds the extractor under test for table (possibly a
	// projection of a created table).
	New(t *testing.T, table *schemas.Table, cfg Config) (extractors.Extractor, error)
}

// ModelTx is an open transaction of a Model. Rows carry every column of
// the created table by name; a delete's row carries at least the key.
type ModelTx interface {
	Insert(table *schemas.Table, row map[string]any)
	Update(table *schemas.Table, row map[string]any)
	Delete(table *schemas.Table, row map[string]any)
	Commit()
}

// GUIDWire is u in SQL Server's mixed-endian wire order, as go-mssqldb
// returns a uniqueidentifier.
func GUIDWire(u uuid.UUID) []byte {
	b := u
	b[0], b[1], b[2], b[3] = u[3], u[2], u[1], u[0]
	b[4], b[5] = u[5], u[4]
	b[6], b[7] = u[7], u[6]
	return b[:]
}

// modelSource drives a Model. It sets the tables' rowversion column as SQL
// Server does (a database-wide counter, on every insert and update).
type modelSource struct {
	t  *testing.T
	m  Model
	rv uint64
}

func newModelSource(t *testing.T, m Model) *modelSource {
	return &modelSource{t: t, m: m}
}

func (s *modelSource) create(table *schemas.Table) {
	s.m.Create(s.t, table)
}

func (s *modelSource) blockingReads() bool { return false }

func (s *modelSource) dialect() schemas.Dialect { return schemas.SQLServer }

func (s *modelSource) bump() { s.m.Bump(s.t) }

func (s *modelSource) expire(table *schemas.Table) bool {
	s.m.Expire(s.t, table)
	return true
}

func (s *modelSource) extractor(table *schemas.Table, cfg Config) (extractors.Extractor, error) {
	return s.m.New(s.t, table, cfg)
}

func (s *modelSource) begin() tx { return &modelTx{s: s, tx: s.m.Begin(s.t)} }

func (s *modelSource) write(do func(x *modelTx)) {
	x := &modelTx{s: s, tx: s.m.Begin(s.t)}
	do(x)
	x.commit()
}

func (s *modelSource) insertLines(table *schemas.Table, rows ...line) {
	s.write(func(x *modelTx) { x.insertLines(table, rows...) })
}

func (s *modelSource) updateLine(table *schemas.Table, r line) {
	s.write(func(x *modelTx) { x.updateLine(table, r) })
}

func (s *modelSource) deleteLine(table *schemas.Table, r line) {
	s.write(func(x *modelTx) { x.deleteLine(table, r) })
}

// rowVersion stamps r's rowversion column, if table has one.
func (s *modelSource) rowVersion(table *schemas.Table, r map[string]any) map[string]any {
	if table.RowVersion != "" {
		s.rv++
		r[table.RowVersion] = binary.BigEndian.AppendUint64(nil, s.rv)
	}
	return r
}

func (s *modelSource) lineRow(table *schemas.Table, r line) map[string]any {
	c := func(name string) schemas.Column {
		col, ok := table.Column(name)
		require.True(s.t, ok, "column %s", name)
		return col
	}
	return s.rowVersion(table, map[string]any{
		"id": GUIDWire(r.ID), "line": int64(r.Line), "practice_id": driverValue(c("practice_id"), r.Practice),
		"amount": driverValue(c("amount"), r.Amount), "note": driverValue(c("note"), r.Note),
		"modify_timestamp": r.Stamp,
	})
}

func (s *modelSource) insertTypes(table *schemas.Table, id uuid.UUID, at time.Time, vals []typed) {
	r := map[string]any{"id": GUIDWire(id), "practice_id": Practice, "modify_timestamp": at}
	for _, v := range vals {
		c, ok := table.Column(v.col)
		require.True(s.t, ok, "column %s", v.col)
		r[v.col] = driverValue(c, v.mssql)
	}
	s.write(func(x *modelTx) { x.tx.Insert(table, s.rowVersion(table, r)) })
}

func (s *modelSource) rows(table *schemas.Table) map[string]row {
	t := s.t
	t.Helper()
	sc, err := arrowscan.New(schemas.SQLServer, table)
	require.NoError(t, err)
	b := sc.NewBatch(memory.NewGoAllocator())
	defer b.Release()
	for _, r := range s.m.Rows(t, table) {
		if fmt.Sprint(r[table.Practice]) != Practice {
			continue
		}
		raw := make([]any, len(table.Columns))
		for i, c := range table.Columns {
			raw[i] = r[c.Name]
		}
		require.NoError(t, b.Append(raw, schemas.OpInsert, 1))
	}
	rec := b.NewRecordBatch()
	defer rec.Release()
	st := newStore(table)
	st.apply(t, rec)
	return st.rows
}

type modelTx struct {
	s  *modelSource
	tx ModelTx
}

func (x *modelTx) insertLines(table *schemas.Table, rows ...line) {
	for _, r := range rows {
		x.tx.Insert(table, x.s.lineRow(table, r))
	}
}

func (x *modelTx) updateLine(table *schemas.Table, r line) {
	x.tx.Update(table, x.s.lineRow(table, r))
}

func (x *modelTx) deleteLine(table *schemas.Table, r line) {
	x.tx.Delete(table, x.s.lineRow(table, r))
}

func (x *modelTx) commit() { x.tx.Commit() }

// driverValue turns one of the suite's SQL Server values (as the types
// case and the lines table write them) into the driver value go-mssqldb
// returns for column c.
func driverValue(c schemas.Column, v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case bool:
		return x
	case int:
		return int64(x)
	case num:
		return []byte(x)
	case nstr:
		return string(x)
	case uuid.UUID:
		return GUIDWire(x)
	case []byte:
		return x
	case stamp:
		return time.Time(x)
	case time.Time:
		return x
	case raw:
		switch c.Type.Name {
		case "float", "real":
			f, err := strconv.ParseFloat(string(x), 64)
			if err != nil {
				panic(err)
			}
			if c.Type.Name == "real" {
				return float64(float32(f))
			}
			return f
		}
		n, err := strconv.ParseInt(string(x), 10, 64)
		if err != nil {
			panic(err)
		}
		return n
	case string:
		layout := ""
		switch c.Type.Name {
		case "char", "nchar":
			if n := c.Type.Length - len([]rune(x)); n > 0 {
				return x + strings.Repeat(" ", n) // SQL Server pads char(n)
			}
			return x
		case "date":
			layout = "2006-01-02"
		case "time":
			layout = "15:04:05.999999999"
		case "datetime", "datetime2", "smalldatetime":
			layout = "2006-01-02T15:04:05.999999999"
		case "datetimeoffset":
			layout = time.RFC3339Nano
		default:
			return x
		}
		tm, err := time.Parse(layout, x)
		if err != nil {
			panic(err)
		}
		return tm
	}
	panic(fmt.Sprintf("extractortest: no driver value for %T", v))
}
