package source

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"
	mssql "github.com/microsoft/go-mssqldb"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
)

// Class is a kind of connection or query failure, for people: a stable
// Code (for metrics labels, alerts and JSON), a one-line Cause and the Fix
// from the operations guide (docs/operations-connect.md). Cause and Fix are
// fixed texts: they never quote a driver message, a secret or a row value.
type Class struct {
	Code  string
	Cause string
	Fix   string
	// Transient failures are worth retrying with backoff; the others need a
	// person (a password, a grant, a certificate).
	Transient bool
	// Config failures are ehrsync's own configuration's (a secret that
	// cannot be resolved): the source was not tried.
	Config bool
}

// The classes. Their codes are stable: dashboards and alerts use them.
var (
	ClassConnectTimeout = &Class{Code: "connect_timeout", Transient: true,
		Cause: "the connection was not established within the connect timeout",
		Fix:   fmt.Sprintf(connectTimeoutFix, 1433)}
	ClassRelayUnreachable = &Class{Code: "relay_unreachable", Transient: true,
		Cause: "the relay endpoint refused or did not answer the connection",
		Fix:   "on the relay VM check the ailevate-tunnel and ailevate-proxy services (systemctl status ailevate-tunnel ailevate-proxy), and that the firewall allows 443 outbound from the relay"}
	ClassRelayUpstream = &Class{Code: "relay_upstream_unreachable", Transient: true,
		Cause: fmt.Sprintf(relayUpstreamCause, "SQL Server"),
		Fix:   fmt.Sprintf(relayUpstreamFix, "SQLHOST", 1433, "SQL Server", 1433)}
	ClassServerUnreachable = &Class{Code: "server_unreachable", Transient: true,
		Cause: "the database server refused the connection or is not reachable",
		Fix:   fmt.Sprintf(serverUnreachableFix, 1433)}
	ClassBastionUnreachable = &Class{Code: "ssh_unreachable", Transient: true,
		Cause: "the SSH bastion refused or did not answer the connection",
		Fix:   "check that the bastion is running sshd on the configured port and that the firewall allows ehrsync's address (nc -vz BASTION 22)"}
	ClassSSHHostKey = &Class{Code: "ssh_host_key_mismatch",
		Cause: "the SSH server's host key does not match known_hosts or the pinned fingerprint",
		Fix:   "verify the bastion's key out of band (ssh-keyscan HOST | ssh-keygen -lf -) and update ssh.known_hosts or ssh.host_key_fingerprint; never skip the check"}
	ClassSSHAuth = &Class{Code: "ssh_auth_failed",
		Cause: "the SSH server rejected the user's key or password",
		Fix:   "check ssh.user, and that the public key is in the bastion's authorized_keys (or the password is current)"}
	ClassDNS = &Class{Code: "dns_failure", Transient: true,
		Cause: "the host name could not be resolved",
		Fix:   "check the host name in the configuration and this machine's DNS (dig HOST); names ending in .local resolve only inside the customer network, behind the relay or bastion"}
	ClassTLSExpired = &Class{Code: "tls_expired",
		Cause: "the server's TLS certificate is expired or not yet valid",
		Fix:   "renew the SQL Server certificate; if it looks valid, check the clock of this machine and the server (NTP)"}
	ClassTLSWrongHost = &Class{Code: "tls_wrong_host",
		Cause: "the server's TLS certificate is for a different host name",
		Fix:   "set tls.server_name to the name in the certificate (usual behind a relay or tunnel), or reissue the certificate for the name used"}
	ClassTLSUnknownCA = &Class{Code: "tls_unknown_ca",
		Cause: "the server's TLS certificate is signed by an authority this machine does not trust",
		Fix:   "set tls.ca_file to the customer's CA bundle (PEM); trust_server_certificate: true turns verification off and is a last resort"}
	ClassTLS = &Class{Code: "tls_failure",
		Cause: "the TLS handshake with the server failed",
		Fix:   "check tls.mode (strict needs SQL Server 2022), tls.min_version against the server's TLS support, and that the port speaks the expected protocol"}
	ClassLoginFailed = &Class{Code: "login_failed",
		Cause: "the server rejected the login (wrong user or password, disabled or locked login, expired password)",
		Fix:   "check source.user and source.password; on SQL Server check that SQL authentication is enabled and the login is enabled and unlocked (the server's error log names the reason for 18456)"}
	ClassDatabase = &Class{Code: "database_unavailable",
		Cause: "the database does not exist or the login may not open it",
		Fix:   "check source.database; create a user for the login in that database (CREATE USER ... FOR LOGIN ...)"}
	ClassPermission = &Class{Code: "permission_missing",
		Cause: "the login lacks a permission the query needs",
		Fix:   "run the GRANT shown by ehrsync check (see docs/operations-connect.md for the least-privilege script per strategy)"}
	ClassCDCDisabled = &Class{Code: "cdc_not_enabled",
		Cause: "Change Data Capture is not enabled on the database or table",
		Fix:   "EXEC sys.sp_cdc_enable_db; then sys.sp_cdc_enable_table for the table, or use another strategy"}
	ClassCTDisabled = &Class{Code: "ct_not_enabled",
		Cause: "Change Tracking is not enabled on the database or table",
		Fix:   "ALTER DATABASE ... SET CHANGE_TRACKING = ON; ALTER TABLE ... ENABLE CHANGE_TRACKING, or use another strategy"}
	ClassCaptureAgent = &Class{Code: "capture_agent_stopped",
		Cause: "the CDC capture job is not running: new changes are not captured",
		Fix:   "start SQL Server Agent and the cdc.<db>_capture job (EXEC sys.sp_cdc_start_job); check sys.dm_cdc_errors"}
	ClassSecret = &Class{Code: "secret_unavailable", Config: true,
		Cause: "a secret in the configuration could not be resolved",
		Fix:   "set the environment variable or file the secret refers to; for enc: values set EHRSYNC_SECRETS_KEY or EHRSYNC_SECRETS_KEY_FILE to the key it was encrypted with"}
	ClassSecretFileOpen = &Class{Code: "secret_file_open", Config: true,
		Cause: "a secret or key file may be read or written by group or others, so ehrsync refuses it",
		Fix:   "chmod 600 the file named in the error (owned by the user ehrsync runs as), as for an SSH private key"}
	ClassNotSQLServer = &Class{Code: "not_sql_server",
		Cause: "the endpoint answered, but not as SQL Server does: it is another service (a wrong port, or a relay or tunnel forwarding elsewhere)",
		Fix:   "check source.port (SQL Server listens on 1433 unless configured otherwise) and where the relay or tunnel forwards: from the relay VM or bastion run nc -vz SQLHOST 1433 against SQL Server's own address; the error detail says what answered"}
	ClassTLSStrictUnsupported = &Class{Code: "tls_strict_unsupported",
		Cause: "tls.mode is strict (TDS 8.0, TLS before any TDS) and the server does not speak it: SQL Server before 2022 hangs up on the TLS handshake",
		Fix:   "set tls.mode: require (TLS inside TDS, the certificate is still verified); strict needs SQL Server 2022 or later"}
	ClassReadOnlyRouting = &Class{Code: "read_only_routing",
		Cause: "the server is an availability group listener that routed ehrsync's read-only login (ApplicationIntent=ReadOnly) to a replica that cannot be reached through the relay or SSH tunnel, or routed it more than once",
		Fix:   "point the relay (via: relay) or source.host (via: ssh) at a replica's own address instead of the listener: the readable secondary named in the error, or the primary; with via: direct ehrsync follows the route itself"}
	ClassAGNotReadable = &Class{Code: "ag_database_not_readable",
		Cause: "the database is an availability group secondary that does not allow reads now: the replica is not enabled for read access, or data movement is suspended (SQL Server 976)",
		Fix:   "on the primary enable reads on that replica (ALTER AVAILABILITY GROUP ... MODIFY REPLICA ON '...' WITH (SECONDARY_ROLE (ALLOW_CONNECTIONS = READ_ONLY))) or resume data movement (ALTER DATABASE ... SET HADR RESUME); or point ehrsync at the primary or a readable secondary"}
	ClassAGIntent = &Class{Code: "ag_intent_refused",
		Cause: "the availability group replica refused the connection's application intent: it accepts only read-intent connections (978), or, as a primary, only read-write ones (979)",
		Fix:   "ehrsync always declares ApplicationIntent=ReadOnly: connect to a readable secondary, or have the DBA allow read-intent connections on the primary (PRIMARY_ROLE (ALLOW_CONNECTIONS = ALL)); a relay or proxy in between must pass the login through unchanged"}
	ClassAGResolving = &Class{Code: "ag_role_resolving", Transient: true,
		Cause: "the availability group database replica is in neither the PRIMARY nor the SECONDARY role (a failover is in progress, or no readable secondary is online)",
		Fix:   "none needed while a failover completes: the run is retried with backoff; if it persists, check the availability group's health (sys.dm_hadr_availability_replica_states) with the DBA"}
	ClassQueryTimeout = &Class{Code: "query_timeout", Transient: true,
		Cause: "a query did not finish within the query timeout",
		Fix:   "raise query_timeout, or check the server's load and blocking (sp_who2)"}
	ClassTransient = &Class{Code: "transient", Transient: true,
		Cause: "a transient failure (deadlock victim, connection reset, server restart)",
		Fix:   "none needed: the run is retried with backoff; if it persists, check the server's and relay's logs"}
	ClassUnknown = &Class{Code: "unclassified",
		Cause: "an unexpected error",
		Fix:   "see the error detail and the logs"}
)

