package extractortest

import (
	"context"
	"database/sql"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/schemas"
)

// source is one test's source as the cases drive it: a database through
// SQL (sqlSource) or a model of a database's change data (modelSource).
type source interface {
	// create creates table (as declared, its full column list).
	create(table *schemas.Table)
	// insertLines, updateLine and deleteLine write in a transaction of
	// their own.
	writer
	// begin opens a transaction that stays open (its writes invisible)
	// until commit; a transaction never committed is rolled back at the
	// end of the test.
	begin() tx
	// bump moves the source's position (row-version counter, LSN, change
	// tracking version) without touching the tables under test.
	bump()
	// insertTypes inserts one row of the types table: id, the practice,
	// modify stamp at, and vals (the others NULL).
	insertTypes(table *schemas.Table, id uuid.UUID, at time.Time, vals []typed)
	// rows reads table's rows of the organization's practice in canonical
	// form, not through an extractor.
	rows(table *schemas.Table) map[string]row
	// extractor builds the extractor under test for table.
	extractor(table *schemas.Table, cfg Config) (extractors.Extractor, error)
	// expire makes every position saved for table so far expire (the
	// source's change data cleaned up past it); false when the source
	// cannot.
	expire(table *schemas.Table) bool
	// blockingReads: see Source.BlockingReads.
	blockingReads() bool
	// dialect is the source's.
	dialect() schemas.Dialect
}

type writer interface {
	insertLines(table *schemas.Table, rows ...line)
	updateLine(table *schemas.Table, r line)
	deleteLine(table *schemas.Table, r line)
}

type tx interface {
	writer
	commit()
}

// sqlSource is a database source through database/sql.
type sqlSource struct {
	db       *db
	sub      Subject
	blocking bool
}

func (s *sqlSource) create(table *schemas.Table) { s.db.create(table) }

func (s *sqlSource) insertLines(table *schemas.Table, rows ...line) {
	s.db.t.Helper()
	s.db.insertLines(s.db.conn, table, rows...)
}

func (s *sqlSource) updateLine(table *schemas.Table, r line) {
	s.db.t.Helper()
	s.db.updateLine(s.db.conn, table, r)
}

func (s *sqlSource) deleteLine(table *schemas.Table, r line) {
	s.db.t.Helper()
	s.db.deleteLine(s.db.conn, table, r)
}

func (s *sqlSource) bump() { s.db.bump() }

func (s *sqlSource) blockingReads() bool { return s.blocking }

func (s *sqlSource) dialect() schemas.Dialect { return s.db.dialect }

func (s *sqlSource) expire(*schemas.Table) bool { return false }

func (s *sqlSource) rows(table *schemas.Table) map[string]row {
	return sourceRows(s.db.t, s.db, table)
}

func (s *sqlSource) extractor(table *schemas.Table, cfg Config) (extractors.Extractor, error) {
	return s.sub.New(s.db.conn, s.db.dialect, table, cfg)
}

func (s *sqlSource) insertTypes(table *schemas.Table, id uuid.UUID, at time.Time, vals []typed) {
	d := s.db
	d.t.Helper()
	cols := []string{"id", "practice_id", "modify_timestamp"}
	lits := []string{d.lit(id), d.lit(Practice), d.lit(stamp(at))}
	for _, v := range vals {
		x := v.pg
		if d.dialect == schemas.SQLServer {
			x = v.mssql
		}
		cols = append(cols, v.col)
		lits = append(lits, d.lit(x))
	}
	d.exec(d.conn, "INSERT INTO "+d.qualified(table)+" ("+strings.Join(cols, ", ")+") VALUES ("+strings.Join(lits, ", ")+")")
}

func (s *sqlSource) begin() tx {
	t := s.db.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	x, err := s.db.conn.BeginTx(ctx, nil)
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = x.Rollback()
		cancel()
	})
	return &sqlTx{db: s.db, tx: x}
}

type sqlTx struct {
	db *db
	tx *sql.Tx
}

func (x *sqlTx) insertLines(table *schemas.Table, rows ...line) {
	x.db.t.Helper()
	x.db.insertLines(x.tx, table, rows...)
}

func (x *sqlTx) updateLine(table *schemas.Table, r line) {
	x.db.t.Helper()
	x.db.updateLine(x.tx, table, r)
}

func (x *sqlTx) deleteLine(table *schemas.Table, r line) {
	x.db.t.Helper()
	x.db.deleteLine(x.tx, table, r)
}

func (x *sqlTx) commit() {
	x.db.t.Helper()
	require.NoError(x.db.t, x.tx.Commit())
}
