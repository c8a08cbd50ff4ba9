// Package reader runs the extractors' chunk queries: one bounded SELECT per
// chunk, scanned straight into an Arrow change batch, with the organization
// filter and column allow-list pushed down, under a per-query timeout. It
// also converts key and cursor values between the source's native values and
// watermarks.Values.
package reader

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/jackc/pgx/v5/stdlib"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
	"github.com/ehrsync/ehrsync/extractors/internal/dialect"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
)

// Defaults for Config.
const (
	DefaultChunkRows    = 10_000
	DefaultChunkBytes   = 64 << 20
	DefaultQueryTimeout = 5 * time.Minute
)

// Config says what a Reader reads and how much at a time.
type Config struct {
	DB      *sql.DB
	Dialect schemas.Dialect // the source's dialect
	// Table is the table as the batches carry it: its columns are the select
	// list (apply a column allow-list with (*schemas.Table).Project first).
	Table *schemas.Table
	// Filter is the table the organization filter's column is looked up in
	// (nil: Table). A keys-only projection filters on a column it does not
	// carry.
	Filter *schemas.Table
	// Bounds of each chunk query (defaults: DefaultChunkRows,
	// DefaultChunkBytes, DefaultQueryTimeout).
	extractors.Bounds
}

// WithDefaults returns b with its zero fields set to the defaults, or an
// error when a bound is negative.
func WithDefaults(b extractors.Bounds) (extractors.Bounds, error) {
	if b.ChunkRows < 0 || b.ChunkBytes < 0 || b.QueryTimeout < 0 {
		return b, errors.New("chunk rows, chunk bytes and query timeout must not be negative")
	}
	if b.ChunkRows == 0 {
		b.ChunkRows = DefaultChunkRows
	}
	if b.ChunkBytes == 0 {
		b.ChunkBytes = DefaultChunkBytes
	}
	if b.QueryTimeout == 0 {
		b.QueryTimeout = DefaultQueryTimeout
	}
	if b.Allocator == nil {
		b.Allocator = memory.DefaultAllocator
	}
	return b, nil
}

// Reader reads one table in chunks. It is safe for sequential use by one
// run at a time.
type Reader struct {
	cfg     Config
	d       dialect.Dialect
	scanner *arrowscan.Scanner
	in      *dialect.In
	// pool allocates the chunks' column buffers and takes them back when
	// the chunks' record batches are released, for the chunks after.
	pool *arrowscan.Pool
	// last are the columns whose values Chunk.Last keeps (nil: every one).
	last []int
	// rowsHint and dataHint are the rows and the variable-length bytes per
	// column of the last chunk that stopped at a bound: the next chunk
	// reserves that much.
	rowsHint int
	dataHint []int
}

// New checks cfg, fills in its defaults and returns a Reader.
func New(cfg Config) (*Reader, error) {
	if cfg.DB == nil {
		return nil, errors.New("no source database")
	}
	if cfg.Table == nil {
		return nil, errors.New("no table")
	}
	d, err := dialect.New(cfg.Dialect)
	if err != nil {
		return nil, err
	}
	if cfg.Bounds, err = WithDefaults(cfg.Bounds); err != nil {
		return nil, err
	}
	if cfg.Filter == nil {
		cfg.Filter = cfg.Table
	}
	s, err := arrowscan.New(cfg.Dialect, cfg.Table)
	if err != nil {
		return nil, err
	}
	// The pool keeps at most one chunk's bytes: what the next chunk needs.
	r := &Reader{cfg: cfg, d: d, scanner: s, pool: arrowscan.NewPool(cfg.Allocator, cfg.ChunkBytes)}
	if pc := cfg.Filter.Practice; pc != "" && len(cfg.Practices) > 0 {
		col, ok := cfg.Filter.Column(pc)
		if !ok {
			return nil, fmt.Errorf("table %s: practice column %s does not exist", cfg.Filter.QualifiedName(), pc)
		}
		in := &dialect.In{Column: col.Name}
		for _, p := range cfg.Practices {
			param, err := d.PracticeParam(col, cfg.Filter.Dialect, p)
			if err != nil {
				return nil, fmt.Errorf("table %s: practice filter: %w", cfg.Filter.QualifiedName(), err)
			}
			in.Values = append(in.Values, param)
		}
		r.in = in
	}
	return r, nil
}