// Classes lists every class, for documentation and tests.
func Classes() []*Class {
	return []*Class{ClassConnectTimeout, ClassRelayUnreachable, ClassRelayUpstream, ClassServerUnreachable,
		ClassBastionUnreachable, ClassSSHHostKey, ClassSSHAuth, ClassDNS, ClassTLSExpired, ClassTLSWrongHost,
		ClassTLSUnknownCA, ClassTLS, ClassTLSStrictUnsupported, ClassNotSQLServer, ClassReadOnlyRouting,
		ClassLoginFailed, ClassDatabase, ClassPermission, ClassAGNotReadable, ClassAGIntent, ClassAGResolving,
		ClassCDCDisabled, ClassCTDisabled, ClassCaptureAgent, ClassSecret, ClassSecretFileOpen, ClassQueryTimeout,
		ClassTransient, ClassUnknown}
}

// Hop names the connection leg a [DialError] is about.
type Hop string

// The hops.
const (
	HopRelay   Hop = "relay"   // the relay's private endpoint
	HopBastion Hop = "bastion" // the SSH server
	HopTunnel  Hop = "tunnel"  // the database server, opened by the bastion
	HopServer  Hop = "server"  // the database server, directly
	HopProbe   Hop = "probe"   // the relay's health probe
)

// DialError is a failure to open a connection on one hop.
type DialError struct {
	Hop  Hop
	Addr string
	Err  error
}

