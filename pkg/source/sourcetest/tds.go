package sourcetest

import (
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

// TDSTLSAddr accepts connections and plays the start of a SQL Server login
// with encryption on: it answers the client's PRELOGIN with ENCRYPT_ON and
// runs a TLS server handshake with cert inside TDS packets, as SQL Server
// does before TDS 8.0. Nothing after the handshake is implemented.
func TDSTLSAddr(t testing.TB, cert tls.Certificate) string {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return serve(t, func(c net.Conn) {
		defer c.Close()
		if _, _, err := readTDS(c); err != nil {
			return
		}
		// PRELOGIN response: VERSION (token 0, 6 bytes) and ENCRYPTION
		// (token 1, 1 byte: ENCRYPT_ON), then the terminator.
		resp := []byte{
			0x00, 0x00, 11, 0x00, 6,
			0x01, 0x00, 17, 0x00, 1,
			0xFF,
			16, 0, 0, 0, 0, 0, // version
			0x01, // ENCRYPT_ON
		}
		if err := writeTDS(c, 0x04, resp); err != nil {
			return
		}
		tc := tls.Server(&tdsConn{Conn: c}, cfg)
		_ = tc.Handshake()
	})
}

// LoginHangAddr accepts connections, answers the client's PRELOGIN with
// encryption not supported (no TLS follows), then reads the LOGIN7 and
// never answers it, as a server that is stuck after the prelogin.
func LoginHangAddr(t testing.TB) string {
	t.Helper()
	return serve(t, func(c net.Conn) {
		defer c.Close()
		if _, _, err := readTDS(c); err != nil {
			return
		}
		resp := []byte{
			0x00, 0x00, 11, 0x00, 6,
			0x01, 0x00, 17, 0x00, 1,
			0xFF,
			15, 0, 0x10, 0x39, 0, 0, // version 15.0.4153
			0x02, // ENCRYPT_NOT_SUP
		}
		if err := writeTDS(c, 0x04, resp); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, c)
	})
}

// readTDS reads one TDS packet: its type and payload.
func readTDS(r io.Reader) (byte, []byte, error) {
	var h [8]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	n := int(binary.BigEndian.Uint16(h[2:4])) - 8
	if n < 0 {
		return 0, nil, io.ErrUnexpectedEOF
	}
	body := make([]byte, n)
	_, err := io.ReadFull(r, body)
	return h[0], body, err
}

func writeTDS(w io.Writer, typ byte, payload []byte) error {
	h := [8]byte{typ, 0x01}
	binary.BigEndian.PutUint16(h[2:4], uint16(len(payload)+8))
	h[6] = 1
	_, err := w.Write(append(h[:], payload...))
	return err
}

// tdsConn carries TLS records inside TDS PRELOGIN packets.
type tdsConn struct {
	net.Conn
	pending []byte
}

func (c *tdsConn) Read(b []byte) (int, error) {
	for len(c.pending) == 0 {
		_, body, err := readTDS(c.Conn)
		if err != nil {
			return 0, err
		}
		c.pending = body
	}
	n := copy(b, c.pending)
	c.pending = c.pending[n:]
	return n, nil
}

func (c *tdsConn) Write(b []byte) (int, error) {
	if err := writeTDS(c.Conn, 0x12, b); err != nil {
		return 0, err
	}
	return len(b), nil
}