// KeepLast makes Chunk.Last hold the values of columns cols only (batch
// column indexes: the key and cursor columns the caller positions by),
// so that a read keeps no other value of its rows.
func (r *Reader) KeepLast(cols ...int) {
	r.last = append([]int{}, cols...)
}

// Table returns the table the batches carry.
func (r *Reader) Table() *schemas.Table { return r.cfg.Table }

// Dialect returns the source's query dialect.
func (r *Reader) Dialect() dialect.Dialect { return r.d }

// ChunkRows returns the configured rows per chunk.
func (r *Reader) ChunkRows() int { return r.cfg.ChunkRows }

// Schema returns the change schema of the batches.
func (r *Reader) Schema() *arrow.Schema { return r.scanner.Schema() }

// Filter returns the organization filter, nil for none.
func (r *Reader) Filter() *dialect.In { return r.in }

// Select returns the chunk query over the reader's columns with the
// organization filter, conditions where and ordering orderBy.
func (r *Reader) Select(where []dialect.Cond, orderBy []string) dialect.Select {
	cols := make([]string, len(r.cfg.Table.Columns))
	for i, c := range r.cfg.Table.Columns {
		cols[i] = c.Name
	}
	return dialect.Select{
		Table:   r.cfg.Table,
		Columns: cols,
		In:      r.in,
		Where:   where,
		OrderBy: orderBy,
		Limit:   r.cfg.ChunkRows,
	}
}

// Chunk is one chunk read.
type Chunk struct {
	// Batch holds the rows; nil when there were none. The caller releases it.
	Batch arrow.RecordBatch
	Rows  int
	// Last holds the native values (arrowscan.Scanner.Native) of the last
	// row's columns, nil when there were no rows. With KeepLast, only the
	// kept columns' values are set; the others are nil.
	Last []any
	// Exhausted is true when the query returned everything it matched: the
	// chunk stopped at neither the row nor the byte bound.
	Exhausted bool
}

// Read runs one chunk query, scanning its rows as op with seq numbers from
// *seq, and stops at the row or byte bound.
func (r *Reader) Read(ctx context.Context, sel dialect.Select, op schemas.Op, seq *int64) (Chunk, error) {
	query, args, err := r.d.Build(sel)
	if err != nil {
		return Chunk{}, err
	}
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	switch r.cfg.Dialect {
	case schemas.Postgres:
		if ch, ok, err := r.readPgx(qctx, query, args, sel.Limit, op, seq); ok {
			return ch, err
		}
	case schemas.SQLServer:
		if ch, ok, err := r.readMSSQL(qctx, query, args, sel.Limit, op, seq); ok {
			return ch, err
		}
	}
	rows, err := r.cfg.DB.QueryContext(qctx, query, args...)
	if err != nil {
		return Chunk{}, fmt.Errorf("query %s: %w", r.cfg.Table.QualifiedName(), source.Redact(err))
	}
	defer rows.Close()
	return r.scan(sel.Limit, func(b *arrowscan.Batch, lim arrowscan.Limits) (arrowscan.ReadResult, error) {
		return r.scanner.Read(rows, b, op, seq, lim)
	}, rows.Close)
}

// scan reads one chunk's rows, up to limit, into a new batch with read,
// then closes them with closeRows, and makes the chunk.
func (r *Reader) scan(limit int, read func(*arrowscan.Batch, arrowscan.Limits) (arrowscan.ReadResult, error), closeRows func() error) (Chunk, error) {
	b := r.scanner.NewBatch(r.pool)
	defer b.Release()
	// Size the buffers once, as the last chunk that stopped at a bound
	// needed: a table's chunks are much alike.
	b.Reserve(min(limit, r.rowsHint), r.dataHint)
	res, err := read(b, arrowscan.Limits{Rows: limit, Bytes: r.cfg.ChunkBytes, Last: r.last})
	if err != nil {
		return Chunk{}, fmt.Errorf("read %s: %w", r.cfg.Table.QualifiedName(), source.Redact(err))
	}
	if err := closeRows(); err != nil {
		return Chunk{}, fmt.Errorf("close %s rows: %w", r.cfg.Table.QualifiedName(), source.Redact(err))
	}
	if res.Stopped {
		r.rowsHint, r.dataHint = res.Rows, b.DataLens()
	}
	return r.chunk(b, res, limit)
}

