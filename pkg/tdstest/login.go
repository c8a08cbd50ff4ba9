package tdstest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PRELOGIN option tokens and ENCRYPTION values.
const (
	preVersion    = 0
	preEncryption = 1
	preInstOpt    = 2
	preThreadID   = 3
	preMARS       = 4
	preTerminator = 0xFF

	encOff    = 0
	encOn     = 1
	encNotSup = 2
	encReq    = 3
	encStrict = 4
)

// LOGIN7 flags.
const (
	loginIntSecurity = 0x80 // OptionFlags2
	loginReadOnly    = 0x20 // TypeFlags
)

// prefixConn returns bytes already read before reading the connection.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (p *prefixConn) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// switchConn lets a tls.Conn move from the TDS-wrapped handshake to the
// raw connection.
type switchConn struct {
	net.Conn
	mu sync.Mutex
	to net.Conn
}

func (s *switchConn) cur() net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.to
}
func (s *switchConn) set(c net.Conn) {
	s.mu.Lock()
	s.to = c
	s.mu.Unlock()
}
func (s *switchConn) Read(b []byte) (int, error)  { return s.cur().Read(b) }
func (s *switchConn) Write(b []byte) (int, error) { return s.cur().Write(b) }

// handshakeConn carries TLS handshake records inside TDS PRELOGIN packets,
// as TDS 7.x does: what the TLS server writes is buffered and sent as one
// PRELOGIN message when it next reads, or when the handshake ends.
type handshakeConn struct {
	net.Conn
	rd      *packetReader
	raw     io.Writer
	pending []byte
	out     []byte
}

func (h *handshakeConn) Read(b []byte) (int, error) {
	if err := h.flush(); err != nil {
		return 0, err
	}
	for len(h.pending) == 0 {
		typ, _, payload, err := h.rd.readPacket()
		if err != nil {
			return 0, err
		}
		if typ != pktPrelogin {
			return 0, fmt.Errorf("tdstest: packet type %#x during the TLS handshake", typ)
		}
		h.pending = payload
	}
	n := copy(b, h.pending)
	h.pending = h.pending[n:]
	return n, nil
}

func (h *handshakeConn) Write(b []byte) (int, error) {
	h.out = append(h.out, b...)
	return len(b), nil
}

func (h *handshakeConn) flush() error {
	if len(h.out) == 0 {
		return nil
	}
	pw := newPacketWriter(h.raw, prePacketSize)
	pw.begin(pktPrelogin)
	pw.Write(h.out)
	h.out = h.out[:0]
	return pw.end()
}

// login7 is what the server reads from LOGIN7.
type login7 struct {
	tdsVersion uint32
	packetSize uint32
	flags2     byte
	typeFlags  byte
	hostName   string
	user       string
	password   string
	appName    string
	serverName string
	language   string
	database   string
}

func parseLogin7(b []byte) (*login7, error) {
	if len(b) < 94 {
		return nil, errors.New("tdstest: LOGIN7 too short")
	}
	l := &login7{
		tdsVersion: binary.LittleEndian.Uint32(b[4:]),
		packetSize: binary.LittleEndian.Uint32(b[8:]),
		flags2:     b[25],
		typeFlags:  b[26],
	}
	var err error
	field := func(at int, mangled bool) string {
		off := int(binary.LittleEndian.Uint16(b[at:]))
		n := 2 * int(binary.LittleEndian.Uint16(b[at+2:]))
		if n == 0 {
			return ""
		}
		if off+n > len(b) {
			err = errors.New("tdstest: LOGIN7 field out of bounds")
			return ""
		}
		v := b[off : off+n]
		if mangled {
			u := make([]byte, n)
			for i, c := range v {
				c ^= 0xA5
				u[i] = c<<4 | c>>4
			}
			v = u
		}
		return ucs2String(v)
	}
	l.hostName = field(36, false)
	l.user = field(40, false)
	l.password = field(44, true)
	l.appName = field(48, false)
	l.serverName = field(52, false)
	l.language = field(64, false)
	l.database = field(68, false)
	return l, err
}