func (e *DialError) Error() string {
	return "dial " + string(e.Hop) + " " + e.Addr + ": " + e.Err.Error()
}
func (e *DialError) Unwrap() error { return e.Err }

// UpstreamClosedError says the relay accepted the connection and closed it
// before the server said anything: the relay could not reach the server.
type UpstreamClosedError struct{ Addr string }

func (e *UpstreamClosedError) Error() string {
	return "relay " + e.Addr + " closed the connection before the server answered"
}

// NotTDSError is an endpoint that answered a SQL Server connection with
// something SQL Server never sends first: an HTTP response, a TLS record
// where TDS was expected, or bytes that are no TDS packet. Err is the
// driver's error for the same connection.
type NotTDSError struct {
	Addr   string
	Answer string // what answered: "an HTTP response", "TLS", "bytes 48 54 54 50"
	Err    error
}

func (e *NotTDSError) Error() string {
	msg := e.Addr + " is not SQL Server: it answered with " + e.Answer
	if e.Err != nil {
		msg += " (driver: " + e.Err.Error() + ")"
	}
	return msg
}

// Unwrap gives the driver's error.
func (e *NotTDSError) Unwrap() error { return e.Err }

// StrictUnsupportedError is a server that hung up on TDS 8.0's TLS
// handshake (tls.mode: strict) and then answered a TDS 7.4 PRELOGIN: a
// SQL Server without TDS 8.0 (before 2022). Version is the one its
// PRELOGIN answer gave ("15.0.4153"), "" when it gave none.
type StrictUnsupportedError struct {
	Addr    string
	Version string
	Err     error // the driver's error for the strict attempt
}

