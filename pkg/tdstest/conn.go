package tdstest

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// conn is one client connection.
type conn struct {
	s       *Server
	raw     net.Conn
	rd      *packetReader
	pw      *packetWriter
	tok     []byte // token scratch
	row     []byte // row scratch
	sess    *Session
	loginDB string

	ctx    context.Context // ends with the connection
	cancel context.CancelFunc
	msgs   chan message
	// attn counts attentions received and not yet acknowledged; attnCh
	// wakes a wait when one arrives.
	attn   atomic.Int32
	attnCh chan struct{}

	mu        sync.Mutex
	reqCancel context.CancelFunc
	tranDesc  uint64
}

type message struct {
	typ, status byte
	data        []byte
}

// errDrop ends a connection on purpose (a fault, a fatal error).
var errDrop = errors.New("tdstest: connection dropped")

func (s *Server) serve(raw net.Conn) {
	c := &conn{
		s:      s,
		raw:    raw,
		msgs:   make(chan message, 1),
		attnCh: make(chan struct{}, 1),
		sess: &Session{
			ID:        int(s.spid.Add(1)),
			Isolation: IsolationReadCommitted,
			Values:    map[string]any{},
		},
	}
	c.ctx, c.cancel = context.WithCancel(s.ctx)
	defer c.cancel()
	defer func() {
		// A Handler's panic (or this package's) fails the test, not the
		// test binary; the connection is closed.
		if r := recover(); r != nil {
			err := fmt.Errorf("tdstest: panic serving a connection: %v\n%s", r, debug.Stack())
			s.mu.Lock()
			s.errs = append(s.errs, err)
			s.mu.Unlock()
			s.t.Errorf("%v", err)
		}
	}()
	if f := s.takeConnFault(); f != nil {
		c.serveFault(f)
		return
	}
	if !c.handshake(c.ctx) {
		return
	}
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		c.readLoop()
	}()
	defer func() {
		raw.Close()
		<-readerDone
	}()
	c.loop()
}

