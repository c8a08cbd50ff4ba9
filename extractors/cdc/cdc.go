package cdc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/ehrsync/ehrsync/extractors"
	"github.com/ehrsync/ehrsync/extractors/internal/arrowscan"
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
)

// ErrPosition means Open was given a position this extractor cannot start
// from (another kind, or a snapshot that does not resume on CDC). It is the
// same error as snapshot.ErrPosition.
var ErrPosition = snapshot.ErrPosition

// ErrNotTracked means the table has no capture instance: CDC is not enabled
// on it (or the login cannot see its capture instances).
var ErrNotTracked = errors.New("table is not tracked by CDC")

// Options configure an Extractor; the zero Options read every practice in
// chunks of the defaults.
type Options struct {
	// Bounds bound each chunk (one query), the first run's snapshot
	// chunks too. Practices restricts inserts and updates; deletes pass (a
	// delete of a key the store does not hold is a no-op).
	extractors.Bounds
}

// Extractor reads one table's changes from its CDC change tables. It
// implements extractors.Extractor; it is safe for one run at a time.
type Extractor struct {
	src     Source
	snap    *snapshot.Extractor // the first run's snapshot
	table   *schemas.Table
	scanner *arrowscan.Scanner
	opts    Options
}

// New returns the CDC extractor of table t on the SQL Server database db (a
// go-mssqldb pool without "guid conversion"). t is the table as batches
// carry it (apply a column allow-list first with (*schemas.Table).Project).
func New(db *sql.DB, t *schemas.Table, opts Options) (*Extractor, error) {
	bounds, snap, err := snapshot.ForChanges("cdc", db, schemas.SQLServer, t, opts.Bounds)
	if err != nil {
		return nil, err
	}
	opts.Bounds = bounds
	sc, err := arrowscan.New(schemas.SQLServer, t)
	if err != nil {
		return nil, fmt.Errorf("cdc %s: %w", t.QualifiedName(), err)
	}
	src := &SQLServer{DB: db, QueryTimeout: opts.QueryTimeout}
	return &Extractor{src: src, snap: snap, table: t, scanner: sc, opts: opts}, nil
}

// Table returns the table as the extractor's batches carry it. Do not
// modify it.
func (e *Extractor) Table() *schemas.Table { return e.table }

// SeesDeletes reports true: CDC records deletes.
func (e *Extractor) SeesDeletes() bool { return true }

// Open starts a run from pos: nil (first run: record the window's bound,
// then snapshot, P8), a watermarks.Snapshot resuming on a CDC position
// (continue the snapshot), or a watermarks.CDC (read the change tables).
// It fixes the window's upper bound once, the highest harvested LSN. An
// expired position is an error matching extractors.ErrExpired (P1); a table
// without capture instances one matching ErrNotTracked.
func (e *Extractor) Open(ctx context.Context, pos watermarks.Position) (extractors.Run, error) {
	name := e.table.QualifiedName()
	run, handled, err := e.snap.FirstRun(ctx, "cdc", pos, func(ctx context.Context) (watermarks.Position, error) { return e.start(ctx) },
		"a CDC position", func(r watermarks.Position) bool {
			_, ok := r.(watermarks.CDC)
			return ok
		})
	if handled {
		return run, err
	}
	switch p := pos.(type) {
	case watermarks.CDC:
		return e.incremental(ctx, p)
	}
	return nil, fmt.Errorf("cdc %s: cannot start from a %s position: %w", name, pos.Kind(), ErrPosition)
}

// start records where the incremental reads start after the first
// snapshot, before the snapshot reads anything (P8): the highest harvested
// LSN, or the newest capture instance's start LSN when CDC was enabled on
// the table after the agent's last harvest (everything before the instance
// started is older than the snapshot, which reads after this).
func (e *Extractor) start(ctx context.Context) (watermarks.CDC, error) {
	ins, err := e.instances(ctx)
	if err != nil {
		return watermarks.CDC{}, err
	}
	max, err := e.src.MaxLSN(ctx)
	if err != nil {
		return watermarks.CDC{}, err
	}
	in := ins[len(ins)-1]
	lsn := max
	if in.StartLSN.Compare(lsn) > 0 {
		lsn = in.StartLSN
	}
	if lsn.IsZero() {
		return watermarks.CDC{}, errors.New("the capture agent has harvested nothing yet")
	}
	return watermarks.CDC{LSN: lsn, Instance: in.Name}, nil
}

