package source

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// Dialer opens the byte streams to an organization's database server the
// way its configuration says (via relay, ssh or direct). It is safe for
// concurrent use; Close releases an SSH tunnel.
type Dialer struct {
	src     config.Source
	timeout time.Duration
	tunnel  *Tunnel // via ssh; nil otherwise
}

// NewDialer returns the source's dialer. Via ssh it resolves the SSH
// secrets and host key settings now, but connects on the first dial.
func NewDialer(src config.Source) (*Dialer, error) {
	d := &Dialer{src: src, timeout: connectTimeout(src)}
	if src.Via == config.ViaSSH {
		if src.SSH == nil {
			return nil, errors.New("via ssh without ssh settings")
		}
		t, err := NewTunnel(*src.SSH, TunnelOptions{Timeout: d.timeout})
		if err != nil {
			return nil, err
		}
		d.tunnel = t
	}
	return d, nil
}

// Addr is the database server's address as the configuration names it.
func (d *Dialer) Addr() string {
	return net.JoinHostPort(d.src.Host, strconv.Itoa(d.src.Port))
}

// FirstHop is the address ehrsync itself connects to (the relay endpoint,
// the bastion or the server) and which hop it is.
func (d *Dialer) FirstHop() (Hop, string) {
	switch d.src.Via {
	case config.ViaSSH:
		return HopBastion, net.JoinHostPort(d.src.SSH.Host, strconv.Itoa(d.src.SSH.Port))
	case config.ViaRelay:
		return HopRelay, d.Addr()
	}
	return HopServer, d.Addr()
}

// Tunnel is the SSH tunnel, or nil unless via ssh.
func (d *Dialer) Tunnel() *Tunnel { return d.tunnel }

// DialContext connects to the database server. The first dial of a
// connection attempt goes to the configured host and port whatever addr
// says, so drivers cannot resolve or redirect it elsewhere. A further dial
// in the same SQL Server attempt is the server routing the login (an
// availability group listener's read-only routing sends the client to a
// replica): via direct it goes to addr, the routed host:port, once; via a
// relay or SSH tunnel, which reach one configured address, it fails with a
// *RoutingError instead of re-dialing the listener for ever. Other errors
// are *DialError naming the hop.
func (d *Dialer) DialContext(ctx context.Context, _, addr string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	target := ""
	if a != nil && d.src.Dialect == config.SQLServer {
		switch n := a.dial(); {
		case n == 1:
		case n > 2:
			return nil, &RoutingError{Via: d.src.Via, Routed: addr, Again: true}
		case d.src.Via != config.ViaDirect:
			return nil, &RoutingError{Via: d.src.Via, Routed: addr}
		default:
			target = addr
		}
	}
	c, err := d.dial(dctx, a, target)
	if err != nil {
		return nil, err
	}
	if a != nil {
		a.add(c)
	}
	return c, nil
}

// dial connects to the server, or to routed (a host:port the server routed
// the login to) when it is not "".
func (d *Dialer) dial(ctx context.Context, a *attempt, routed string) (net.Conn, error) {
	var c net.Conn
	hop, addr := d.FirstHop()
	switch {
	case d.tunnel != nil:
		hop, addr = HopTunnel, d.Addr()
		var err error
		if c, err = d.tunnel.DialContext(ctx, addr); err != nil {
			return nil, err
		}
	default:
		if routed != "" {
			hop, addr = HopServer, routed
		}
		var nd net.Dialer
		nd.KeepAlive = 30 * time.Second
		var err error
		if c, err = nd.DialContext(ctx, "tcp", addr); err != nil {
			return nil, &DialError{Hop: hop, Addr: addr, Err: err}
		}
	}
	if a == nil {
		return c, nil
	}
	w := &watchedConn{Conn: c, a: a, hop: hop, addr: addr}
	if d.src.Dialect == config.SQLServer {
		w.first = firstTDS
		if d.src.TLS.Mode == config.TLSStrict {
			w.first = firstTLS
		}
	} else if hop != HopRelay {
		return c, nil
	}
	return w, nil
}

// attempt is one connection attempt (connector.Connect): the connections
// dialed for it, so that cancelling the attempt's context interrupts a
// driver blocked reading from a server that accepted and never answers
// (go-mssqldb's prelogin and TLS reads do not watch the context), and what
// its connections saw.
type attempt struct {
	mu    sync.Mutex
	conns []net.Conn
	dials int
	fired bool
	// silent records a connection the peer closed before sending a byte:
	// a relay that could not reach the server, or a server that hung up
	// on what ehrsync sent (see connector.Connect).
	silent atomic.Pointer[silentClose]
	// notTDS records the first connection whose server answered with
	// something SQL Server never sends first.
	notTDS atomic.Pointer[NotTDSError]
}

// silentClose is a connection closed by the peer before it sent a byte.
type silentClose struct {
	hop   Hop
	addr  string
	wrote bool // ehrsync had sent something on it
}

type attemptKey struct{}

// dial counts a dial of the attempt and returns its number (1 for the first).
func (a *attempt) dial() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.dials++
	return a.dials
}

func (a *attempt) add(c net.Conn) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.conns = append(a.conns, c)
	if a.fired {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
}

// interrupt makes every blocked read and write of the attempt fail now.
func (a *attempt) interrupt() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.fired = true
	for _, c := range a.conns {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
}

// HostName makes Dialer a go-mssqldb HostDialer: the driver leaves name
// resolution to the hop that connects (the relay, the bastion, or this
// machine for direct).
func (d *Dialer) HostName() string { return d.src.Host }