// readLoop reads the client's messages after login. An attention is
// counted and cancels the running statement's ctx; other messages go to
// the connection's loop.
func (c *conn) readLoop() {
	defer close(c.msgs)
	defer c.cancel()
	for {
		typ, status, data, err := c.rd.readMessage()
		if err != nil {
			return
		}
		if typ == pktAttention {
			c.attn.Add(1)
			c.mu.Lock()
			if c.reqCancel != nil {
				c.reqCancel()
			}
			c.mu.Unlock()
			select {
			case c.attnCh <- struct{}{}:
			default:
			}
			continue
		}
		select {
		case c.msgs <- message{typ, status, data}:
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *conn) loop() {
	for {
		var m message
		var ok bool
		select {
		case m, ok = <-c.msgs:
		case <-c.attnCh:
			// A request read before the attention is answered first.
			select {
			case m, ok = <-c.msgs:
			default:
				if c.takeAttn() {
					if c.sendAttnAck() != nil {
						return
					}
				}
				continue
			}
		case <-c.ctx.Done():
			return
		}
		if !ok {
			return
		}
		if err := c.handle(m); err != nil {
			return
		}
	}
}

// takeAttn consumes a pending attention.
func (c *conn) takeAttn() bool {
	for {
		n := c.attn.Load()
		if n <= 0 {
			return false
		}
		if c.attn.CompareAndSwap(n, n-1) {
			return true
		}
	}
}

// sendAttnAck answers an attention that arrived after its request's answer
// ended: a message of its own with DONE_ATTN.
func (c *conn) sendAttnAck() error {
	c.pw.begin(pktReply)
	c.tok = appendDone(c.tok[:0], tokDone, doneAttn, cmdNone, 0)
	c.pw.Write(c.tok)
	return c.pw.end()
}

// handle answers one message. An error closes the connection.
func (c *conn) handle(m message) error {
	c.pw.begin(pktReply)
	c.tok = c.tok[:0]
	if m.status&(statusResetConn|statusResetConnNoTran) != 0 {
		c.reset(m.status&statusResetConnNoTran != 0)
	}
	switch m.typ {
	case pktSQLBatch:
		r := &msgReader{b: m.data}
		if _, err := readAllHeaders(r); err != nil {
			return err
		}
		if r.left()%2 != 0 {
			return fmt.Errorf("tdstest: odd SQL batch length")
		}
		req := &Request{SQL: ucs2String(r.bytes(r.left())), Session: c.sess}
		return c.execute(req, false)
	case pktRPC:
		proc, params, err := parseRPC(m.data, c.s.coll)
		if err != nil {
			return c.protocolError(err)
		}
		req := &Request{Proc: proc, Params: params, Session: c.sess}
		if strings.EqualFold(proc, "sp_executesql") {
			if e := c.executeSQLArgs(req); e != nil {
				return c.sendErrors(e, true)
			}
		}
		return c.execute(req, true)
	case pktTransMgr:
		return c.transaction(m.data)
	default:
		return fmt.Errorf("tdstest: unexpected packet type %#x", m.typ)
	}
}

// protocolError answers a request the server cannot read with error 50000
// and records it: a client or server bug the test should see.
func (c *conn) protocolError(err error) error {
	c.s.addError(err)
	return c.sendErrors(&Error{Number: 50000, State: 1, Class: 16, Message: err.Error()}, false)
}

// executeSQLArgs moves sp_executesql's statement and declarations out of
// the parameters and checks the declarations.
func (c *conn) executeSQLArgs(req *Request) *Error {
	if len(req.Params) == 0 {
		return &Error{Number: 201, State: 4, Class: 16, Message: "Procedure or function 'sp_executesql' expects parameter '@statement', which was not supplied."}
	}
	isN := func(p Param) bool {
		switch p.Type.Name {
		case "nvarchar", "nchar", "ntext":
			return true
		}
		return false
	}
	stmt, ok := req.Params[0].Value.(string)
	if !ok || !isN(req.Params[0]) {
		return &Error{Number: 214, State: 2, Class: 16, Message: "Procedure expects parameter '@statement' of type 'ntext/nchar/nvarchar'."}
	}
	req.SQL, req.Proc = stmt, ""
	if len(req.Params) == 1 {
		req.Params = nil
		return nil
	}
	declText, ok := req.Params[1].Value.(string)
	if (!ok && req.Params[1].Value != nil) || !isN(req.Params[1]) {
		return &Error{Number: 214, State: 3, Class: 16, Message: "Procedure expects parameter '@params' of type 'ntext/nchar/nvarchar'."}
	}
	req.Params = req.Params[2:]
	decls, err := parseDecls(declText)
	if err != nil {
		return &Error{Number: 102, State: 1, Class: 15, Message: "Incorrect syntax in the parameter declarations: " + err.Error()}
	}
	return checkDecls(decls, req.Params)
}

// reset is sp_reset_connection, asked for by a request's packet status: a
// pooled connection's state goes back to that of a new login.
func (c *conn) reset(keepTran bool) {
	sess := c.sess
	if sess.InTransaction && !keepTran {
		if tx, ok := c.s.cfg.Handler.(TxHandler); ok {
			if err := tx.Rollback(sess); err != nil {
				c.s.addError(fmt.Errorf("tdstest: rollback at connection reset: %w", err))
			}
		}
		sess.InTransaction = false
		c.tok = appendEnvBytes(c.tok, envRollback, nil, c.descBytes())
		c.tranDesc = 0
	}
	if sess.Database != c.loginDB {
		c.tok = appendEnvString(c.tok, envDatabase, c.loginDB, sess.Database)
		sess.Database = c.loginDB
	}
	sess.Isolation = IsolationReadCommitted
	c.tok = appendEnvBytes(c.tok, envResetAck, nil, nil)
}

func (c *conn) descBytes() []byte {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], c.tranDesc)
	return b[:]
}

// sendErrors ends the current answer with an error.
func (c *conn) sendErrors(e *Error, rpc bool) error {
	c.tok = appendMessage(c.tok, tokError, e, c.s.cfg.ServerName)
	tok := byte(tokDone)
	if rpc {
		tok = tokDoneProc
	}
	c.tok = appendDone(c.tok, tok, doneError, cmdNone, 0)
	c.pw.Write(c.tok)
	return c.pw.end()
}

// asError turns a Handler's error into what is sent, recording the ones
// that are not *Error.
func (c *conn) asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	c.s.addError(err)
	return &Error{Number: 50000, State: 1, Class: 16, Message: err.Error()}
}

