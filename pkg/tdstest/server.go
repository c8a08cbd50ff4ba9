package tdstest

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
)

// Encryption is the server's encryption setting, which decides its answer
// to the client's PRELOGIN ENCRYPTION option (MS-TDS 2.2.6.5).
type Encryption int

const (
	// EncryptOff is a default SQL Server installation: encryption is
	// available but not forced. A client that asks for it (encrypt=true)
	// gets the whole session encrypted; a client that does not
	// (encrypt=false) gets only its LOGIN7 packet encrypted; a client that
	// cannot (encrypt=disable) gets none. TDS 8.0 strict clients are
	// accepted unless Config.NoStrict.
	EncryptOff Encryption = iota
	// EncryptOn is "Force Encryption": every session is encrypted. As the
	// MS-TDS table has it, a client that asks for encryption is answered
	// ENCRYPT_ON, one that does not ENCRYPT_REQ (and encrypts), and one
	// that cannot ENCRYPT_REQ, and is hung up on.
	EncryptOn
	// EncryptRequired is like EncryptOn but answers ENCRYPT_REQ to every
	// client.
	EncryptRequired
	// EncryptStrict is "Force Strict Encryption" (SQL Server 2022): only
	// TDS 8.0 connections, TLS first with ALPN "tds/8.0", are accepted; a
	// plain PRELOGIN is answered with a TLS alert and hung up on.
	EncryptStrict
	// EncryptNotSupported is a server without a certificate: it answers
	// ENCRYPT_NOT_SUP, so a client that requires encryption fails.
	EncryptNotSupported
)

// Version is the product version the server reports in PRELOGIN and
// LOGINACK.
type Version struct {
	Major, Minor uint8
	Build        uint16
}

// Product versions of the SQL Server releases (RTM builds).
var (
	SQLServer2016 = Version{13, 0, 1601}
	SQLServer2017 = Version{14, 0, 1000}
	SQLServer2019 = Version{15, 0, 2000}
	SQLServer2022 = Version{16, 0, 1000}
)

func (v Version) String() string {
	return strconv.Itoa(int(v.Major)) + "." + strconv.Itoa(int(v.Minor)) + "." + strconv.Itoa(int(v.Build))
}

// Route is where a routing answer sends the client: an Availability Group
// listener's read-only routing to a secondary replica.
type Route struct {
	Host string
	Port int
}

// Config configures a Server.
type Config struct {
	// Handler answers statements. Nil answers every statement with an
	// empty result (a DONE).
	Handler Handler
	// Users maps logins to passwords (SQL authentication). Nil accepts any
	// login. A wrong password or unknown login fails with error 18456, as
	// SQL Server does, and the connection is closed. Logins compare
	// without regard to case, passwords exactly.
	Users map[string]string
	// Databases are the databases a login may open (compared without
	// regard to case). Nil accepts any. An unknown database fails the login
	// with error 4060 then 18456. A login that names none gets the first
	// of Databases, or "master".
	Databases []string
	// Encryption is the server's encryption setting (default EncryptOff).
	Encryption Encryption
	// Certificate is the server's TLS certificate. Nil generates a
	// self-signed one for "localhost" and 127.0.0.1 once per server; see
	// Server.CertPEM.
	Certificate *tls.Certificate
	// Version is the product version reported (default SQLServer2022).
	Version Version
	// Collation is the server's and databases' collation (default
	// DefaultCollation, SQL_Latin1_General_CP1_CI_AS).
	Collation *Collation
	// Route, when it returns non-nil for a session after login, makes the
	// server send the routing ENVCHANGE (type 20) with the LOGINACK and
	// close the connection, as an Availability Group listener with
	// read-only routing does.
	Route func(*Session) *Route
	// NoStrict makes the server a pre-2022 one: a TLS ClientHello as a
	// connection's first bytes (TDS 8.0 strict) makes it hang up, as SQL
	// Server 2019 does.
	NoStrict bool
	// ServerName is the name ERROR and INFO messages carry (default
	// "TDSTEST").
	ServerName string
}

// Server is a TDS test server listening on loopback.
type Server struct {
	cfg       Config
	coll      Collation
	t         testing.TB
	ln        net.Listener
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	tlsCert   tls.Certificate
	certPEM   []byte
	logins    atomic.Int64
	spid      atomic.Int32
	tranID    atomic.Uint64
	closeOnce sync.Once

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	faults []*Fault
	errs   []error
}

