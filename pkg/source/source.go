// Package source opens connections to an organization's EHR database, as
// database/sql pools for the extractors.
//
// Connections are read-only by construction where the dialect allows it: a
// PostgreSQL source session runs with default_transaction_read_only, and a
// SQL Server session declares ApplicationIntent=ReadOnly. The engine issues
// only reads at the source (DESIGN.md invariant 4).
package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"database/sql/driver"
	"errors"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	mssql "github.com/microsoft/go-mssqldb"
	_ "github.com/microsoft/go-mssqldb/integratedauth/krb5" // authenticator=krb5
	"github.com/microsoft/go-mssqldb/msdsn"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// appName is how the source's DBAs see ehrsync's sessions.
func appName(src config.Source) string {
	if src.ApplicationName != "" {
		return src.ApplicationName
	}
	return config.DefaultApplicationName
}

// Open returns a connection pool to the source and checks that it answers.
// It connects the way src.Via says (see [Dialer]); a failure to connect is
// a *ConnectError, which [Classify] sorts into a class with the fix.
// Closing the pool closes an SSH tunnel.
func Open(ctx context.Context, src config.Source) (*sql.DB, error) {
	db, err := OpenPool(src)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout(src))
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		var ce *ConnectError
		if !errors.As(err, &ce) { // e.g. the deadline passed before a connection was tried
			err = &ConnectError{Dialect: src.Dialect, Via: src.Via, Addr: net.JoinHostPort(src.Host, strconv.Itoa(src.Port)), Err: err}
		}
		return nil, err
	}
	return db, nil
}

// OpenPool returns the source's connection pool without connecting; errors
// from its connections are *ConnectError when connecting failed.
func OpenPool(src config.Source) (*sql.DB, error) {
	c, err := newConnector(src)
	if err != nil {
		return nil, err
	}
	db := sql.OpenDB(c)
	db.SetMaxOpenConns(max(src.MaxConnections, 1))
	db.SetConnMaxIdleTime(5 * time.Minute)
	return db, nil
}

// newConnector checks src's transport and files and builds its connector.
func newConnector(src config.Source) (*connector, error) {
	if err := checkTransport(src); err != nil {
		return nil, err
	}
	password, err := src.Password.Reveal()
	if err != nil {
		return nil, fmt.Errorf("source password: %w", err)
	}
	d, err := NewDialer(src)
	if err != nil {
		return nil, err
	}
	c := &connector{src: src, dialer: d}
	switch src.Dialect {
	case config.Postgres:
		cfg, err := pgx.ParseConfig("")
		if err != nil {
			c.Close()
			return nil, err
		}
		cfg.Host, cfg.Port, cfg.Database, cfg.User, cfg.Password = src.Host, uint16(src.Port), src.Database, src.User, password
		if cfg.TLSConfig, err = tlsConfig(src); err != nil {
			c.Close()
			return nil, err
		}
		cfg.Fallbacks = nil // never fall back to plain text
		cfg.ConnectTimeout = connectTimeout(src)
		cfg.DialFunc = d.DialContext
		cfg.LookupFunc = func(_ context.Context, host string) ([]string, error) { return []string{host}, nil } // resolved by the dialer's hop
		cfg.RuntimeParams["application_name"] = appName(src)
		cfg.RuntimeParams["default_transaction_read_only"] = "on"
		c.inner = stdlib.GetConnector(*cfg)
	case config.SQLServer:
		p, err := msdsn.Parse(sqlServerURL(src, ""))
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("source settings: %w", err)
		}
		p.Password = password
		if k := src.Kerberos; k != nil && k.Keytab != "" {
			// The driver reads the keytab by path at every login: it is
			// given the path of the file checked here, held open with the
			// pool, so a file renamed into the keytab's place later is
			// never read.
			f, err := secrets.OpenPrivate(k.Keytab)
			if err != nil {
				c.Close()
				return nil, fmt.Errorf("source kerberos.keytab: %w", err)
			}
			c.keytab = f
			p.Parameters["krb5-keytabfile"] = secrets.HeldPath(f)
		}
		if p.TLSConfig != nil && src.TLS.CAFile != "" && !src.TLS.TrustServerCertificate {
			roots, err := caPool(src.TLS.CAFile)
			if err != nil {
				c.Close()
				return nil, err
			}
			p.TLSConfig.RootCAs = roots
		}
		if p.TLSConfig != nil && !src.TLS.TrustServerCertificate {
			// Verify ourselves to keep the typed x509 error (see verifier).
			v := &verifier{roots: p.TLSConfig.RootCAs, serverName: p.TLSConfig.ServerName}
			p.TLSConfig.InsecureSkipVerify = true
			p.TLSConfig.VerifyConnection = v.verify
			p.TLSConfig.MinVersion = max(p.TLSConfig.MinVersion, src.TLS.Version())
			c.verifier = v
		}
		mc := mssql.NewConnectorConfig(p)
		mc.Dialer = d
		c.inner = mc
	default:
		c.Close()
		return nil, fmt.Errorf("unknown source dialect %q", src.Dialect)
	}
	return c, nil
}

