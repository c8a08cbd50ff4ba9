package tdstest

import (
	"strings"
	"sync"
	"time"
)

type faultKind int

const (
	faultDelayFirstRow faultKind = iota
	faultStallAfter
	faultDrop
	faultDropAfter
	faultGarbage
	faultHTTP
)

// Fault is a misbehaviour the server applies once: a statement fault to
// the next statement (SQL batch or RPC) it matches, a connection fault
// (Garbage, HTTP) to the next new connection. Build one with DelayFirstRow,
// StallAfter, DropConnection, DropAfter, Garbage or HTTP, narrow a
// statement fault with On or When, and give it to Server.Inject.
type Fault struct {
	kind    faultKind
	d       time.Duration
	n       int64
	match   func(*Request) bool
	reached chan struct{}
	release chan struct{}
	once    sync.Once
	relOnce sync.Once
}

func newFault(k faultKind) *Fault {
	return &Fault{kind: k, reached: make(chan struct{}), release: make(chan struct{})}
}

// DelayFirstRow makes the server wait d after a result's COLMETADATA
// before its first row; the metadata is not sent before the wait ends, so
// the client sees nothing but the wait. An attention (cancel) ends the
// wait.
func DelayFirstRow(d time.Duration) *Fault {
	f := newFault(faultDelayFirstRow)
	f.d = d
	return f
}

// StallAfter makes the server send rows rows (counted across the
// statement's results; fewer if the statement has fewer), flush them to
// the client, and stall until Release, an attention (cancel) from the
// client, or the server's Close.
func StallAfter(rows int) *Fault {
	f := newFault(faultStallAfter)
	f.n = int64(rows)
	return f
}

// DropConnection makes the server close the connection on receiving the
// statement, before calling the Handler.
func DropConnection() *Fault { return newFault(faultDrop) }

// DropAfter makes the server close the connection after sending (and
// flushing) rows rows of the statement's results: mid-result.
func DropAfter(rows int) *Fault {
	f := newFault(faultDropAfter)
	f.n = int64(rows)
	return f
}

// Garbage makes the server answer the next new connection's first packet
// (a PRELOGIN, or a TLS ClientHello) with random bytes and hang up.
func Garbage() *Fault { return newFault(faultGarbage) }

// HTTP makes the server answer the next new connection's first packet
// with an HTTP 400 response and hang up, as a web server on the port
// would.
func HTTP() *Fault { return newFault(faultHTTP) }

// On narrows a statement fault to statements whose SQL text (or procedure
// name) contains sub. It returns f.
func (f *Fault) On(sub string) *Fault {
	return f.When(func(r *Request) bool { return strings.Contains(r.SQL, sub) || strings.Contains(r.Proc, sub) })
}

// When narrows a statement fault to the statements match accepts. It
// returns f.
func (f *Fault) When(match func(*Request) bool) *Fault {
	f.match = match
	return f
}

// Reached is closed when the fault takes effect: the delay or stall
// begins, the connection is dropped, the garbage is sent.
func (f *Fault) Reached() <-chan struct{} { return f.reached }

// Release ends a StallAfter's stall (and any later one of the same fault).
func (f *Fault) Release() { f.relOnce.Do(func() { close(f.release) }) }

func (f *Fault) hit() { f.once.Do(func() { close(f.reached) }) }

func (f *Fault) connLevel() bool { return f.kind == faultGarbage || f.kind == faultHTTP }

// stmtFaults are the faults that apply to one statement.
type stmtFaults struct {
	delay, stall, drop, dropAfter *Fault
}
