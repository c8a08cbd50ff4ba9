package mssqltest

import (
	"context"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehrsync/ehrsync/pkg/mssqlmodel"
	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// ServeRecorded serves m as Serve does (the same server, login and
// source connection), through a Recorder: every
// statement and transaction request the server receives is recorded, as
// the server decoded it, before the model answers it.
func ServeRecorded(t testing.TB, m *mssqlmodel.Model) (*Server, *Recorder) {
	t.Helper()
	rec := NewRecorder(m.Handler())
	return ServeHandler(t, m, rec), rec
}

// Recorder is a tdstest.Handler and tdstest.TxHandler that forwards every
// request to another handler (a model's) and records it first: each
// statement's text and parameters (name, the SQL type the client declared
// and the value as the server decoded it), and each transaction begin (with
// its isolation level), commit and rollback. It is safe for concurrent
// use; events are recorded in the order the server received them.
type Recorder struct {
	next tdstest.Handler
	tx   tdstest.TxHandler // nil when next has no transactions

	mu     sync.Mutex
	events []*Event
	before func(Event)
}

var (
	_ tdstest.Handler   = (*Recorder)(nil)
	_ tdstest.TxHandler = (*Recorder)(nil)
)

// NewRecorder returns a Recorder forwarding to next (and to its
// TxHandler methods, if it has them).
func NewRecorder(next tdstest.Handler) *Recorder {
	tx, _ := next.(tdstest.TxHandler)
	return &Recorder{next: next, tx: tx}
}

// Event is one recorded request: a statement (Tx "") or a transaction
// manager request (Tx "begin", "commit" or "rollback").
type Event struct {
	Tx        string
	Isolation tdstest.Isolation // a begin's isolation level
	SQL       string            // a statement's text (sp_executesql's statement)
	Proc      string            // a procedure other than sp_executesql
	Params    []Param
	// Err is what the handler answered, nil for a result.
	Err error
}

// Param is one recorded parameter.
type Param struct {
	Name string // "@p1"
	// Type is the SQL type the client declared, as schemas.Type prints it:
	// "bigint", "varchar(8000)", "nvarchar(4000)", "uniqueidentifier",
	// "datetime", "varbinary(max)" ...
	Type string
	// Value is the value as the server decoded it, rendered: NULL, a
	// string quoted, a uniqueidentifier in the RFC form SQL Server
	// displays, binary as 0x hex, times in RFC 3339 with nanoseconds.
	Value string
	// Raw is the decoded value (handler.go's Go representation).
	Raw any
}

// Handle implements tdstest.Handler.
func (r *Recorder) Handle(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
	ev := Event{SQL: req.SQL, Proc: req.Proc}
	for i, p := range req.Params {
		name := p.Name
		if name == "" {
			name = fmt.Sprintf("@p%d", i+1)
		}
		ev.Params = append(ev.Params, Param{Name: name, Type: p.Type.String(), Value: Render(p.Type.Name, p.Value), Raw: p.Value})
	}
	rec := r.add(ev)
	r.mu.Lock()
	before := r.before
	r.mu.Unlock()
	if before != nil {
		before(ev)
	}
	res, err := r.next.Handle(ctx, req)
	if err != nil {
		r.mu.Lock()
		rec.Err = err
		r.mu.Unlock()
	}
	return res, err
}

// Begin implements tdstest.TxHandler.
func (r *Recorder) Begin(s *tdstest.Session, iso tdstest.Isolation) error {
	r.add(Event{Tx: "begin", Isolation: iso})
	if r.tx == nil {
		return nil
	}
	return r.tx.Begin(s, iso)
}

// Commit implements tdstest.TxHandler.
func (r *Recorder) Commit(s *tdstest.Session) error {
	r.add(Event{Tx: "commit"})
	if r.tx == nil {
		return nil
	}
	return r.tx.Commit(s)
}

// Rollback implements tdstest.TxHandler.
func (r *Recorder) Rollback(s *tdstest.Session) error {
	r.add(Event{Tx: "rollback"})
	if r.tx == nil {
		return nil
	}
	return r.tx.Rollback(s)
}

func (r *Recorder) add(ev Event) *Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, &ev)
	return &ev
}

// Before sets f to run for each statement after it is recorded and before
// the model answers it (nil: none), on the server's goroutine: a test
// changes the model there as another session would at that moment, such
// as a cleanup job raising a minimum between two statements of a run.
func (r *Recorder) Before(f func(Event)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.before = f
}

// Events returns everything recorded so far, in order.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Event, len(r.events))
	for i, ev := range r.events {
		out[i] = *ev
		out[i].Params = append([]Param(nil), ev.Params...)
	}
	return out
}

// Statements returns the recorded statements (no transaction requests),
// in order.
func (r *Recorder) Statements() []Event {
	var out []Event
	for _, ev := range r.Events() {
		if ev.Tx == "" {
			out = append(out, ev)
		}
	}
	return out
}

// Reset forgets everything recorded so far (such as the ping with which
// the source connection opens).
func (r *Recorder) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// Transcript renders the recorded events for a golden file: each
// statement's text, then each parameter with its declared type and
// value; each transaction request on a line of its own; an error answer
// after its statement.
func (r *Recorder) Transcript() string {
	var b strings.Builder
	n := 0
	for _, ev := range r.Events() {
		switch ev.Tx {
		case "begin":
			fmt.Fprintf(&b, "-- begin transaction, isolation %s\n", isolationName(ev.Isolation))
			continue
		case "":
		default:
			fmt.Fprintf(&b, "-- %s transaction\n", ev.Tx)
			continue
		}
		n++
		fmt.Fprintf(&b, "-- statement %d\n", n)
		if ev.Proc != "" {
			fmt.Fprintf(&b, "EXEC %s\n", ev.Proc)
		} else {
			fmt.Fprintf(&b, "%s\n", ev.SQL)
		}
		for _, p := range ev.Params {
			fmt.Fprintf(&b, "--   %s %s %s\n", p.Name, p.Type, p.Value)
		}
		if ev.Err != nil {
			fmt.Fprintf(&b, "--   => %s\n", errorLine(ev.Err))
		}
	}
	return b.String()
}