// ConnectError is a failure to connect to the source: the driver's error
// and what ehrsync's dialer and certificate verifier saw (a silent close by
// the relay, the typed certificate error).
type ConnectError struct {
	Dialect config.Dialect
	Via     config.Via
	Addr    string
	Err     error
	Seen    error // nil when nothing more was seen
}

func (e *ConnectError) Error() string {
	msg := fmt.Sprintf("connect to %s source %s via %s", e.Dialect, e.Addr, e.Via)
	if e.Seen != nil {
		return msg + ": " + e.Seen.Error()
	}
	return msg + ": " + e.Err.Error()
}

// Unwrap gives both errors to errors.Is and errors.As.
func (e *ConnectError) Unwrap() []error {
	if e.Seen != nil {
		return []error{e.Seen, e.Err}
	}
	return []error{e.Err}
}

// connector wraps the driver's connector: it attaches what the dialer saw
// to connect errors, and closes the dialer (an SSH tunnel) with the pool.
type connector struct {
	src      config.Source
	dialer   *Dialer
	verifier *verifier
	inner    driver.Connector
	keytab   *os.File // the checked Kerberos keytab the driver reads, held open
}

// Connect makes one connection: dial, and for SQL Server prelogin, TLS
// and login, all within the connect timeout (and ctx). The connect timeout
// bounds only that: go-mssqldb's own "connection timeout", which it would
// re-arm before every read for the connection's whole life and so cap
// every query, is left unset (see sqlServerURL); queries are bounded by
// their contexts.
func (c *connector) Connect(ctx context.Context) (driver.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, connectTimeout(c.src))
	defer cancel()
	a := &attempt{}
	ctx = context.WithValue(ctx, attemptKey{}, a)
	stop := context.AfterFunc(ctx, a.interrupt)
	conn, err := c.inner.Connect(ctx)
	interrupted := !stop()
	if err == nil && interrupted {
		conn.Close()
		err = ctx.Err()
	}
	if err == nil {
		return conn, nil
	}
	if interrupted {
		// The server accepted and did not answer in time. Keep the
		// context's error out of the chain: this is a connect timeout
		// (transient), whoever's deadline it was.
		err = &timeoutError{err: err}
	}
	ce := &ConnectError{Dialect: c.src.Dialect, Via: c.src.Via, Addr: c.dialer.Addr(), Err: err}
	if c.verifier != nil {
		if v := c.verifier.take(); v != nil {
			ce.Seen = &TLSError{Err: v}
		}
	}
	if nt := a.notTDS.Load(); nt != nil && ce.Seen == nil {
		seen := *nt
		seen.Err = err
		ce.Seen = &seen
	}
	if sc := a.silent.Load(); sc != nil && ce.Seen == nil {
		ce.Seen = c.hungUp(ctx, sc, err)
	}
	return nil, ce
}

// hungUp explains a connection the peer closed before sending a byte. With
// tls.mode strict that is what SQL Server before 2022 does with TDS 8.0's
// TLS ClientHello, and what a relay does when it cannot reach the server:
// a second connection that sends a plain TDS PRELOGIN tells them apart (a
// server that answers it is up and does not speak TDS 8.0). Otherwise a
// relay's silent close is an *UpstreamClosedError; anything else is left
// to the driver's error (nil).
func (c *connector) hungUp(ctx context.Context, sc *silentClose, err error) error {
	if c.src.Dialect == config.SQLServer && c.src.TLS.Mode == config.TLSStrict && sc.wrote && ctx.Err() == nil {
		if version, ok := preloginProbe(ctx, c.dialer); ok {
			return &StrictUnsupportedError{Addr: c.dialer.Addr(), Version: version, Err: err}
		}
	}
	if sc.hop == HopRelay {
		return &UpstreamClosedError{Addr: sc.addr}
	}
	return nil
}

// timeoutError is a connection attempt interrupted by its deadline.
type timeoutError struct{ err error }

func (e *timeoutError) Error() string   { return "no answer before the deadline: " + e.err.Error() }
func (e *timeoutError) Timeout() bool   { return true }
func (e *timeoutError) Temporary() bool { return true }

func (c *connector) Driver() driver.Driver { return c.inner.Driver() }

// Close closes the dialer; database/sql calls it from DB.Close.
func (c *connector) Close() error {
	if c.keytab != nil {
		c.keytab.Close()
	}
	return c.dialer.Close()
}

// Warnings lists what is unsafe or deprecated in the source's settings,
// for the engine to log at start and for validate and check to show: TLS
// verification turned off, TLS turned off, settings no longer used
// (config.Source.Deprecations).
func Warnings(src config.Source) []string {
	w := src.Deprecations()
	if src.InsecureTransport {
		if _, problem := src.UnverifiedTransport(); problem != "" {
			w = append(w, "insecure_transport is true: the source on another machine is reached without verified TLS")
		} else {
			w = append(w, "insecure_transport is true but not needed (the connection is verified TLS, or on loopback): remove it")
		}
	}
	if src.TLS.TrustServerCertificate {
		w = append(w, "tls.trust_server_certificate is true: the server's certificate is not verified, so the connection can be intercepted")
	}
	if src.TLS.Mode == config.TLSDisable {
		w = append(w, "tls.mode is disable: the connection is not encrypted")
	}
	return w
}