// handshake runs PRELOGIN, TLS and LOGIN7 on a new connection. It returns
// false when the connection is to be closed.
func (c *conn) handshake(ctx context.Context) bool {
	s := c.s
	var first [1]byte
	if _, err := io.ReadFull(c.raw, first[:]); err != nil {
		return false
	}
	pc := &prefixConn{Conn: c.raw, prefix: first[:]}
	var transport net.Conn = pc
	strict := first[0] == 0x16 // a TLS handshake record: TDS 8.0
	if strict {
		if s.cfg.NoStrict {
			return false
		}
		tc := tls.Server(pc, s.tlsConfig([]string{"tds/8.0"}))
		if err := tc.HandshakeContext(ctx); err != nil {
			return false
		}
		transport = tc
	} else if s.cfg.Encryption == EncryptStrict {
		// Only TLS is spoken here: what came is not a ClientHello, and the
		// answer is a TLS alert (fatal, handshake failure). The packet is
		// read first, so that closing does not reset the connection and
		// lose the alert.
		c.raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, _, _, err := (&packetReader{r: pc}).readPacket(); err == nil {
			c.raw.Write([]byte{0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28})
		}
		return false
	}
	c.rd = &packetReader{r: transport}
	c.pw = newPacketWriter(transport, prePacketSize)
	c.pw.spid = uint16(c.sess.ID)

	typ, _, msg, err := c.rd.readMessage()
	if err != nil || typ != pktPrelogin {
		return false
	}
	clientEnc, ok := preloginEncryption(msg)
	if !ok {
		return false
	}
	answer, tlsMode, hangUp := s.negotiate(clientEnc, strict)
	if c.writePrelogin(answer) != nil || hangUp {
		return false
	}
	loginOnly := false
	if !strict && tlsMode != tlsNone {
		hs := &handshakeConn{Conn: pc, rd: &packetReader{r: pc}, raw: pc}
		sw := &switchConn{Conn: pc, to: hs}
		tc := tls.Server(sw, s.tlsConfig(nil))
		err := tc.HandshakeContext(ctx)
		if err == nil {
			err = hs.flush()
		}
		if err != nil {
			return false
		}
		sw.set(pc)
		c.rd.r, c.pw.w = tc, tc
		loginOnly = tlsMode == tlsLogin
	}
	c.sess.Encrypted = strict || tlsMode == tlsFull

	typ, _, msg, err = c.rd.readMessage()
	if err != nil || typ != pktLogin7 {
		return false
	}
	s.logins.Add(1)
	if loginOnly {
		// Only the LOGIN7 packet was encrypted: the rest is plain.
		c.rd.r, c.pw.w = pc, pc
	}
	return c.login(msg)
}

type tlsMode int

const (
	tlsNone tlsMode = iota
	tlsLogin
	tlsFull
)

// negotiate answers the client's ENCRYPTION option as SQL Server does.
func (s *Server) negotiate(client byte, strict bool) (answer byte, mode tlsMode, hangUp bool) {
	if strict {
		return encOn, tlsFull, false
	}
	wants := client == encOn || client == encReq || client == encStrict
	switch s.cfg.Encryption {
	case EncryptOn:
		switch {
		case wants:
			return encOn, tlsFull, false
		case client == encOff:
			return encReq, tlsFull, false
		default:
			return encReq, tlsNone, true
		}
	case EncryptRequired:
		return encReq, tlsFull, client == encNotSup
	case EncryptNotSupported:
		return encNotSup, tlsNone, false
	default:
		switch {
		case wants:
			return encOn, tlsFull, false
		case client == encOff:
			return encOff, tlsLogin, false
		default:
			return encNotSup, tlsNone, false
		}
	}
}

func (s *Server) tlsConfig(alpn []string) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{s.tlsCert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   alpn,
		// Session tickets would follow the handshake outside the PRELOGIN
		// packets that carry it.
		SessionTicketsDisabled: true,
	}
}

// preloginEncryption returns the client's ENCRYPTION option.
func preloginEncryption(b []byte) (byte, bool) {
	enc, found := byte(encOff), false
	for i := 0; i < len(b); i += 5 {
		if b[i] == preTerminator {
			return enc, true
		}
		if i+5 > len(b) {
			return 0, false
		}
		off := int(binary.BigEndian.Uint16(b[i+1:]))
		n := int(binary.BigEndian.Uint16(b[i+3:]))
		if off+n > len(b) {
			return 0, false
		}
		if b[i] == preEncryption && n >= 1 {
			enc, found = b[off], true
		}
	}
	return enc, found
}

func (c *conn) writePrelogin(enc byte) error {
	v := c.s.cfg.Version
	opts := []struct {
		tok  byte
		data []byte
	}{
		{preVersion, []byte{v.Major, v.Minor, byte(v.Build >> 8), byte(v.Build), 0, 0}},
		{preEncryption, []byte{enc}},
		{preInstOpt, []byte{0}},
		{preThreadID, nil},
		{preMARS, []byte{0}},
	}
	b := make([]byte, 0, 64)
	off := 5*len(opts) + 1
	for _, o := range opts {
		b = append(b, o.tok, byte(off>>8), byte(off), byte(len(o.data)>>8), byte(len(o.data)))
		off += len(o.data)
	}
	b = append(b, preTerminator)
	for _, o := range opts {
		b = append(b, o.data...)
	}
	c.pw.begin(pktReply)
	c.pw.Write(b)
	return c.pw.end()
}

