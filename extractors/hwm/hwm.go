package hwm

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/internal/reader"
	"github.com/ehrsync/ehrsync/extractors/snapshot"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Defaults for Options.
const (
	DefaultChunkRows    = reader.DefaultChunkRows
	DefaultChunkBytes   = reader.DefaultChunkBytes
	DefaultQueryTimeout = reader.DefaultQueryTimeout
	// DefaultLookBack is the look-back of timestamp cursors.
	DefaultLookBack = 10 * time.Minute
)

// Options configure an Extractor. The zero Options use the table's
// row-version column with the defaults above.
type Options struct {
	// Bounds bound each chunk (one query), the first run's snapshot
	// chunks too.
	extractors.Bounds
	// Cursor names the cursor column: "" for the table's RowVersion, or a
	// date-time column such as modify_timestamp.
	Cursor string
	// LookBack is how far before the saved cursor each Open of a timestamp
	// cursor starts reading again; 0: DefaultLookBack. Ignored for row
	// versions, whose bound makes it unnecessary.
	LookBack time.Duration
}

// CursorKind says how a cursor is bounded and paged (see the package doc).
type CursorKind int

// The cursor kinds.
const (
	RowVersion CursorKind = iota + 1 // SQL Server rowversion, bounded by MIN_ACTIVE_ROWVERSION()
	XIDVersion                       // PostgreSQL transaction-id row version, bounded by the snapshot xmin
	Timestamp                        // date-time column with look-back
)

func (k CursorKind) String() string {
	switch k {
	case RowVersion:
		return "rowversion"
	case XIDVersion:
		return "xid row version"
	case Timestamp:
		return "timestamp"
	}
	return "unknown"
}

// Extractor reads one table by high-water mark. It implements
// extractors.Extractor; it is safe for one run at a time.
type Extractor struct {
	r        *reader.Reader
	snap     *snapshot.Extractor
	table    *schemas.Table
	cursor   schemas.Column
	kind     CursorKind
	lookBack time.Duration
	keyCols  []schemas.Column
	keyIdx   []int
	curIdx   int
}

// New returns a high-water-mark extractor of table t on the source db, whose
// dialect is source. t is the table as batches carry it (apply a column
// allow-list first with (*schemas.Table).Project, which keeps the key, the
// row version and the modified-at column). db must be a go-mssqldb pool for
// SQL Server (without "guid conversion") or a pgx stdlib pool for
// PostgreSQL.
func New(db *sql.DB, source schemas.Dialect, t *schemas.Table, opts Options) (*Extractor, error) {
	if t == nil {
		return nil, errors.New("hwm: no table")
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("hwm: %w", err)
	}
	if opts.LookBack < 0 {
		return nil, fmt.Errorf("hwm %s: look-back must not be negative", t.QualifiedName())
	}
	if opts.LookBack == 0 {
		opts.LookBack = DefaultLookBack
	}
	name := opts.Cursor
	if name == "" {
		name = t.RowVersion
	}
	if name == "" {
		return nil, fmt.Errorf("hwm %s: the table has no row-version column; configure a timestamp cursor", t.QualifiedName())
	}
	col, ok := t.Column(name)
	if !ok {
		return nil, fmt.Errorf("hwm %s: cursor column %s is not among the table's columns", t.QualifiedName(), name)
	}
	kind, err := kindOf(source, t, col)
	if err != nil {
		return nil, fmt.Errorf("hwm %s: %w", t.QualifiedName(), err)
	}
	r, err := reader.New(reader.Config{
		Bounds:  opts.Bounds,
		DB:      db,
		Dialect: source,
		Table:   t,
	})
	if err != nil {
		return nil, fmt.Errorf("hwm %s: %w", t.QualifiedName(), err)
	}
	snap, err := snapshot.New(db, source, t, snapshot.Options{
		Bounds: opts.Bounds,
	})
	if err != nil {
		return nil, fmt.Errorf("hwm: %w", err)
	}
	keyCols, keyIdx, err := r.KeyColumns(t)
	if err != nil {
		return nil, fmt.Errorf("hwm %s: %w", t.QualifiedName(), err)
	}
	_, curIdx, err := r.Column(col.Name)
	if err != nil {
		return nil, fmt.Errorf("hwm %s: %w", t.QualifiedName(), err)
	}
	r.KeepLast(append([]int{curIdx}, keyIdx...)...) // a chunk's position (Run.position)
	return &Extractor{
		r: r, snap: snap, table: t, cursor: col, kind: kind, lookBack: opts.LookBack,
		keyCols: keyCols, keyIdx: keyIdx, curIdx: curIdx,
	}, nil
}

