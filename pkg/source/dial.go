package source

import (
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

// DialContext connects to the database server; addr is ignored in favour
// of the configured host and port, so drivers cannot resolve or redirect
// it elsewhere. Errors are *DialError naming the hop.
func (d *Dialer) DialContext(ctx context.Context, _, _ string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	a, _ := ctx.Value(attemptKey{}).(*attempt)
	c, err := d.dial(dctx, a)
	if err != nil {
		return nil, err
	}
	if a != nil {
		a.add(c)
	}
	return c, nil
}

func (d *Dialer) dial(ctx context.Context, a *attempt) (net.Conn, error) {
	if d.tunnel != nil {
		return d.tunnel.DialContext(ctx, d.Addr())
	}
	hop, addr := d.FirstHop()
	var nd net.Dialer
	nd.KeepAlive = 30 * time.Second
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &DialError{Hop: hop, Addr: addr, Err: err}
	}
	if hop == HopRelay && a != nil {
		return &watchedConn{Conn: c, a: a, addr: addr}, nil
	}
	return c, nil
}

// attempt is one connection attempt (connector.Connect): the connections
// dialed for it, so that cancelling the attempt's context interrupts a
// driver blocked reading from a server that accepted and never answers
// (go-mssqldb's login reads do not watch the context).
type attempt struct {
	mu    sync.Mutex
	conns []net.Conn
	fired bool
	// silent records a relay connection the peer closed before sending a
	// byte (see UpstreamClosedError).
	silent atomic.Pointer[UpstreamClosedError]
}

type attemptKey struct{}

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

// watchedConn records a relay connection closed by the peer before it sent
// anything: the relay accepted but could not reach the server.
type watchedConn struct {
	net.Conn
	a    *attempt
	addr string
	got  atomic.Bool
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.got.Store(true)
	}
	if err != nil && !c.got.Load() && isPeerClose(err) {
		c.a.silent.Store(&UpstreamClosedError{Addr: c.addr})
	}
	return n, err
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

func (v *verifier) verify(cs tls.ConnectionState) error {
	err := verifyChain(cs, v.roots, v.serverName)
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