// answer is the state of one statement's answer.
type answer struct {
	c       *conn
	rpc     bool
	ctx     context.Context
	faults  stmtFaults
	rows    int64 // rows sent across the results
	delayed bool
	stalled bool
	before  Session // the session before the Handler ran
}

// errAttn ends an answer that an attention cancelled (DONE_ATTN written).
var errAttn = errors.New("tdstest: cancelled by attention")

// execute runs a batch or an RPC through the Handler and sends its
// answer.
func (c *conn) execute(req *Request, rpc bool) error {
	a := &answer{c: c, rpc: rpc, before: *c.sess}
	a.faults = c.s.takeStmtFaults(req)
	if f := a.faults.drop; f != nil {
		f.hit()
		return errDrop
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	c.mu.Lock()
	c.reqCancel = cancel
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.reqCancel = nil
		c.mu.Unlock()
	}()
	if c.attn.Load() > 0 {
		cancel()
	}
	a.ctx = ctx
	if err := a.run(req); err != errAttn {
		return err
	}
	return nil
}

// run calls the Handler and sends its answer.
func (a *answer) run(req *Request) error {
	c := a.c
	var results []Result
	var err error
	if h := c.s.cfg.Handler; h != nil {
		results, err = h.Handle(a.ctx, req)
	}
	if c.takeAttn() {
		return a.attnAck()
	}
	if c.ctx.Err() != nil {
		return errClosed
	}
	if err != nil && len(results) == 0 {
		return a.fail(c.asError(err))
	}
	for i := range results {
		last := i == len(results)-1 && err == nil
		if e := a.result(&results[i], last); e != nil {
			var he *handlerErr
			if errors.As(e, &he) {
				if c.ctx.Err() != nil {
					return errClosed // the Stream saw the connection end
				}
				return a.fail(c.asError(he.err))
			}
			return e
		}
	}
	if err != nil {
		return a.fail(c.asError(err))
	}
	if len(results) == 0 {
		return a.end(doneFinal, cmdNone, 0, false)
	}
	return nil
}

// handlerErr is an error of the Handler's making met while sending a
// result: a Stream error or a value that does not fit its column.
type handlerErr struct{ err error }

func (e *handlerErr) Error() string { return e.err.Error() }

// attnAck ends the answer with DONE_ATTN.
func (a *answer) attnAck() error {
	c := a.c
	c.tok = appendDone(c.tok, tokDone, doneAttn, cmdNone, 0)
	c.pw.Write(c.tok)
	if err := c.pw.end(); err != nil {
		return err
	}
	return nil
}

// flushTok writes the token scratch to the packets.
func (a *answer) flushTok() error {
	c := a.c
	_, err := c.pw.Write(c.tok)
	c.tok = c.tok[:0]
	return err
}

// sessionTokens appends the ENVCHANGEs of what the Handler changed in the
// session: the database, a transaction begun or ended by a statement.
func (a *answer) sessionTokens() {
	c, sess := a.c, a.c.sess
	if sess.Database != a.before.Database {
		c.tok = appendEnvString(c.tok, envDatabase, sess.Database, a.before.Database)
		c.tok = appendMessage(c.tok, tokInfo, &Error{Number: 5701, State: 1, Message: fmt.Sprintf("Changed database context to '%s'.", sess.Database)}, c.s.cfg.ServerName)
		a.before.Database = sess.Database
	}
	if sess.InTransaction != a.before.InTransaction {
		if sess.InTransaction {
			c.tranDesc = c.s.tranID.Add(1)
			c.tok = appendEnvBytes(c.tok, envBeginTran, c.descBytes(), nil)
		} else {
			c.tok = appendEnvBytes(c.tok, envRollback, nil, c.descBytes())
			c.tranDesc = 0
		}
		a.before.InTransaction = sess.InTransaction
	}
}