func kindOf(source schemas.Dialect, t *schemas.Table, c schemas.Column) (CursorKind, error) {
	switch c.Type.Name {
	case "rowversion":
		if source == schemas.SQLServer {
			return RowVersion, nil
		}
		return XIDVersion, nil // the synthetic source's bigint row_timestamp
	case "bigint":
		if source == schemas.Postgres && strings.EqualFold(t.RowVersion, c.Name) {
			return XIDVersion, nil
		}
	case "datetime", "datetime2", "smalldatetime", "datetimeoffset",
		"timestamp without time zone", "timestamp with time zone":
		return Timestamp, nil
	}
	return 0, fmt.Errorf("cursor column %s has type %s, want a row version or a date-time", c.Name, c.Type)
}

// Table returns the table as the extractor's batches carry it. Do not
// modify it.
func (e *Extractor) Table() *schemas.Table { return e.table }

// Cursor returns the cursor column's name and kind.
func (e *Extractor) Cursor() (string, CursorKind) { return e.cursor.Name, e.kind }

// SeesDeletes reports false: a high-water mark cannot see deletes
// (PITFALLS.md P11). Plans and `ehrsync check` say so for every HWM table.
func (e *Extractor) SeesDeletes() bool { return false }

// Open starts a run from pos: nil (first run: record the incremental start,
// then snapshot), a watermarks.Snapshot with a Resume on this cursor
// (continue the snapshot), or a watermarks.Cursor on this column (read
// incrementally). Anything else is an error matching ErrPosition.
func (e *Extractor) Open(ctx context.Context, pos watermarks.Position) (extractors.Run, error) {
	name := e.table.QualifiedName()
	run, handled, err := e.snap.FirstRun(ctx, "hwm", pos, func(ctx context.Context) (watermarks.Position, error) { return e.start(ctx) },
		"cursor "+e.cursor.Name, func(r watermarks.Position) bool {
			c, ok := r.(watermarks.Cursor)
			return ok && strings.EqualFold(c.Column, e.cursor.Name)
		})
	if handled {
		return run, err
	}
	switch p := pos.(type) {
	case watermarks.Cursor:
		if !strings.EqualFold(p.Column, e.cursor.Name) {
			return nil, fmt.Errorf("hwm %s: saved cursor is on another column than %s: %w", name, e.cursor.Name, ErrPosition)
		}
		if len(p.Key) != 0 && len(p.Key) != len(e.keyCols) {
			return nil, fmt.Errorf("hwm %s: saved key has %d values for %d key columns: %w", name, len(p.Key), len(e.keyCols), ErrPosition)
		}
		run, err := e.incremental(ctx, p)
		if err != nil {
			return nil, err
		}
		return run, nil
	}
	return nil, fmt.Errorf("hwm %s: cannot start from a %s position: %w", name, pos.Kind(), ErrPosition)
}

// start records where the incremental reads start after a first snapshot,
// before the snapshot reads anything (PITFALLS.md P8): bound-1 for row
// versions, MAX(cursor) for timestamps (NULL for an empty table: read
// everything).
func (e *Extractor) start(ctx context.Context) (watermarks.Cursor, error) {
	if e.kind == Timestamp {
		q, args, err := e.r.Dialect().Max(e.table, e.cursor.Name, e.r.Filter())
		if err != nil {
			return watermarks.Cursor{}, err
		}
		var raw any
		if err := e.r.QueryRow(ctx, q, args, &raw); err != nil {
			return watermarks.Cursor{}, err
		}
		native, err := e.r.Native(e.curIdx, raw)
		if err != nil {
			return watermarks.Cursor{}, err
		}
		v, err := e.r.Value(e.cursor, native)
		if err != nil {
			return watermarks.Cursor{}, err
		}
		return watermarks.Cursor{Column: e.cursor.Name, Value: v}, nil
	}
	bound, err := e.bound(ctx)
	if err != nil {
		return watermarks.Cursor{}, err
	}
	below, err := e.pred(bound)
	if err != nil {
		return watermarks.Cursor{}, err
	}
	return watermarks.Cursor{Column: e.cursor.Name, Value: below}, nil
}