func (e *StrictUnsupportedError) Error() string {
	msg := "the server at " + e.Addr + " hung up on the TDS 8.0 (tls.mode: strict) handshake and answers only TDS 7.x"
	if e.Version != "" {
		msg += " (SQL Server " + e.Version + ")"
	}
	msg += ": set tls.mode: require"
	if e.Err != nil {
		msg += " (driver: " + e.Err.Error() + ")"
	}
	return msg
}

// Unwrap gives the driver's error.
func (e *StrictUnsupportedError) Unwrap() error { return e.Err }

// RoutingError is a login that SQL Server routed to another address
// (read-only routing of an availability group listener) where ehrsync
// does not follow it: through a relay or an SSH tunnel, which reach one
// configured address, or a second route after one was followed.
type RoutingError struct {
	Via    config.Via
	Routed string // the host:port the server routed to
	Again  bool   // routed again after a route was followed
}

func (e *RoutingError) Error() string {
	if e.Again {
		return "the server routed the login again, to " + e.Routed + ", after ehrsync followed one route: SQL Server routes a login once; check the availability group's read-only routing lists"
	}
	fix := "point the relay at that replica's own address, or at the primary's, instead of the listener"
	if e.Via == config.ViaSSH {
		fix = "set source.host to that replica's own address, or the primary's, instead of the listener"
	}
	return "the server (an availability group listener) routed the read-only login to " + e.Routed +
		", which ehrsync does not follow via " + string(e.Via) + ": " + fix
}

// ErrHostKey is a host key that does not match known_hosts or the pinned
// fingerprint.
var ErrHostKey = errors.New("ssh host key not trusted")

// SSHAuthError is an SSH server that accepted ehrsync's host key check
// but not its login.
type SSHAuthError struct {
	Addr string
	Err  error
}

func (e *SSHAuthError) Error() string { return "ssh " + e.Addr + ": login rejected: " + e.Err.Error() }
func (e *SSHAuthError) Unwrap() error { return e.Err }

// ErrCaptureAgentStopped is a CDC capture job that is not running.
var ErrCaptureAgentStopped = errors.New("cdc capture job not running")

// PermissionError is a permission the planned strategy needs and the login
// lacks, with the statement that grants it.
type PermissionError struct {
	Permission string // "SELECT ON dbo.x", "VIEW CHANGE TRACKING ON dbo.x"
	Grant      string // the GRANT statement
}

func (e *PermissionError) Error() string { return "missing permission " + e.Permission }