// instances reads the table's capture instances with a known start LSN.
func (e *Extractor) instances(ctx context.Context) ([]Instance, error) {
	all, err := e.src.Instances(ctx, e.table.Schema, e.table.Name)
	if err != nil {
		return nil, err
	}
	var ins []Instance
	for _, in := range all {
		if !in.StartLSN.IsZero() {
			ins = append(ins, in)
		}
	}
	switch {
	case len(all) == 0:
		// The catalog views hide a table the login has no permission on,
		// and with it its capture instances.
		if err := e.selectDenied(ctx, "the catalog shows no capture instance of a table the login may not read"); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%w: no capture instance of %s", ErrNotTracked, e.table.QualifiedName())
	case len(ins) == 0:
		return nil, fmt.Errorf("%w: capture instance %s has no start LSN yet (has the capture job run?)", ErrNotTracked, all[0].Name)
	}
	return ins, nil
}

// incremental opens the window after p.
func (e *Extractor) incremental(ctx context.Context, p watermarks.CDC) (*Run, error) {
	name := e.table.QualifiedName()
	ins, err := e.instances(ctx)
	if err != nil {
		return nil, fmt.Errorf("cdc %s: %w", name, err)
	}
	// The window's bound, once per run.
	max, err := e.src.MaxLSN(ctx)
	if err != nil {
		return nil, fmt.Errorf("cdc %s: %w", name, err)
	}
	// The newest instance that starts at or before the position (P7).
	cur := -1
	for i, in := range ins {
		if in.StartLSN.Compare(p.LSN) <= 0 {
			cur = i
		}
	}
	if cur < 0 {
		return nil, &extractors.ExpiredError{Table: name, Reason: fmt.Sprintf(
			"saved LSN %s is below the start LSN %s of capture instance %s, the oldest",
			p.LSN, ins[0].StartLSN, ins[0].Name)}
	}
	r := &Run{e: e, ins: ins, cur: -1, pos: p, bound: max}
	if err := r.use(cur); err != nil {
		return nil, fmt.Errorf("cdc %s: %w", name, err)
	}
	if err := r.checkMin(ctx); err != nil {
		return nil, err
	}
	r.checked = true
	return r, nil
}

// selectDenied returns a *PermissionError naming the grant when the source
// can tell that the login lacks SELECT on the table (why says what that
// explains), nil otherwise.
func (e *Extractor) selectDenied(ctx context.Context, why string) error {
	sc, ok := e.src.(SelectChecker)
	if !ok {
		return nil
	}
	name := e.table.QualifiedName()
	granted, err := sc.CanSelect(ctx, e.table)
	if err != nil {
		return fmt.Errorf("cdc %s: %w", name, err)
	}
	if granted {
		return nil
	}
	return &PermissionError{Object: name + " (" + why + ")",
		Grant: "GRANT SELECT ON " + quote(e.table.Schema) + "." + quote(e.table.Name) + " TO <login>"}
}

// readableChecker is the optional ability of a Source to prove that the
// login may read a capture instance's change table (SQLServer's
// CheckReadable).
type readableChecker interface {
	CheckReadable(ctx context.Context, instance string) error
}

// columnsOf maps the table's columns to instance in's captured columns:
// the columns to select, and for each table column its index among them
// (-1: not captured, NULL). Every key column must be captured.
func (e *Extractor) columnsOf(in Instance) ([]string, []int, error) {
	var sel []string
	idx := make([]int, len(e.table.Columns))
	for i, c := range e.table.Columns {
		idx[i] = -1
		for _, name := range in.Columns {
			if strings.EqualFold(name, c.Name) {
				idx[i] = len(sel)
				sel = append(sel, name)
				break
			}
		}
		if idx[i] < 0 && e.table.IsKey(c.Name) {
			return nil, nil, fmt.Errorf("capture instance %s does not capture key column %s", in.Name, c.Name)
		}
	}
	return sel, idx, nil
}

var (
	_ extractors.Extractor = (*Extractor)(nil)
	_ extractors.Run       = (*Run)(nil)
)
