package mssqlmodel

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/ehrsync/ehrsync/pkg/tdstest"
)

// Handler answers tdstest's statements from a Model; it is the model's
// tdstest.Handler and tdstest.TxHandler. Get it from Model.Handler.
//
// Each statement reads the committed state as of its start (READ
// COMMITTED under READ_COMMITTED_SNAPSHOT: readers never block and never
// see uncommitted writes). In a SNAPSHOT transaction every statement reads
// the state as of the transaction's first statement; SNAPSHOT fails with
// error 3952 unless the database allows snapshot isolation.
type Handler struct {
	m  *Model
	mu sync.Mutex
	tx map[*tdstest.Session]*sessionTx
}

type sessionTx struct {
	iso  tdstest.Isolation
	snap *dbState
}

var (
	_ tdstest.Handler   = (*Handler)(nil)
	_ tdstest.TxHandler = (*Handler)(nil)
	_ tdstest.Handler   = (*Model)(nil)
)

// Handler returns the model's handler for tdstest.
func (m *Model) Handler() *Handler {
	m.handlerOnce.Do(func() { m.handler = &Handler{m: m, tx: map[*tdstest.Session]*sessionTx{}} })
	return m.handler
}

// Handle answers a statement (Model is a tdstest.Handler too; use Handler
// for transaction tracking).
func (m *Model) Handle(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
	return m.Handler().Handle(ctx, req)
}

// Statement is one statement the model was asked to answer.
type Statement struct {
	Shape  string   // the inventory shape it matched; "" for none
	SQL    string   // its text
	Params []string // "@p1 bigint", in order
	User   string
	Err    error // what the handler returned
}

// Statements returns the statements answered so far, in order.
func (m *Model) Statements() []Statement {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	return slices.Clone(m.log)
}

// ResetStatements forgets the statements answered so far.
func (m *Model) ResetStatements() {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	m.log = nil
}

func (m *Model) record(st Statement) {
	m.logMu.Lock()
	defer m.logMu.Unlock()
	m.log = append(m.log, st)
}

// Begin implements tdstest.TxHandler.
func (h *Handler) Begin(s *tdstest.Session, iso tdstest.Isolation) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if iso == tdstest.IsolationUnchanged {
		iso = s.Isolation
	}
	h.tx[s] = &sessionTx{iso: iso}
	return nil
}

// Commit implements tdstest.TxHandler. Sessions only read, so there is
// nothing to apply.
func (h *Handler) Commit(s *tdstest.Session) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.tx, s)
	return nil
}

// Rollback implements tdstest.TxHandler.
func (h *Handler) Rollback(s *tdstest.Session) error { return h.Commit(s) }

// Handle implements tdstest.Handler. A statement the model does not
// recognise, or a construct it does not model, is a Go error naming it;
// SQL Server's own errors are *tdstest.Error with SQL Server's numbers.
func (h *Handler) Handle(ctx context.Context, req *tdstest.Request) ([]tdstest.Result, error) {
	return h.handle(ctx, req, true)
}

// handle answers a statement; the tests evaluate expressions outside the
// inventory with inventory false.
func (h *Handler) handle(ctx context.Context, req *tdstest.Request, inventory bool) (_ []tdstest.Result, err error) {
	m := h.m
	st := Statement{SQL: req.SQL}
	if req.Session != nil {
		st.User = req.Session.User
	}
	for i, p := range req.Params {
		st.Params = append(st.Params, paramName(p, i)+" "+p.Type.String())
	}
	defer func() {
		st.Err = err
		m.record(st)
	}()
	if req.Proc != "" {
		return nil, fmt.Errorf("mssqlmodel: statement not recognised: procedure %s is not modelled", req.Proc)
	}
	b, perr := Parse(req.SQL)
	if perr != nil {
		return nil, fmt.Errorf("mssqlmodel: statement not recognised: outside the T-SQL subset the model parses (%v): %s", perr, statementText(req.SQL))
	}
	shape, f := matchShape(b)
	if shape == nil && !inventory {
		shape = &Shape{Name: "(test: outside the inventory)"}
	}
	if shape == nil {
		return nil, fmt.Errorf("mssqlmodel: statement not recognised: no shape in the inventory matches %q: %s", f.describe(), statementText(req.SQL))
	}
	st.Shape = shape.Name
	m.mu.RLock()
	defer m.mu.RUnlock()
	db, err := h.state(req.Session)
	if err != nil {
		return nil, err
	}
	x := newExec(ctx, m, db, req.Session)
	for i, p := range req.Params {
		v, err := paramValue(p)
		if err != nil {
			return nil, fmt.Errorf("mssqlmodel: %s: parameter %s: %w", shape.Name, paramName(p, i), err)
		}
		x.vars[strings.ToLower(paramName(p, i))] = &variable{typ: p.Type, val: v}
	}
	res, err := x.runBatch(b)
	if err != nil {
		var se *tdstest.Error
		if errors.As(err, &se) {
			return nil, se
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("mssqlmodel: shape %q: %w: %s", shape.Name, err, statementText(req.SQL))
	}
	return res, nil
}

// state returns what the session's statement reads: the committed state,
// or its SNAPSHOT transaction's. Called with m.mu read-locked.
func (h *Handler) state(s *tdstest.Session) (*dbState, error) {
	m := h.m
	if s == nil {
		return m.db, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	stx := h.tx[s]
	if !s.InTransaction {
		if stx != nil && stx.snap != nil {
			delete(h.tx, s) // the server ended the transaction without telling us
		}
		return m.db, nil
	}
	if stx == nil {
		stx = &sessionTx{iso: s.Isolation}
		h.tx[s] = stx
	}
	iso := stx.iso
	if iso == tdstest.IsolationUnchanged {
		iso = s.Isolation
	}
	if iso != tdstest.IsolationSnapshot {
		return m.db, nil
	}
	if !m.db.snapshot {
		return nil, sqlError(3952, 16, "Snapshot isolation transaction failed accessing database '%s' because snapshot isolation is not allowed in this database. Use ALTER DATABASE to allow snapshot isolation.", m.opts.Database)
	}
	if stx.snap == nil {
		stx.snap = m.db.clone()
	}
	return stx.snap, nil
}

func paramName(p tdstest.Param, i int) string {
	if p.Name != "" {
		return p.Name
	}
	return fmt.Sprintf("@p%d", i+1)
}

// paramValue normalises a parameter's decoded value (handler.go's Go
// representation) to its declared type: a date-time to its precision (a
// datetime to its tick).
func paramValue(p tdstest.Param) (any, error) {
	v := p.Value
	if v == nil {
		return nil, nil
	}
	switch familyOf(p.Type) {
	case famDate, famTime, famDateTime, famDTO:
		return convert(v, p.Type, p.Type, false)
	case famOther:
		return nil, notModelled("parameter type %s", p.Type)
	}
	return v, nil
}