// readPgx runs the chunk query on the pgx connection under a pgx stdlib
// pool and decodes the rows from the wire (arrowscan.Scanner.ReadPgx). ok
// is false, with nothing read, when the pool's driver is not pgx's.
func (r *Reader) readPgx(ctx context.Context, query string, args []any, limit int, op schemas.Op, seq *int64) (ch Chunk, ok bool, err error) {
	conn, err := r.cfg.DB.Conn(ctx)
	if err != nil {
		return Chunk{}, true, fmt.Errorf("query %s: %w", r.cfg.Table.QualifiedName(), source.Redact(err))
	}
	defer conn.Close()
	err = conn.Raw(func(dc any) error {
		sc, isPgx := dc.(*stdlib.Conn)
		if !isPgx {
			return nil
		}
		ok = true
		pc := sc.Conn()
		rows, err := pc.Query(ctx, query, append([]any{arrowscan.PgxResultFormats}, args...)...)
		if err != nil {
			return fmt.Errorf("query %s: %w", r.cfg.Table.QualifiedName(), source.Redact(err))
		}
		defer rows.Close()
		ch, err = r.scan(limit, func(b *arrowscan.Batch, lim arrowscan.Limits) (arrowscan.ReadResult, error) {
			return r.scanner.ReadPgx(rows, pc.TypeMap(), b, op, seq, lim)
		}, func() error { rows.Close(); return rows.Err() })
		return err
	})
	return ch, ok, err
}

// readMSSQL runs the chunk query on the go-mssqldb connection under the
// pool and reads its driver.Rows (arrowscan.Scanner.ReadDriver), below
// database/sql's per-value copying. ok is false, with nothing read, when
// the pool's driver is not go-mssqldb's, when an argument is a sql.NamedArg,
// when the driver's statement is not as queryDriver needs it, and when the
// connection turns out bad before the query ran (the caller's
// database/sql query then retries on another connection, as database/sql
// does).
func (r *Reader) readMSSQL(ctx context.Context, query string, args []any, limit int, op schemas.Op, seq *int64) (ch Chunk, ok bool, err error) {
	for _, a := range args {
		if _, named := a.(sql.NamedArg); named {
			return Chunk{}, false, nil
		}
	}
	conn, err := r.cfg.DB.Conn(ctx)
	if err != nil {
		return Chunk{}, true, fmt.Errorf("query %s: %w", r.cfg.Table.QualifiedName(), source.Redact(err))
	}
	defer conn.Close()
	queried := false
	err = conn.Raw(func(dc any) error {
		mc, isMSSQL := dc.(*mssql.Conn)
		if !isMSSQL {
			return nil
		}
		ok = true
		rows, err := queryDriver(ctx, mc, query, args)
		switch {
		case errors.Is(err, driver.ErrBadConn):
			// Raw discards the connection on this error.
			return err
		case errors.Is(err, errUseDatabaseSQL):
			ok = false
			return nil
		}
		queried = true
		if err != nil {
			return fmt.Errorf("query %s: %w", r.cfg.Table.QualifiedName(), source.Redact(err))
		}
		defer rows.Close()
		ch, err = r.scan(limit, func(b *arrowscan.Batch, lim arrowscan.Limits) (arrowscan.ReadResult, error) {
			return r.scanner.ReadDriver(rows, b, op, seq, lim)
		}, rows.Close)
		return err
	})
	if ok && !queried && errors.Is(err, driver.ErrBadConn) {
		return Chunk{}, false, nil
	}
	return ch, ok, err
}

