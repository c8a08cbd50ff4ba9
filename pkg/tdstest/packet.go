package tdstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// TDS packet types (MS-TDS 2.2.3.1.1).
const (
	pktSQLBatch  = 0x01
	pktRPC       = 0x03
	pktReply     = 0x04
	pktAttention = 0x06
	pktTransMgr  = 0x0E
	pktLogin7    = 0x10
	pktSSPI      = 0x11
	pktPrelogin  = 0x12
)

// Packet header status bits.
const (
	statusEOM             = 0x01
	statusResetConn       = 0x08
	statusResetConnNoTran = 0x10
)

const (
	headerLen = 8
	// prePacketSize is the packet size before LOGIN7 negotiates one: SQL
	// Server's default, and go-mssqldb's.
	prePacketSize = 4096
	maxPacketSize = 32767
	minPacketSize = 512
	// maxMessage bounds what a client may send in one message (a request
	// with large parameters).
	maxMessage = 256 << 20
)

var errMessageTooLarge = errors.New("tdstest: client message too large")

// packetReader reads TDS packets and messages from the client.
type packetReader struct {
	r   io.Reader
	hdr [headerLen]byte
	buf []byte
}

// readPacket reads one packet. Its payload aliases an internal buffer that
// the next read reuses.
func (p *packetReader) readPacket() (typ, status byte, payload []byte, err error) {
	if _, err = io.ReadFull(p.r, p.hdr[:]); err != nil {
		return 0, 0, nil, err
	}
	size := int(binary.BigEndian.Uint16(p.hdr[2:4]))
	if size < headerLen {
		return 0, 0, nil, fmt.Errorf("tdstest: packet length %d is shorter than its header", size)
	}
	if cap(p.buf) < size-headerLen {
		p.buf = make([]byte, size-headerLen, 1<<15)
	}
	p.buf = p.buf[:size-headerLen]
	if _, err = io.ReadFull(p.r, p.buf); err != nil {
		return 0, 0, nil, err
	}
	return p.hdr[0], p.hdr[1], p.buf, nil
}

// readMessage reads packets up to the end of a message and returns the
// message's type, its first packet's status and its payload (a new slice).
// An attention packet ends a message of its own.
func (p *packetReader) readMessage() (typ, status byte, msg []byte, err error) {
	first := true
	for {
		t, st, payload, err := p.readPacket()
		if err != nil {
			return 0, 0, nil, err
		}
		if first {
			typ, status, first = t, st, false
		} else if t != typ {
			return 0, 0, nil, fmt.Errorf("tdstest: packet of type %#x inside a message of type %#x", t, typ)
		}
		if len(msg)+len(payload) > maxMessage {
			return 0, 0, nil, errMessageTooLarge
		}
		msg = append(msg, payload...)
		if st&statusEOM != 0 {
			return typ, status, msg, nil
		}
	}
}

// packetWriter splits what the server sends into packets of the negotiated
// size. Tokens are written into the current packet; a full packet is sent
// at once (status 0) and the last one with end of message.
type packetWriter struct {
	w    io.Writer
	buf  []byte // the packet being filled, header included
	size int    // packet size
	typ  byte
	seq  byte
	spid uint16
	// open is true between begin and end.
	open bool
	err  error
}

func newPacketWriter(w io.Writer, size int) *packetWriter {
	pw := &packetWriter{w: w}
	pw.setSize(size)
	return pw
}

func (p *packetWriter) setSize(size int) {
	p.size = size
	if cap(p.buf) < size {
		nb := make([]byte, len(p.buf), size)
		copy(nb, p.buf)
		p.buf = nb
	}
}

// begin starts a message of type typ.
func (p *packetWriter) begin(typ byte) {
	p.typ = typ
	p.seq = 1
	p.buf = p.buf[:headerLen]
	p.open = true
}

// Write adds b to the message, sending each packet that fills.
func (p *packetWriter) Write(b []byte) (int, error) {
	if p.err != nil {
		return 0, p.err
	}
	n := len(b)
	for len(b) > 0 {
		free := p.size - len(p.buf)
		if free == 0 {
			if err := p.send(0); err != nil {
				return n - len(b), err
			}
			continue
		}
		if free > len(b) {
			free = len(b)
		}
		p.buf = append(p.buf, b[:free]...)
		b = b[free:]
	}
	return n, nil
}

// flush sends what the current packet holds as a packet that does not end
// the message, so that the client sees it now.
func (p *packetWriter) flush() error {
	if p.err != nil {
		return p.err
	}
	if len(p.buf) <= headerLen {
		return nil
	}
	return p.send(0)
}

// end sends the last packet of the message.
func (p *packetWriter) end() error {
	if p.err != nil {
		return p.err
	}
	p.open = false
	return p.send(statusEOM)
}

func (p *packetWriter) send(status byte) error {
	b := p.buf
	b[0] = p.typ
	b[1] = status
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:6], p.spid)
	b[6] = p.seq
	b[7] = 0
	p.seq++
	if _, err := p.w.Write(b); err != nil {
		p.err = err
		return err
	}
	p.buf = p.buf[:headerLen]
	return nil
}