// SQL Server error numbers.
const (
	msLoginFailed        = 18456
	msLoginUntrusted     = 18452
	msLoginLocked        = 18486
	msPasswordExpired    = 18487
	msPasswordMustChange = 18488
	msCannotOpenDB       = 4060
	msCannotOpenDefault  = 4064
	msNoDBAccess         = 916
	msSelectDenied       = 229
	msColumnDenied       = 230
	msNoPermission       = 297
	msNoPermInDB         = 262
	msViewDenied         = 300
	msDeadlock           = 1205
	msLockTimeout        = 1222
	msSnapshotDDL        = 3961 // snapshot transaction: the object was altered by DDL since it began
	msSnapshotNotAllowed = 3952 // snapshot transaction: ALLOW_SNAPSHOT_ISOLATION is (now) off
	msAGNotReadable      = 976  // AG secondary not enabled for reads, or data movement suspended
	msAGReadIntentOnly   = 978  // AG secondary accepts only ApplicationIntent=ReadOnly
	msAGNoReadIntent     = 979  // AG primary does not allow read-only connections
	msAGNoReadableOnline = 982  // no online secondary replica is enabled for read-only access
	msAGRoleResolving    = 983  // AG database replica in neither PRIMARY nor SECONDARY role
	msCTNotOnTable       = 4998
	msCTNotOnTable2      = 22105 // "Change tracking is not enabled on table"
	msCDCNotOnDB         = 22901
	msCDCNotOnTable      = 22985 // "Change data capture has not been enabled for source table"
	msCDCNeedsSysadmin   = 22902 // "Caller is not authorized ... Sysadmin privileges are required"
	msCDCNeedsDBOwner    = 22904
	msAzureBusy          = 40501
	msAzureUnavailable   = 40613
	msAzureReconfig      = 40197
)

var msClasses = map[int32]*Class{
	msLoginFailed: ClassLoginFailed, msLoginUntrusted: ClassLoginFailed, msLoginLocked: ClassLoginFailed,
	msPasswordExpired: ClassLoginFailed, msPasswordMustChange: ClassLoginFailed,
	msCannotOpenDB: ClassDatabase, msCannotOpenDefault: ClassDatabase, msNoDBAccess: ClassDatabase,
	msSelectDenied: ClassPermission, msColumnDenied: ClassPermission, msNoPermission: ClassPermission,
	msNoPermInDB: ClassPermission, msViewDenied: ClassPermission,
	msDeadlock: ClassTransient, msLockTimeout: ClassTransient,
	msSnapshotDDL: ClassTransient, msSnapshotNotAllowed: ClassTransient,
	msAGNotReadable: ClassAGNotReadable, msAGReadIntentOnly: ClassAGIntent, msAGNoReadIntent: ClassAGIntent,
	msAGNoReadableOnline: ClassAGResolving, msAGRoleResolving: ClassAGResolving,
	msAzureBusy: ClassTransient, msAzureUnavailable: ClassTransient, msAzureReconfig: ClassTransient,
	msCTNotOnTable: ClassCTDisabled, msCTNotOnTable2: ClassCTDisabled,
	msCDCNotOnDB: ClassCDCDisabled, msCDCNotOnTable: ClassCDCDisabled,
	msCDCNeedsSysadmin: ClassPermission, msCDCNeedsDBOwner: ClassPermission,
}

var pgClasses = map[string]*Class{
	"28P01": ClassLoginFailed, "28000": ClassLoginFailed,
	"3D000": ClassDatabase,
	"42501": ClassPermission,
	"40001": ClassTransient, "40P01": ClassTransient, "57P01": ClassTransient, "57P02": ClassTransient,
	"57P03": ClassTransient, "53300": ClassTransient,
	"55P03": ClassTransient, // lock_not_available: a lock_timeout (SQL Server's 1222 is transient too)
	"57014": ClassQueryTimeout,
}