// queryDriver prepares query on dc and runs it with args converted as
// database/sql converts them for a prepared statement: the statement's or
// else the connection's driver.NamedValueChecker first (so that the
// driver's own parameter types pass), driver.DefaultParameterConverter
// when it skips or there is none, ordinal driver.NamedValues, and the
// statement's placeholder count checked. The rows own the statement:
// closing them closes it.
func queryDriver(ctx context.Context, dc driver.Conn, query string, args []any) (driver.Rows, error) {
	pc, ok := dc.(driver.ConnPrepareContext)
	if !ok {
		return nil, errUseDatabaseSQL
	}
	si, err := pc.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	sq, ok := si.(driver.StmtQueryContext)
	// A statement that converts its arguments column by column (database/sql's
	// ColumnConverter) is left to database/sql.
	_, converts := si.(interface {
		ColumnConverter(int) driver.ValueConverter
	})
	if !ok || converts {
		si.Close()
		return nil, errUseDatabaseSQL
	}
	nvc, ok := si.(driver.NamedValueChecker)
	if !ok {
		nvc, _ = dc.(driver.NamedValueChecker)
	}
	nvs := make([]driver.NamedValue, 0, len(args))
	for _, a := range args {
		nv := driver.NamedValue{Ordinal: len(nvs) + 1, Value: a}
		err := driver.ErrSkip
		if nvc != nil {
			err = nvc.CheckNamedValue(&nv)
		}
		if err == driver.ErrSkip {
			nv.Value, err = driver.DefaultParameterConverter.ConvertValue(nv.Value)
		}
		switch err {
		case nil:
			nvs = append(nvs, nv)
		case driver.ErrRemoveArgument:
		default:
			si.Close()
			return nil, fmt.Errorf("sql: converting argument $%d type: %w", nv.Ordinal, err)
		}
	}
	if want := si.NumInput(); want != -1 && len(nvs) != want {
		si.Close()
		return nil, fmt.Errorf("sql: expected %d arguments, got %d", want, len(nvs))
	}
	rows, err := sq.QueryContext(ctx, nvs)
	if err != nil {
		si.Close()
		return nil, err
	}
	return &stmtRows{Rows: rows, stmt: si}, nil
}

// errUseDatabaseSQL is queryDriver's answer, before anything ran, for a
// driver whose connection or statement lacks what it needs.
var errUseDatabaseSQL = errors.New("the driver's statement needs database/sql")

// stmtRows closes its statement after its rows, once: later Closes return
// nil.
type stmtRows struct {
	driver.Rows
	stmt   driver.Stmt
	closed bool
}

func (r *stmtRows) Close() error {
	if r.closed {
		return nil
	}
	r.closed = true
	return errors.Join(r.Rows.Close(), r.stmt.Close())
}

// chunk finishes a chunk read into b.
func (r *Reader) chunk(b *arrowscan.Batch, res arrowscan.ReadResult, limit int) (Chunk, error) {
	var err error
	ch := Chunk{Rows: res.Rows, Exhausted: !res.Stopped && res.Rows < limit}
	if res.Rows == 0 {
		return ch, nil
	}
	ch.Last = make([]any, len(res.Last))
	native := func(i int) error {
		if ch.Last[i], err = r.scanner.Native(i, res.Last[i]); err != nil {
			return fmt.Errorf("read %s: %w", r.cfg.Table.QualifiedName(), err)
		}
		return nil
	}
	if r.last == nil {
		for i := range res.Last {
			if err := native(i); err != nil {
				return Chunk{}, err
			}
		}
	}
	for _, i := range r.last {
		if err := native(i); err != nil {
			return Chunk{}, err
		}
	}
	ch.Batch = b.NewRecordBatch()
	return ch, nil
}

// QueryRow runs a one-row query under the query timeout and scans it into
// dest.
func (r *Reader) QueryRow(ctx context.Context, query string, args []any, dest ...any) error {
	qctx, cancel := context.WithTimeout(ctx, r.cfg.QueryTimeout)
	defer cancel()
	return source.Redact(r.cfg.DB.QueryRowContext(qctx, query, args...).Scan(dest...))
}

// Column returns the batch column called name and its index.
func (r *Reader) Column(name string) (schemas.Column, int, error) {
	for i, c := range r.cfg.Table.Columns {
		if strings.EqualFold(c.Name, name) {
			return c, i, nil
		}
	}
	return schemas.Column{}, -1, fmt.Errorf("table %s has no column %s", r.cfg.Table.QualifiedName(), name)
}

// Native converts a raw driver value of batch column i to its native value
// (arrowscan.Scanner.Native).
func (r *Reader) Native(i int, raw any) (any, error) {
	return r.scanner.Native(i, raw)
}
