package source

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// TunnelOptions tune a Tunnel.
type TunnelOptions struct {
	// Timeout bounds the TCP connect and SSH handshake; default 30s.
	Timeout time.Duration
	// KeepAlive is the interval of keepalive@openssh.com requests; a
	// client that misses one is closed and re-dialed on the next use.
	// Default 30s.
	KeepAlive time.Duration
}

// Tunnel is an SSH client to a bastion that opens direct-tcpip channels to
// the database server. It connects lazily, verifies the host key against
// known_hosts and/or the pinned fingerprint (refusing otherwise), sends
// keepalives, and re-dials when the connection dropped. Safe for concurrent
// use; Close stops it.
type Tunnel struct {
	addr   string
	cfg    *ssh.ClientConfig
	opts   TunnelOptions
	mu     sync.Mutex
	client *ssh.Client
	stop   chan struct{} // closes the keepalive loop of client
	closed bool
	dials  int // SSH connections made, for tests and check
	wg     sync.WaitGroup
}

// NewTunnel resolves s's secrets and host key settings. It does not connect.
func NewTunnel(s config.SSH, opts TunnelOptions) (*Tunnel, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = config.DefaultConnectTimeout
	}
	if opts.KeepAlive <= 0 {
		opts.KeepAlive = 30 * time.Second
	}
	var auth []ssh.AuthMethod
	if s.PrivateKey.IsSet() {
		pem, err := s.PrivateKey.Reveal()
		if err != nil {
			return nil, fmt.Errorf("ssh.private_key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey([]byte(pem))
		if err != nil {
			// The parser's messages do not quote the key; keep them out anyway.
			return nil, fmt.Errorf("ssh.private_key %s: not a usable unencrypted private key", s.PrivateKey)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if s.Password.IsSet() {
		pw, err := s.Password.Reveal()
		if err != nil {
			return nil, fmt.Errorf("ssh.password: %w", err)
		}
		auth = append(auth, ssh.Password(pw))
	}
	hk, err := hostKeyCallback(s)
	if err != nil {
		return nil, err
	}
	port := s.Port
	if port == 0 {
		port = config.DefaultSSHPort
	}
	return &Tunnel{
		addr: net.JoinHostPort(s.Host, strconv.Itoa(port)),
		cfg:  &ssh.ClientConfig{User: s.User, Auth: auth, HostKeyCallback: hk, Timeout: opts.Timeout},
		opts: opts,
	}, nil
}

// hostKeyCallback accepts the server's key only when it matches every
// configured check (known_hosts, fingerprint); with neither it refuses.
func hostKeyCallback(s config.SSH) (ssh.HostKeyCallback, error) {
	var checks []ssh.HostKeyCallback
	if s.KnownHosts != "" {
		kh, err := knownHosts(s.KnownHosts)
		if err != nil {
			return nil, fmt.Errorf("ssh.known_hosts: %w", err)
		}
		checks = append(checks, kh)
	}
	if s.HostKeyFingerprint != "" {
		want := s.HostKeyFingerprint
		checks = append(checks, func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if subtle.ConstantTimeCompare([]byte(ssh.FingerprintSHA256(key)), []byte(want)) != 1 {
				return fmt.Errorf("fingerprint %s is not the pinned one", ssh.FingerprintSHA256(key))
			}
			return nil
		})
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		if len(checks) == 0 {
			return fmt.Errorf("no known_hosts or host_key_fingerprint: %w", ErrHostKey)
		}
		for _, c := range checks {
			if err := c(host, remote, key); err != nil {
				return fmt.Errorf("%w: %w", ErrHostKey, err)
			}
		}
		return nil
	}, nil
}

// knownHosts reads an OpenSSH known_hosts file that group and others may
// not write (secrets.OpenTrusted: whoever writes it chooses which bastion
// ehrsync trusts). knownhosts reads files by name only, so it is given the
// descriptor that was checked (/dev/fd/N, the same open file), never the
// path again; where there is no /dev/fd, the path.
func knownHosts(path string) (ssh.HostKeyCallback, error) {
	f, err := secrets.OpenTrusted(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	name := path
	if fd := fmt.Sprintf("/dev/fd/%d", f.Fd()); runtime.GOOS != "windows" {
		if _, err := os.Stat(fd); err == nil {
			name = fd
		}
	}
	kh, err := knownhosts.New(name)
	if err != nil {
		if name != path {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return nil, err
	}
	return kh, nil
}

// Addr is the bastion's host:port.
func (t *Tunnel) Addr() string { return t.addr }

// Dials counts the SSH connections made so far (1 after the first use, more
// after re-dials).
func (t *Tunnel) Dials() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.dials
}

// Connect makes sure the SSH client is connected, dialing it if needed.
func (t *Tunnel) Connect(ctx context.Context) error {
	_, err := t.get(ctx)
	return err
}

// DialContext opens a direct-tcpip channel to addr (as the bastion resolves
// it). When the SSH connection is gone it re-dials once.
//
// The connection it returns keeps net.Conn's promise of deadlines, which
// an SSH channel refuses ("tcpChan: deadline not supported"): it is one
// end of a net.Pipe, and two goroutines copy between the other end and the
// channel. They end when either side closes (the caller's Close, the
// server's end of the stream, the SSH connection's loss), and Close waits
// for them.
func (t *Tunnel) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	for attempt := 0; ; attempt++ {
		c, err := t.get(ctx)
		if err != nil {
			return nil, err
		}
		conn, err := c.DialContext(ctx, "tcp", addr)
		if err == nil {
			return t.pipe(conn)
		}
		var oce *ssh.OpenChannelError
		if errors.As(err, &oce) || attempt > 0 || ctx.Err() != nil {
			return nil, &DialError{Hop: HopTunnel, Addr: addr, Err: err}
		}
		t.drop(c) // the client is dead: re-dial once
	}
}

// pipe returns a connection with deadlines that carries ch's stream.
func (t *Tunnel) pipe(ch net.Conn) (net.Conn, error) {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ch.Close()
		return nil, net.ErrClosed
	}
	t.wg.Add(2)
	t.mu.Unlock()
	mine, theirs := net.Pipe()
	go func() { // server to caller
		defer t.wg.Done()
		_, _ = io.Copy(theirs, ch)
		theirs.Close() // the caller reads io.EOF; the other copy ends
	}()
	go func() { // caller to server
		defer t.wg.Done()
		_, _ = io.Copy(ch, theirs)
		ch.Close() // the server sees the end; the other copy ends
	}()
	return &channelConn{Conn: mine, local: ch.LocalAddr(), remote: ch.RemoteAddr()}, nil
}

// channelConn is the caller's end of a tunnelled connection: a net.Pipe
// end (deadlines work) with the channel's addresses.
type channelConn struct {
	net.Conn
	local, remote net.Addr
}

func (c *channelConn) LocalAddr() net.Addr  { return c.local }
func (c *channelConn) RemoteAddr() net.Addr { return c.remote }

func (t *Tunnel) get(ctx context.Context) (*ssh.Client, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, net.ErrClosed
	}
	if t.client != nil {
		return t.client, nil
	}
	ctx, cancel := context.WithTimeout(ctx, t.opts.Timeout)
	defer cancel()
	var nd net.Dialer
	conn, err := nd.DialContext(ctx, "tcp", t.addr)
	if err != nil {
		return nil, &DialError{Hop: HopBastion, Addr: t.addr, Err: err}
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	// x/crypto reports a rejected login as text only: a handshake that
	// fails after the host key was accepted is an authentication failure.
	cfg := *t.cfg
	keyOK := false
	cfg.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := t.cfg.HostKeyCallback(host, remote, key)
		keyOK = err == nil
		return err
	}
	cc, chans, reqs, err := ssh.NewClientConn(conn, t.addr, &cfg)
	if err != nil {
		conn.Close()
		switch {
		case errors.Is(err, ErrHostKey):
			return nil, fmt.Errorf("ssh %s: %w", t.addr, err)
		case keyOK && ctx.Err() == nil:
			return nil, &SSHAuthError{Addr: t.addr, Err: err}
		}
		return nil, &DialError{Hop: HopBastion, Addr: t.addr, Err: err}
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(cc, chans, reqs)
	t.client, t.stop = client, make(chan struct{})
	t.dials++
	t.wg.Add(2)
	go t.keepAlive(client, t.stop)
	go func() { defer t.wg.Done(); _ = client.Wait(); t.drop(client) }()
	return client, nil
}

// keepAlive sends keepalive requests until stop closes; a failure closes
// the client so the next dial reconnects.
func (t *Tunnel) keepAlive(c *ssh.Client, stop chan struct{}) {
	defer t.wg.Done()
	tick := time.NewTicker(t.opts.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
			done := make(chan error, 1)
			go func() { _, _, err := c.SendRequest("keepalive@openssh.com", true, nil); done <- err }()
			select {
			case err := <-done:
				if err != nil {
					t.drop(c)
					return
				}
			case <-time.After(t.opts.Timeout):
				t.drop(c)
				return
			case <-stop:
				return
			}
		}
	}
}

// drop forgets c (if it is still the current client) and closes it.
func (t *Tunnel) drop(c *ssh.Client) {
	t.mu.Lock()
	if t.client == c {
		t.client = nil
		close(t.stop)
		t.stop = nil
	}
	t.mu.Unlock()
	_ = c.Close()
}

// Close closes the SSH connection and stops the keepalives.
func (t *Tunnel) Close() error {
	t.mu.Lock()
	t.closed = true
	c := t.client
	t.mu.Unlock()
	if c != nil {
		t.drop(c)
	}
	t.wg.Wait()
	return nil
}