// Classify returns err's class: nil for nil, ClassUnknown when nothing
// matches. It looks at error types and numbers (SQL Server error numbers,
// SQLSTATEs, x509 and net error types), never at error text.
func Classify(err error) *Class {
	if err == nil {
		return nil
	}
	if c := classifyDatabase(err); c != nil {
		return c
	}
	switch {
	case errors.Is(err, config.ErrSecretUnset), errors.Is(err, config.ErrSecretEmpty),
		errors.Is(err, config.ErrSecretUnsupported), errors.Is(err, secrets.ErrNoKey), errors.Is(err, secrets.ErrDecrypt):
		return ClassSecret
	case errors.Is(err, ErrHostKey):
		return ClassSSHHostKey
	case errors.Is(err, ErrCaptureAgentStopped):
		return ClassCaptureAgent
	}
	var perm *PermissionError
	if errors.As(err, &perm) {
		return ClassPermission
	}
	var notTDS *NotTDSError
	if errors.As(err, &notTDS) {
		return ClassNotSQLServer
	}
	var strict *StrictUnsupportedError
	if errors.As(err, &strict) {
		return ClassTLSStrictUnsupported
	}
	var routed *RoutingError
	if errors.As(err, &routed) {
		return ClassReadOnlyRouting
	}
	var open *secrets.PermissionError
	if errors.As(err, &open) {
		return ClassSecretFileOpen
	}
	var sshAuth *SSHAuthError
	if errors.As(err, &sshAuth) {
		return ClassSSHAuth
	}
	if c := classifyTLS(err); c != nil {
		return c
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return ClassDNS
	}
	var up *UpstreamClosedError
	if errors.As(err, &up) {
		return ClassRelayUpstream
	}
	var dial *DialError
	if errors.As(err, &dial) {
		switch dial.Hop {
		case HopRelay, HopProbe:
			return ClassRelayUnreachable
		case HopBastion:
			return ClassBastionUnreachable
		case HopTunnel:
			return ClassServerUnreachable
		}
		if isTimeout(dial.Err) {
			return ClassConnectTimeout
		}
		return ClassServerUnreachable
	}
	var ce *ConnectError
	connecting := errors.As(err, &ce)
	if isTimeout(err) {
		if connecting {
			return ClassConnectTimeout
		}
		return ClassQueryTimeout
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNABORTED) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, driver.ErrBadConn) ||
		errors.Is(err, net.ErrClosed) {
		return ClassTransient
	}
	var pgc *pgconn.ConnectError
	if errors.As(err, &pgc) && pgconn.SafeToRetry(err) {
		return ClassTransient
	}
	return ClassUnknown
}

// IsTransient reports whether err is worth retrying with backoff.
func IsTransient(err error) bool {
	c := Classify(err)
	return c != nil && c.Transient
}

// IsConfig reports whether err is a failure of ehrsync's own configuration
// (a secret that cannot be resolved), found before the source was tried.
func IsConfig(err error) bool {
	c := Classify(err)
	return c != nil && c.Config
}

func classifyDatabase(err error) *Class {
	var ms mssql.Error
	if errors.As(err, &ms) {
		all := ms.All
		if len(all) == 0 {
			all = []mssql.Error{ms}
		}
		for _, e := range all {
			if c, ok := msClasses[e.Number]; ok {
				return c
			}
		}
		return nil
	}
	var pg *pgconn.PgError
	if errors.As(err, &pg) {
		if c, ok := pgClasses[pg.Code]; ok {
			return c
		}
		if len(pg.Code) == 2+3 && pg.Code[:2] == "08" { // connection exception
			return ClassTransient
		}
	}
	return nil
}

func classifyTLS(err error) *Class {
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) {
		if inv.Reason == x509.Expired {
			return ClassTLSExpired
		}
		return ClassTLS
	}
	var host x509.HostnameError
	if errors.As(err, &host) {
		return ClassTLSWrongHost
	}
	var ca x509.UnknownAuthorityError
	if errors.As(err, &ca) {
		return ClassTLSUnknownCA
	}
	var alert tls.AlertError
	var rec tls.RecordHeaderError
	var verify *tls.CertificateVerificationError
	var tlsErr *TLSError
	if errors.As(err, &alert) || errors.As(err, &rec) || errors.As(err, &verify) || errors.As(err, &tlsErr) {
		return ClassTLS
	}
	return nil
}

// TLSError is a TLS handshake failure seen by ehrsync's own certificate
// verification (go-mssqldb flattens the handshake error to text, so the
// verifier records it; see Open).
type TLSError struct{ Err error }

func (e *TLSError) Error() string { return "tls: " + e.Err.Error() }
func (e *TLSError) Unwrap() error { return e.Err }

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