// PlainNVarChar returns the names of the statement's nvarchar parameters
// that the statement does not cast (CAST(@pN AS <type>)) everywhere it uses
// them. go-mssqldb sends a Go string as nvarchar, which turns a seek on a
// varchar key into a scan (PITFALLS.md P15); ehrsync casts only where it
// sends a non-ASCII varchar value as nvarchar on purpose (D3).
func (ev Event) PlainNVarChar() []string {
	var out []string
	for _, p := range ev.Params {
		if !strings.HasPrefix(p.Type, "nvarchar") && !strings.HasPrefix(p.Type, "nchar") {
			continue
		}
		name := regexp.QuoteMeta(p.Name)
		uses := regexp.MustCompile(`(?i)`+name+`\b`).FindAllStringIndex(ev.SQL, -1)
		casts := regexp.MustCompile(`(?i)CAST\(\s*`+name+`\s+AS\s+\w`).FindAllStringIndex(ev.SQL, -1)
		if len(uses) == 0 || len(uses) != len(casts) {
			out = append(out, p.Name)
		}
	}
	return out
}

func isolationName(iso tdstest.Isolation) string {
	switch iso {
	case tdstest.IsolationUnchanged:
		return "unchanged"
	case tdstest.IsolationReadUncommitted:
		return "read uncommitted"
	case tdstest.IsolationReadCommitted:
		return "read committed"
	case tdstest.IsolationRepeatableRead:
		return "repeatable read"
	case tdstest.IsolationSerializable:
		return "serializable"
	case tdstest.IsolationSnapshot:
		return "snapshot"
	}
	return fmt.Sprintf("isolation(%d)", iso)
}

// errorLine renders an answer's error: SQL Server's number and class and
// its message's first line.
func errorLine(err error) string {
	msg := err.Error()
	if se, ok := err.(*tdstest.Error); ok {
		msg = fmt.Sprintf("error %d, class %d: %s", se.Number, se.Class, se.Message)
	}
	if i := strings.IndexByte(msg, '\n'); i >= 0 {
		msg = msg[:i]
	}
	return msg
}

// Render renders a value of a parameter or column of SQL Server type
// typeName in handler.go's Go representation: NULL; a uniqueidentifier's
// wire bytes in the RFC form SQL Server displays
// (6F9619FF-8B86-D011-B42D-00C04FC964FF); other binary as 0x hex; times in
// RFC 3339 with nanoseconds; strings quoted.
func Render(typeName string, v any) string {
	switch x := v.(type) {
	case nil:
		return "NULL"
	case []byte:
		if typeName == "uniqueidentifier" && len(x) == 16 {
			return guidString(x)
		}
		return "0x" + strings.ToUpper(hex.EncodeToString(x))
	case time.Time:
		return x.Format(time.RFC3339Nano)
	case string:
		return fmt.Sprintf("%q", x)
	case tdstest.Variant:
		return x.Type.String() + " " + Render(x.Type.Name, x.Value)
	}
	return fmt.Sprintf("%v", v)
}

// guidString is the display form of a uniqueidentifier in wire order: the
// first three groups are little-endian.
func guidString(b []byte) string {
	rfc := []byte{b[3], b[2], b[1], b[0], b[5], b[4], b[7], b[6]}
	rfc = append(rfc, b[8:]...)
	h := strings.ToUpper(hex.EncodeToString(rfc))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

var (
	comparedRE = regexp.MustCompile(`\[((?:[^\]]|\]\])+)\]\s*(?:=|<>|>=|<=|>|<)\s*(?:CAST\(\s*)?(@\w+)\b`)
	inListRE   = regexp.MustCompile(`(?i)\[((?:[^\]]|\]\])+)\]\s+IN\s*\(`)
	paramRE    = regexp.MustCompile(`@\w+`)
)

// Bound returns the statement's parameters by the column each is compared
// with: [col] op @pN, [col] op CAST(@pN AS type) and [col] IN (@pN, ...),
// the column by its name without brackets. A parameter compared with
// several columns is listed under each.
func (ev Event) Bound() map[string][]Param {
	byName := map[string]Param{}
	for _, p := range ev.Params {
		byName[strings.ToLower(p.Name)] = p
	}
	out := map[string][]Param{}
	add := func(col, name string) {
		if p, ok := byName[strings.ToLower(name)]; ok {
			col = strings.ReplaceAll(col, "]]", "]")
			out[col] = append(out[col], p)
		}
	}
	for _, m := range comparedRE.FindAllStringSubmatch(ev.SQL, -1) {
		add(m[1], m[2])
	}
	for _, m := range inListRE.FindAllStringSubmatchIndex(ev.SQL, -1) {
		col := ev.SQL[m[2]:m[3]]
		depth, end := 1, m[1]
		for ; end < len(ev.SQL) && depth > 0; end++ {
			switch ev.SQL[end] {
			case '(':
				depth++
			case ')':
				depth--
			}
		}
		for _, name := range paramRE.FindAllString(ev.SQL[m[1]:end], -1) {
			add(col, name)
		}
	}
	return out
}
