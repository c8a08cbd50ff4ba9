package source

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"
)

// preloginProbe connects to the server (through d's hop) and sends a plain
// TDS 7.x PRELOGIN, as any SQL Server client does first without TDS 8.0,
// then closes. It reports whether a PRELOGIN response came back and the
// server version in it ("15.0.4153", "" when it had none). It sends no
// login: the server sees a client that went away after the prelogin.
//
// connector.Connect uses it to tell a SQL Server that hung up on TDS 8.0's
// TLS ClientHello (it answers this) from a relay that cannot reach its
// server (it closes this one too).
func preloginProbe(ctx context.Context, d *Dialer) (version string, ok bool) {
	c, err := d.dial(ctx, nil, "")
	if err != nil {
		return "", false
	}
	defer c.Close()
	dl, has := ctx.Deadline()
	if !has {
		dl = time.Now().Add(d.timeout)
	}
	_ = c.SetDeadline(dl)
	if _, err := c.Write(preloginPacket()); err != nil {
		return "", false
	}
	var h [8]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		return "", false
	}
	size := int(binary.BigEndian.Uint16(h[2:4]))
	if h[0] != tdsReply || size < len(h)+1 {
		return "", false
	}
	body := make([]byte, size-len(h))
	if _, err := io.ReadFull(c, body); err != nil {
		return "", false
	}
	return preloginVersion(body), true
}

// TDS packet types and PRELOGIN option tokens (MS-TDS 2.2.3.1, 2.2.6.5).
const (
	tdsReply      = 0x04
	tdsPrelogin   = 0x12
	plVersion     = 0x00
	plEncryption  = 0x01
	plTerminator  = 0xFF
	encryptOff    = 0x00
	tdsStatusLast = 0x01
)

// preloginPacket is a PRELOGIN with VERSION (0.0.0.0) and ENCRYPTION
// (off: the probe never gets as far as TLS).
func preloginPacket() []byte {
	const options = 2*5 + 1 // two option headers and the terminator
	payload := []byte{
		plVersion, 0, options, 0, 6,
		plEncryption, 0, options + 6, 0, 1,
		plTerminator,
		0, 0, 0, 0, 0, 0, // version, sub-build
		encryptOff,
	}
	p := make([]byte, 8, 8+len(payload))
	p[0], p[1] = tdsPrelogin, tdsStatusLast
	binary.BigEndian.PutUint16(p[2:4], uint16(8+len(payload)))
	p[6] = 1 // packet id
	return append(p, payload...)
}

// preloginVersion reads the VERSION option of a PRELOGIN response body:
// major.minor.build, or "" when there is none or it does not parse.
func preloginVersion(body []byte) string {
	for off := 0; off+5 <= len(body) && body[off] != plTerminator; off += 5 {
		if body[off] != plVersion {
			continue
		}
		at, n := int(binary.BigEndian.Uint16(body[off+1:])), int(binary.BigEndian.Uint16(body[off+3:]))
		if n < 4 || at+4 > len(body) {
			return ""
		}
		v := body[at:]
		return fmt.Sprintf("%d.%d.%d", v[0], v[1], binary.BigEndian.Uint16(v[2:4]))
	}
	return ""
}