// login checks the login and answers it. It returns false when the
// connection is to be closed.
func (c *conn) login(msg []byte) bool {
	s := c.s
	l, err := parseLogin7(msg)
	if err != nil {
		return false
	}
	sess := c.sess
	sess.User, sess.AppName, sess.ServerName = l.user, l.appName, l.serverName
	sess.ReadOnlyIntent = l.typeFlags&loginReadOnly != 0
	sess.TDSVersion = l.tdsVersion
	fail := func(errs ...*Error) bool {
		b := c.tok[:0]
		for _, e := range errs {
			b = appendMessage(b, tokError, e, s.cfg.ServerName)
		}
		b = appendDone(b, tokDone, doneError, cmdNone, 0)
		c.tok = b
		c.pw.begin(pktReply)
		c.pw.Write(b)
		c.pw.end()
		return false
	}
	loginFailed := &Error{Number: 18456, State: 1, Class: 14, Message: fmt.Sprintf("Login failed for user '%s'.", l.user)}
	if l.flags2&loginIntSecurity != 0 {
		return fail(&Error{Number: 18452, State: 1, Class: 14, Message: "Login failed. The login is from an untrusted domain and cannot be used with Integrated authentication."})
	}
	if s.cfg.Users != nil {
		ok := false
		for u, p := range s.cfg.Users {
			if strings.EqualFold(u, l.user) && p == l.password {
				ok = true
				break
			}
		}
		if !ok {
			return fail(loginFailed)
		}
	}
	db := l.database
	switch {
	case db == "" && len(s.cfg.Databases) > 0:
		db = s.cfg.Databases[0]
	case db == "":
		db = "master"
	case s.cfg.Databases != nil:
		found := false
		for _, d := range s.cfg.Databases {
			if strings.EqualFold(d, db) {
				db, found = d, true
				break
			}
		}
		if !found {
			return fail(&Error{Number: 4060, State: 1, Class: 11, Message: fmt.Sprintf("Cannot open database \"%s\" requested by the login. The login failed.", l.database)}, loginFailed)
		}
	}
	sess.Database, c.loginDB = db, db
	size := int(l.packetSize)
	if size == 0 {
		size = prePacketSize
	}
	size = max(minPacketSize, min(size, maxPacketSize))
	if sess.Encrypted && size > 16383 {
		size = 16383
	}
	sess.PacketSize = size

	b := c.tok[:0]
	b = appendEnvString(b, envDatabase, db, "master")
	b = appendMessage(b, tokInfo, &Error{Number: 5701, State: 2, Message: fmt.Sprintf("Changed database context to '%s'.", db)}, s.cfg.ServerName)
	w := s.coll.wire()
	b = appendEnvBytes(b, envCollation, w[:], nil)
	b = appendEnvString(b, envLanguage, "us_english", "")
	b = appendEnvString(b, envPacketSize, strconv.Itoa(size), strconv.Itoa(prePacketSize))
	b = appendMessage(b, tokInfo, &Error{Number: 5703, State: 1, Message: "Changed language setting to us_english."}, s.cfg.ServerName)
	b = appendLoginAck(b, s.cfg.Version)
	var route *Route
	if s.cfg.Route != nil {
		route = s.cfg.Route(sess)
	}
	if route != nil {
		b = appendRouting(b, route.Host, uint16(route.Port))
	}
	b = appendDone(b, tokDone, doneFinal, cmdNone, 0)
	c.tok = b
	// The login answer must fit the client's packets, whose size it
	// requested; the new size applies from the next message.
	c.pw.setSize(min(size, prePacketSize))
	c.pw.begin(pktReply)
	c.pw.Write(b)
	if c.pw.end() != nil || route != nil {
		return false
	}
	c.pw.setSize(size)
	return true
}

// serveFault answers a new connection's first bytes with a connection
// fault and hangs up.
func (c *conn) serveFault(f *Fault) {
	buf := make([]byte, 4096)
	c.raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	c.raw.Read(buf) // the PRELOGIN, or a ClientHello
	var answer []byte
	switch f.kind {
	case faultGarbage:
		answer = make([]byte, 512)
		rand.Read(answer)
		answer[0] = 0xEE // not a reply packet
	default:
		answer = []byte("HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request")
	}
	f.hit()
	c.raw.Write(answer)
}