// TransportError is a source on another machine whose connection would
// not be verified TLS, and whose configuration does not say
// insecure_transport: true (config.Source.UnverifiedTransport).
type TransportError struct {
	Key     string // the setting, relative to the source: tls.mode or tls.trust_server_certificate
	Problem string
}

func (e *TransportError) Error() string {
	return fmt.Sprintf("source %s: %s: use tls.mode: require (certificate verified), or set the source's insecure_transport: true to accept it", e.Key, e.Problem)
}

// checkTransport refuses what validation refuses, for a configuration
// built without it.
func checkTransport(src config.Source) error {
	if key, problem := src.UnverifiedTransport(); problem != "" && !src.InsecureTransport {
		return &TransportError{Key: key, Problem: problem}
	}
	return nil
}

// tlsConfig is the client TLS configuration for a PostgreSQL source: nil
// (plain text) only when the configuration says tls.mode: disable.
func tlsConfig(src config.Source) (*tls.Config, error) {
	if src.TLS.Mode == config.TLSDisable {
		return nil, nil
	}
	c := &tls.Config{ServerName: src.Host, MinVersion: src.TLS.Version()}
	if src.TLS.ServerName != "" {
		c.ServerName = src.TLS.ServerName
	}
	if src.TLS.TrustServerCertificate {
		c.InsecureSkipVerify = true // explicit in the configuration, and warned about by check
	}
	if src.TLS.CAFile != "" {
		roots, err := caPool(src.TLS.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = roots
	}
	return c, nil
}

// caPool reads tls.ca_file: a PEM bundle (or one DER certificate), read
// from the file checked (secrets.ReadTrusted): one that group or others
// may write is refused, since whoever writes it chooses which servers
// ehrsync trusts.
func caPool(path string) (*x509.CertPool, error) {
	b, err := secrets.ReadTrusted(path)
	if err != nil {
		return nil, fmt.Errorf("source tls.ca_file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		cert, err := x509.ParseCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("source tls.ca_file %s: no PEM certificates in it", path)
		}
		pool.AddCert(cert)
	}
	return pool, nil
}

func connectTimeout(src config.Source) time.Duration {
	if src.ConnectTimeout > 0 {
		return src.ConnectTimeout
	}
	return 30 * time.Second
}

// serverSPN is the Kerberos service principal name of the SQL Server
// service: source.server_spn, else MSSQLSvc/<tls.server_name or host>:<port>.
// go-mssqldb derives none for a HostDialer such as ehrsync's Dialer (it
// skips SPN generation when the dialer resolves names), so the krb5
// authenticator would ask the KDC for a ticket to "".
func serverSPN(src config.Source) string {
	if src.ServerSPN != "" {
		return src.ServerSPN
	}
	return config.DefaultServerSPN(src)
}

// sqlServerURL builds go-mssqldb's connection URL: TLS on and verified unless
// the configuration explicitly says otherwise.
func sqlServerURL(src config.Source, password string) string {
	q := url.Values{}
	q.Set("database", src.Database)
	q.Set("app name", appName(src))
	q.Set("ApplicationIntent", "ReadOnly")
	// No "connection timeout": go-mssqldb would set it as a deadline
	// before every read and write for the connection's life, capping every
	// query at the connect timeout (and an SSH channel refuses deadlines).
	// connector.Connect bounds the connect; contexts bound queries. The
	// driver's dial timeout (15s by default) must not cut a longer
	// connect_timeout short.
	q.Set("dial timeout", strconv.Itoa(int(max(connectTimeout(src), time.Second).Round(time.Second)/time.Second)))
	switch src.TLS.Mode {
	case config.TLSDisable:
		q.Set("encrypt", "disable")
	case config.TLSStrict:
		q.Set("encrypt", "strict") // TDS 8.0: TLS before the prelogin
	default:
		q.Set("encrypt", "true")
	}
	if src.TLS.TrustServerCertificate {
		q.Set("TrustServerCertificate", "true")
	}
	if src.TLS.ServerName != "" {
		q.Set("hostNameInCertificate", src.TLS.ServerName)
	}
	// tls.ca_file is not given to the driver, which would read it by path:
	// OpenPool reads it once, checked (caPool), and sets the roots.
	if k := src.Kerberos; k != nil {
		q.Set("authenticator", "krb5")
		q.Set("ServerSPN", serverSPN(src))
		q.Set("krb5-realm", k.Realm)
		q.Set("krb5-configfile", k.ConfigFile)
		if k.Keytab != "" {
			q.Set("krb5-keytabfile", k.Keytab)
		}
		if k.CredCache != "" {
			q.Set("krb5-credcachefile", k.CredCache)
		}
	}
	user := url.User(src.User)
	if password != "" {
		user = url.UserPassword(src.User, password)
	}
	u := url.URL{Scheme: "sqlserver", User: user,
		Host: net.JoinHostPort(src.Host, strconv.Itoa(src.Port)), RawQuery: q.Encode()}
	return u.String()
}