// Close closes the SSH tunnel, if any.
func (d *Dialer) Close() error {
	if d.tunnel != nil {
		return d.tunnel.Close()
	}
	return nil
}

// firstBytes is what a server must send first on a connection.
type firstBytes uint8

const (
	firstAny firstBytes = iota // not checked (PostgreSQL)
	firstTDS                   // a TDS packet (PRELOGIN response)
	firstTLS                   // a TLS record (TDS 8.0 strict)
)

// watchedConn watches the start of a connection being set up: a peer that
// closes it before sending a byte, and (SQL Server) a first answer that is
// not what SQL Server sends. After the first bytes it only counts.
type watchedConn struct {
	net.Conn
	a     *attempt
	hop   Hop
	addr  string
	first firstBytes
	wrote atomic.Bool
	got   atomic.Bool
	head  []byte // the first bytes read, until judged; read by one goroutine at a time
}

func (c *watchedConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.wrote.Store(true)
	}
	return n, err
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.got.Load() {
		c.head = append(c.head, p[:min(n, headLen-len(c.head))]...)
		if len(c.head) >= headLen {
			c.judge()
		}
	}
	if err != nil && !c.got.Load() {
		if len(c.head) > 0 {
			c.judge()
		} else if isPeerClose(err) {
			c.a.silent.CompareAndSwap(nil, &silentClose{hop: c.hop, addr: c.addr, wrote: c.wrote.Load()})
		}
	}
	return n, err
}

// headLen is how many bytes judge needs: a TDS packet header's type,
// status and length, a TLS record's type and version, "HTTP".
const headLen = 4

// judge decides, once, whether the first bytes are what the server should
// send first.
func (c *watchedConn) judge() {
	head := c.head
	c.head = nil
	c.got.Store(true)
	if answer := notTDS(c.first, head); answer != "" {
		c.a.notTDS.CompareAndSwap(nil, &NotTDSError{Addr: c.addr, Answer: answer})
	}
}

// notTDS says what head (the first bytes a server sent) is when it is not
// what SQL Server sends first, or "" when it is. It never quotes more than
// the first bytes, which are the other service's protocol, not data.
func notTDS(first firstBytes, head []byte) string {
	isTLS := len(head) >= 2 && (head[0] == 0x15 || head[0] == 0x16) && head[1] == 0x03
	switch first {
	case firstTDS:
		// A PRELOGIN response: packet type 4 (reply), a length of at
		// least the 8-byte header.
		if len(head) >= 4 && head[0] == 0x04 && int(head[2])<<8|int(head[3]) >= 8 {
			return ""
		}
		if isTLS {
			return "TLS where SQL Server answers in TDS (a TLS-only service, or SQL Server 2022 forcing strict encryption: then set tls.mode: strict)"
		}
	case firstTLS:
		if isTLS {
			return ""
		}
	default:
		return ""
	}
	if bytes.HasPrefix(head, []byte("HTTP")) {
		return "an HTTP response"
	}
	return fmt.Sprintf("bytes % x", head)
}

func isPeerClose(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

// Probe checks the relay's health endpoint (relay.probe): tcp://host:port
// is a TCP connect, https://... a GET that must answer 2xx or 3xx. A source
// without a probe returns nil. Errors are *DialError with hop probe.
func Probe(ctx context.Context, src config.Source, timeout time.Duration) error {
	if src.Relay == nil || src.Relay.Probe == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u, err := url.Parse(src.Relay.Probe)
	if err != nil {
		return fmt.Errorf("relay.probe: %w", err)
	}
	switch u.Scheme {
	case "tcp":
		var nd net.Dialer
		c, err := nd.DialContext(ctx, "tcp", u.Host)
		if err != nil {
			return &DialError{Hop: HopProbe, Addr: u.Host, Err: err}
		}
		return c.Close()
	case "https":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return fmt.Errorf("relay.probe: %w", err)
		}
		client := &http.Client{Transport: &http.Transport{
			TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment,
		}}
		resp, err := client.Do(req)
		if err != nil {
			return &DialError{Hop: HopProbe, Addr: u.Host, Err: err}
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			return &DialError{Hop: HopProbe, Addr: u.Host, Err: fmt.Errorf("status %d", resp.StatusCode)}
		}
		return nil
	}
	return fmt.Errorf("relay.probe: unknown scheme %q", u.Scheme)
}

// verifier checks a server certificate the way crypto/tls would and keeps
// the typed failure, because go-mssqldb reports its TDS-wrapped handshake
// errors as text only.
type verifier struct {
	roots      *x509.CertPool
	serverName string
	mu         sync.Mutex
	last       error
}

// verify checks the certificate against the name the handshake asked for:
// the configuration's (tls.server_name or host), or, on a connection the
// server routed elsewhere (read-only routing, via direct), the routed
// host's, which go-mssqldb puts in its clone of the TLS configuration
// unless tls.server_name is set. crypto/tls leaves IP addresses out of
// ConnectionState.ServerName (no SNI for them); an IP address is then
// checked as the configured name, which a routed server's certificate
// rarely holds: such a route fails closed (tls_wrong_host), never open.
func (v *verifier) verify(cs tls.ConnectionState) error {
	name := v.serverName
	if cs.ServerName != "" {
		name = cs.ServerName
	}
	err := verifyChain(cs, v.roots, name)
	if err != nil {
		v.mu.Lock()
		v.last = err
		v.mu.Unlock()
	}
	return err
}

func (v *verifier) take() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	err := v.last
	v.last = nil
	return err
}

func verifyChain(cs tls.ConnectionState, roots *x509.CertPool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, DNSName: name, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}