// bound reads the row-version window's exclusive upper bound.
func (e *Extractor) bound(ctx context.Context) (watermarks.Value, error) {
	sqlType := e.cursor.Type.String()
	switch e.kind {
	case RowVersion:
		var b []byte
		if err := e.r.QueryRow(ctx, e.r.Dialect().RowVersionBound(), nil, &b); err != nil {
			return watermarks.Value{}, fmt.Errorf("read MIN_ACTIVE_ROWVERSION: %w", err)
		}
		if len(b) != 8 {
			return watermarks.Value{}, fmt.Errorf("MIN_ACTIVE_ROWVERSION returned %d bytes, want 8", len(b))
		}
		return watermarks.RowVersion([8]byte(b)).WithSQLType(sqlType), nil
	case XIDVersion:
		var x int64
		if err := e.r.QueryRow(ctx, e.r.Dialect().RowVersionBound(), nil, &x); err != nil {
			return watermarks.Value{}, fmt.Errorf("read snapshot xmin: %w", err)
		}
		return watermarks.Int64(x).WithSQLType(sqlType), nil
	}
	return watermarks.Value{}, fmt.Errorf("a %s cursor has no bound", e.kind)
}

// pred returns the row version just below v.
func (e *Extractor) pred(v watermarks.Value) (watermarks.Value, error) {
	if b, ok := v.AsRowVersion(); ok {
		n := binary.BigEndian.Uint64(b[:])
		if n == 0 {
			return watermarks.Value{}, errors.New("row-version bound is zero")
		}
		return watermarks.RowVersion([8]byte(binary.BigEndian.AppendUint64(nil, n-1))).WithSQLType(v.SQLType()), nil
	}
	if n, ok := v.AsInt64(); ok {
		if n <= 0 {
			return watermarks.Value{}, errors.New("row-version bound is not positive")
		}
		return watermarks.Int64(n - 1).WithSQLType(v.SQLType()), nil
	}
	return watermarks.Value{}, fmt.Errorf("row-version bound of type %s", v.Type())
}

// incremental opens the incremental window after p.
func (e *Extractor) incremental(ctx context.Context, p watermarks.Cursor) (*Run, error) {
	name := e.table.QualifiedName()
	run := &Run{e: e, from: p}
	if e.kind == Timestamp {
		if p.Value.IsNull() {
			return run, nil
		}
		low, ok, err := minus(p.Value, e.lookBack)
		if err != nil {
			return nil, fmt.Errorf("hwm %s: look-back: %w: %w", name, err, ErrPosition)
		}
		run.overlap = true
		run.saved = p
		if ok {
			run.low = &low
		}
		return run, nil
	}
	if !p.Value.IsNull() {
		want := watermarks.TypeRowVersion
		if e.kind == XIDVersion {
			want = watermarks.TypeInt
		}
		if p.Value.Type() != want {
			return nil, fmt.Errorf("hwm %s: saved cursor value is a %s, want a %s: %w", name, p.Value.Type(), want, ErrPosition)
		}
	}
	bound, err := e.bound(ctx)
	if err != nil {
		return nil, fmt.Errorf("hwm %s: %w", name, err)
	}
	end, err := e.pred(bound)
	if err != nil {
		return nil, fmt.Errorf("hwm %s: %w", name, err)
	}
	run.bound = &bound
	run.end = watermarks.Cursor{Column: e.cursor.Name, Value: end}
	return run, nil
}

// minus returns the timestamp v moved back by d, or ok=false when that
// falls before the type's range (read from the beginning).
func minus(v watermarks.Value, d time.Duration) (watermarks.Value, bool, error) {
	var (
		out watermarks.Value
		err error
	)
	switch v.Type() {
	case watermarks.TypeDateTime:
		t, _ := v.AsDateTime()
		t = t.Add(-d)
		if t.Year() < 1753 {
			return watermarks.Value{}, false, nil
		}
		out, err = watermarks.DateTime(t)
	case watermarks.TypeDateTime2:
		t, _ := v.AsDateTime2()
		t = t.Add(-d)
		if t.Year() < 1 {
			return watermarks.Value{}, false, nil
		}
		out, err = watermarks.DateTime2(t)
	case watermarks.TypeDateTimeOffset:
		t, _ := v.AsDateTimeOffset()
		t = t.Add(-d)
		if t.UTC().Year() < 1 {
			return watermarks.Value{}, false, nil
		}
		out, err = watermarks.DateTimeOffset(t)
	default:
		return watermarks.Value{}, false, fmt.Errorf("saved cursor value is a %s, not a date-time", v.Type())
	}
	if err != nil {
		return watermarks.Value{}, false, err
	}
	return out.WithSQLType(v.SQLType()), true, nil
}