// end writes the answer's last DONE (DONEPROC with RETURNSTATUS for an
// RPC), preceded by the session's ENVCHANGEs.
func (a *answer) end(status, cmd uint16, count uint64, hasCount bool) error {
	c := a.c
	if f := a.faults.delay; f != nil && !a.delayed {
		// A statement without rows: the delay comes before its end.
		a.delayed = true
		f.hit()
		timer := time.NewTimer(f.d)
		err := a.wait(timer.C, nil)
		timer.Stop()
		if err != nil {
			return err
		}
	}
	if err := a.beforeRow(true); err != nil {
		return err
	}
	a.sessionTokens()
	if a.rpc {
		if hasCount {
			c.tok = appendDone(c.tok, tokDoneInProc, status|doneMore, cmd, count)
		}
		c.tok = append(c.tok, tokReturnStatus)
		c.tok = appendU32(c.tok, 0)
		c.tok = appendDone(c.tok, tokDoneProc, doneFinal, cmdExecute, 0)
	} else {
		c.tok = appendDone(c.tok, tokDone, status, cmd, count)
	}
	c.pw.Write(c.tok)
	c.tok = c.tok[:0]
	return c.pw.end()
}

// fail ends the answer with an error.
func (a *answer) fail(e *Error) error {
	c := a.c
	if c.takeAttn() {
		return a.attnAck()
	}
	c.tok = appendMessage(c.tok, tokError, e, c.s.cfg.ServerName)
	a.sessionTokens()
	if a.rpc {
		c.tok = appendDone(c.tok, tokDoneProc, doneError, cmdExecute, 0)
	} else {
		c.tok = appendDone(c.tok, tokDone, doneError, cmdNone, 0)
	}
	c.pw.Write(c.tok)
	c.tok = c.tok[:0]
	if err := c.pw.end(); err != nil {
		return err
	}
	if e.Class >= 20 {
		return errDrop // a fatal error ends the connection
	}
	return nil
}

// result sends one result. last says it ends the answer.
func (a *answer) result(res *Result, last bool) error {
	c := a.c
	for i := range res.Info {
		c.tok = appendMessage(c.tok, tokInfo, &res.Info[i], c.s.cfg.ServerName)
	}
	if len(res.Columns) == 0 {
		if res.Stream != nil || len(res.Rows) > 0 {
			return &handlerErr{errors.New("tdstest: a result with rows but no columns")}
		}
		return a.done(doneCount, cmdInsert, uint64(res.RowsAffected), last)
	}
	re, err := newRowEncoder(res.Columns, c.s.coll)
	if err != nil {
		return &handlerErr{err}
	}
	c.tok = re.appendColMetadata(c.tok)
	if err := a.flushTok(); err != nil {
		return err
	}
	if f := a.faults.delay; f != nil && !a.delayed {
		a.delayed = true
		f.hit()
		timer := time.NewTimer(f.d)
		err := a.wait(timer.C, nil)
		timer.Stop()
		if err != nil {
			return err
		}
	}
	var count int64
	send := func(row []any) error {
		if err := a.beforeRow(false); err != nil {
			return err
		}
		var err error
		c.row, err = re.appendRow(c.row[:0], row)
		if err != nil {
			return &handlerErr{err}
		}
		if _, err := c.pw.Write(c.row); err != nil {
			return err
		}
		count++
		a.rows++
		return nil
	}
	for _, row := range res.Rows {
		if err := send(row); err != nil {
			return err
		}
	}
	if res.Stream != nil {
		row := make([]any, len(res.Columns))
		for {
			clear(row)
			more, err := res.Stream(a.ctx, row)
			if c.attn.Load() > 0 {
				c.takeAttn()
				return a.ackNow()
			}
			if err != nil {
				return &handlerErr{err}
			}
			if !more {
				break
			}
			if err := send(row); err != nil {
				return err
			}
		}
	}
	return a.done(doneCount, cmdSelect, uint64(count), last)
}

// done writes the DONE (DONEINPROC in an RPC) of a result; the last one
// ends the answer.
func (a *answer) done(status, cmd uint16, count uint64, last bool) error {
	c := a.c
	if last {
		return a.end(status, cmd, count, true)
	}
	tok := byte(tokDone)
	if a.rpc {
		tok = tokDoneInProc
	}
	c.tok = appendDone(c.tok, tok, status|doneMore, cmd, count)
	return a.flushTok()
}

// ackNow ends the answer at an attention.
func (a *answer) ackNow() error {
	if err := a.attnAck(); err != nil {
		return err
	}
	return errAttn
}