// Start starts a server on 127.0.0.1 on a free port. The test's cleanup
// closes it, its connections, and waits for their goroutines.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s, err := newServer(t, cfg)
	if err != nil {
		t.Fatalf("tdstest: %v", err)
	}
	t.Cleanup(s.Close)
	return s
}

func newServer(t testing.TB, cfg Config) (*Server, error) {
	if cfg.Version == (Version{}) {
		cfg.Version = SQLServer2022
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "TDSTEST"
	}
	s := &Server{cfg: cfg, t: t, conns: map[net.Conn]struct{}{}}
	s.coll = DefaultCollation
	if cfg.Collation != nil {
		s.coll = cfg.Collation.normalize()
	}
	if _, err := lookupCodePage(s.coll.CodePage); err != nil {
		return nil, err
	}
	if cfg.Certificate != nil {
		s.tlsCert = *cfg.Certificate
		for _, der := range s.tlsCert.Certificate {
			s.certPEM = append(s.certPEM, pemCert(der)...)
		}
	} else {
		cert, pemBytes, err := selfSigned()
		if err != nil {
			return nil, err
		}
		s.tlsCert, s.certPEM = cert, pemBytes
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s.ln = ln
	s.spid.Store(50)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *Server) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() {
				c.Close()
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
			}()
			s.serve(c)
		}()
	}
}

// Close stops the server: it closes the listener and every connection,
// releases stalls, and waits for the connections' goroutines (a Handler
// that ignores its ctx delays it).
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.cancel()
		s.ln.Close()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
}

// Addr is the server's address, "127.0.0.1:port".
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Host is "127.0.0.1".
func (s *Server) Host() string { return s.ln.Addr().(*net.TCPAddr).IP.String() }

// Port is the server's port.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

// URL is a go-mssqldb connection URL for the server: the login, and query
// options as name, value pairs ("database", "clinic", "encrypt", "true").
// encrypt is "disable" unless given.
func (s *Server) URL(user, password string, options ...string) string {
	q := url.Values{"encrypt": {"disable"}}
	for i := 0; i+1 < len(options); i += 2 {
		q.Set(options[i], options[i+1])
	}
	u := url.URL{Scheme: "sqlserver", User: url.UserPassword(user, password), Host: s.Addr(), RawQuery: q.Encode()}
	return u.String()
}

// CertPEM is the PEM of the server's certificate, for the client's
// "certificate" option (its CA file).
func (s *Server) CertPEM() []byte { return append([]byte(nil), s.certPEM...) }

// Certificate is the server's TLS certificate, for another server that is
// to present the same one (an Availability Group's replicas).
func (s *Server) Certificate() tls.Certificate { return s.tlsCert }

// Logins is the number of LOGIN7 packets received so far.
func (s *Server) Logins() int { return int(s.logins.Load()) }

// Errors are the errors the Handler returned that are not *Error (each
// also sent to the client as error 50000), and the values a Handler
// returned that do not match their column's type.
func (s *Server) Errors() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *Server) addError(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
	s.t.Logf("tdstest: handler error: %v", err)
}

// Inject queues a fault; see Fault.
func (s *Server) Inject(f *Fault) {
	s.mu.Lock()
	s.faults = append(s.faults, f)
	s.mu.Unlock()
}

// takeConnFault removes and returns the first connection fault.
func (s *Server) takeConnFault() *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.connLevel() {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
			return f
		}
	}
	return nil
}

// takeStmtFaults removes and returns the statement faults that match req,
// at most one of each kind.
func (s *Server) takeStmtFaults(req *Request) stmtFaults {
	var sf stmtFaults
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := s.faults[:0]
	for _, f := range s.faults {
		if f.connLevel() || (f.match != nil && !f.match(req)) {
			kept = append(kept, f)
			continue
		}
		var slot **Fault
		switch f.kind {
		case faultDelayFirstRow:
			slot = &sf.delay
		case faultStallAfter:
			slot = &sf.stall
		case faultDrop:
			slot = &sf.drop
		case faultDropAfter:
			slot = &sf.dropAfter
		}
		if *slot != nil {
			kept = append(kept, f)
			continue
		}
		*slot = f
	}
	for i := len(kept); i < len(s.faults); i++ {
		s.faults[i] = nil
	}
	s.faults = kept
	return sf
}

var errClosed = errors.New("tdstest: connection closed")
