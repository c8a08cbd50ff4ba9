package synth

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/ehrsync/ehrsync/schemas"
)

// Writer applies the generator's batches to a source database.
//
// Apply writes one batch in one transaction: its ops in order, and the
// batch's Progress into the synth_state table, so that a crash leaves the
// source either before or after the whole batch. State reads the progress
// back (ok false when the source has none). A Writer is used by one
// goroutine at a time.
type Writer interface {
	Apply(ctx context.Context, b *Batch) error
	State(ctx context.Context) (st State, ok bool, err error)
}

// State is a simulation's progress as stored in the source: the options it
// runs with, and the next batch to apply, batch Batch of day Day.
type State struct {
	Options Options `json:"options"`
	Day     int     `json:"day"`
	Batch   int     `json:"batch"`
}

// Batch is one source transaction of the simulation.
type Batch struct {
	Day int // simulated day (0 = Options.Start)
	Seq int // position within the day
	// Kind says what the batch is: master, registration, charges, submit,
	// era, delete, reimport, posting, rework or patient.
	Kind     string
	Practice string // "" for master data
	At       time.Time
	Ops      []Op
	// Progress is the State to record with the batch.
	Progress State
}

// Op is a set of row changes to one table, all of one kind.
type Op struct {
	Kind  schemas.Op
	Table *schemas.Table // the catalog table (SQL Server dialect)
	// Columns: for an insert, the columns of each row (the catalog's, less
	// the rowversion column); for an update, the columns set. Nil for a
	// delete.
	Columns []string
	// Rows: for an insert, full rows; for an update, the new values of
	// Columns followed by the Table.Key values; for a delete, the Table.Key
	// values.
	Rows [][]any
}

// Counts are rows changed in one table.
type Counts struct {
	Inserts, Updates, Deletes int64
}

// Total is the number of rows changed.
func (c Counts) Total() int64 { return c.Inserts + c.Updates + c.Deletes }

// Stats count what the generator wrote.
type Stats struct {
	Batches int               // source transactions
	Tables  map[string]Counts // by unqualified table name
}

// Add adds o to s.
func (s *Stats) Add(o Stats) {
	s.Batches += o.Batches
	for name, c := range o.Tables {
		s.add(name, c)
	}
}

func (s *Stats) add(name string, c Counts) {
	if s.Tables == nil {
		s.Tables = map[string]Counts{}
	}
	t := s.Tables[name]
	t.Inserts += c.Inserts
	t.Updates += c.Updates
	t.Deletes += c.Deletes
	s.Tables[name] = t
}

// count adds b's rows to s.
func (s *Stats) count(b *Batch) {
	s.Batches++
	for _, op := range b.Ops {
		var c Counts
		n := int64(len(op.Rows))
		switch op.Kind {
		case schemas.OpInsert:
			c.Inserts = n
		case schemas.OpUpdate:
			c.Updates = n
		case schemas.OpDelete:
			c.Deletes = n
		}
		s.add(op.Table.Name, c)
	}
}

// Total sums every table.
func (s Stats) Total() Counts {
	var t Counts
	for _, c := range s.Tables {
		t.Inserts += c.Inserts
		t.Updates += c.Updates
		t.Deletes += c.Deletes
	}
	return t
}

// String renders the counts one table a line, sorted by name.
func (s Stats) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d transactions\n", s.Batches)
	for _, name := range slices.Sorted(maps.Keys(s.Tables)) {
		c := s.Tables[name]
		fmt.Fprintf(&b, "%-18s %9d inserts %9d updates %7d deletes\n", name, c.Inserts, c.Updates, c.Deletes)
	}
	t := s.Total()
	fmt.Fprintf(&b, "%-18s %9d inserts %9d updates %7d deletes\n", "total", t.Inserts, t.Updates, t.Deletes)
	return b.String()
}

// decodeState parses the synth_state row's JSON, as both writers store it.
func decodeState(text string) (State, bool, error) {
	var st State
	if err := json.Unmarshal([]byte(text), &st); err != nil {
		return State{}, false, fmt.Errorf("decode %s: %w", StateTable, err)
	}
	return st, true, nil
}
