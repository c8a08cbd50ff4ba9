package sourcetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHServer is an in-process SSH server on 127.0.0.1 that authenticates one
// user by password and forwards direct-tcpip channels.
type SSHServer struct {
	Addr    string
	HostKey ssh.Signer
	mu      sync.Mutex
	conns   []net.Conn
	logins  atomic.Int64
}

// StartSSH starts an SSH server for user with password; it stops when the
// test ends.
func StartSSH(t testing.TB, user, password string) *SSHServer {
	t.Helper()
	s := &SSHServer{HostKey: NewSigner(t)}
	cfg := &ssh.ServerConfig{PasswordCallback: func(m ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		if m.User() == user && subtle.ConstantTimeCompare(pw, []byte(password)) == 1 {
			return nil, nil
		}
		return nil, errors.New("denied")
	}}
	cfg.AddHostKey(s.HostKey)
	s.Addr = serve(t, func(c net.Conn) {
		s.mu.Lock()
		s.conns = append(s.conns, c)
		s.mu.Unlock()
		s.handle(c, cfg)
	})
	return s
}

// NewSigner returns a fresh ed25519 host key.
func NewSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Host and Port split Addr.
func (s *SSHServer) Host() string { h, _, _ := net.SplitHostPort(s.Addr); return h }

// Port is Addr's port.
func (s *SSHServer) Port() int {
	_, p, _ := net.SplitHostPort(s.Addr)
	n, _ := strconv.Atoi(p)
	return n
}

// Fingerprint is the host key's SHA256 fingerprint, as ssh-keygen -l prints.
func (s *SSHServer) Fingerprint() string { return ssh.FingerprintSHA256(s.HostKey.PublicKey()) }

// KnownHosts writes a known_hosts file with the server's key and returns
// its path.
func (s *SSHServer) KnownHosts(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey.PublicKey())
	if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Logins counts successful SSH handshakes.
func (s *SSHServer) Logins() int { return int(s.logins.Load()) }

// DropAll closes every connection the server has accepted, as a network
// failure would.
func (s *SSHServer) DropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

type directTCPIP struct {
	Host     string
	Port     uint32
	OrigHost string
	OrigPort uint32
}

func (s *SSHServer) handle(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	defer sc.Close()
	s.logins.Add(1)
	go ssh.DiscardRequests(reqs)
	var wg sync.WaitGroup
	defer wg.Wait()
	for nc := range chans {
		if nc.ChannelType() != "direct-tcpip" {
			_ = nc.Reject(ssh.UnknownChannelType, "only direct-tcpip")
			continue
		}
		var d directTCPIP
		if err := ssh.Unmarshal(nc.ExtraData(), &d); err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "bad request")
			continue
		}
		target, err := net.Dial("tcp", net.JoinHostPort(d.Host, strconv.Itoa(int(d.Port))))
		if err != nil {
			_ = nc.Reject(ssh.ConnectionFailed, "connect failed")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			target.Close()
			continue
		}
		go ssh.DiscardRequests(creqs)
		wg.Add(2)
		go func() { defer wg.Done(); _, _ = io.Copy(ch, target); _ = ch.CloseWrite() }()
		go func() {
			defer wg.Done()
			_, _ = io.Copy(target, ch)
			target.Close()
			ch.Close()
		}()
		// Close the forwarded stream when the SSH connection goes.
		go func() { _ = sc.Wait(); target.Close(); ch.Close() }()
	}
}

// WriteKnownHosts writes a known_hosts file saying addr has key.
func WriteKnownHosts(t testing.TB, addr string, key ssh.PublicKey) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, key)
	if err := os.WriteFile(p, []byte(line+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