// beforeRow applies the attention and the row faults before a row is sent
// (final: before the answer's end).
func (a *answer) beforeRow(final bool) error {
	c := a.c
	if c.attn.Load() > 0 {
		c.takeAttn()
		return a.ackNow()
	}
	if f := a.faults.dropAfter; f != nil && (a.rows >= f.n || final) {
		c.pw.flush()
		f.hit()
		return errDrop
	}
	if f := a.faults.stall; f != nil && !a.stalled && (a.rows >= f.n || final) {
		a.stalled = true
		if err := c.pw.flush(); err != nil {
			return err
		}
		f.hit()
		return a.wait(nil, f.release)
	}
	if c.ctx.Err() != nil {
		return errClosed
	}
	return nil
}

// wait waits for timer or release, and ends the answer at an attention.
func (a *answer) wait(timer <-chan time.Time, release <-chan struct{}) error {
	c := a.c
	for {
		if c.takeAttn() {
			return a.ackNow()
		}
		select {
		case <-timer:
			return nil
		case <-release:
			return nil
		case <-c.attnCh:
		case <-c.ctx.Done():
			return errClosed
		}
	}
}

// transaction answers a transaction manager request.
func (c *conn) transaction(msg []byte) error {
	r := &msgReader{b: msg}
	if _, err := readAllHeaders(r); err != nil {
		return err
	}
	sess := c.sess
	tx, _ := c.s.cfg.Handler.(TxHandler)
	begin := func(iso Isolation) *Error {
		if sess.InTransaction {
			return &Error{Number: 50000, State: 1, Class: 16, Message: "tdstest: BEGIN TRANSACTION in an open transaction is not supported"}
		}
		prev := sess.Isolation
		if iso != IsolationUnchanged {
			sess.Isolation = iso
		}
		if tx != nil {
			if err := tx.Begin(sess, sess.Isolation); err != nil {
				sess.Isolation = prev
				return c.asError(err)
			}
		}
		sess.InTransaction = true
		c.tranDesc = c.s.tranID.Add(1)
		c.tok = appendEnvBytes(c.tok, envBeginTran, c.descBytes(), nil)
		return nil
	}
	switch kind := r.u16(); kind {
	case 5: // TM_BEGIN_XACT
		iso := Isolation(r.u8())
		r.bVarChar() // name
		if r.err != nil || iso > IsolationSnapshot {
			return c.protocolError(fmt.Errorf("tdstest: bad TM_BEGIN_XACT request"))
		}
		if e := begin(iso); e != nil {
			return c.sendErrors(e, false)
		}
	case 7, 8: // TM_COMMIT_XACT, TM_ROLLBACK_XACT
		r.bVarChar() // name
		flags := r.u8()
		var iso Isolation
		if flags&0x01 != 0 { // fBeginXact: a new transaction follows
			iso = Isolation(r.u8())
			r.bVarChar()
		}
		if r.err != nil {
			return c.protocolError(fmt.Errorf("tdstest: bad transaction manager request"))
		}
		if !sess.InTransaction {
			if kind == 7 {
				return c.sendErrors(&Error{Number: 3902, State: 1, Class: 16, Message: "The COMMIT TRANSACTION request has no corresponding BEGIN TRANSACTION."}, false)
			}
			return c.sendErrors(&Error{Number: 3903, State: 1, Class: 16, Message: "The ROLLBACK TRANSACTION request has no corresponding BEGIN TRANSACTION."}, false)
		}
		if tx != nil {
			var err error
			if kind == 7 {
				err = tx.Commit(sess)
			} else {
				err = tx.Rollback(sess)
			}
			if err != nil {
				return c.sendErrors(c.asError(err), false)
			}
		}
		env := byte(envCommitTran)
		if kind == 8 {
			env = envRollback
		}
		sess.InTransaction = false
		c.tok = appendEnvBytes(c.tok, env, nil, c.descBytes())
		c.tranDesc = 0
		if flags&0x01 != 0 {
			if e := begin(iso); e != nil {
				return c.sendErrors(e, false)
			}
		}
	default:
		return c.protocolError(fmt.Errorf("tdstest: transaction manager request %d is not supported", kind))
	}
	c.tok = appendDone(c.tok, tokDone, doneFinal, cmdNone, 0)
	c.pw.Write(c.tok)
	c.tok = c.tok[:0]
	return c.pw.end()
}
