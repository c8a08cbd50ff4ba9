package config

import (
	"crypto/tls"
	"strconv"
	"strings"
	"time"
)

// Config is the whole configuration file.
type Config struct {
	Store    Store    `yaml:"store" json:"store"`
	Server   Server   `yaml:"server" json:"server"`
	Defaults Defaults `yaml:"defaults" json:"defaults"`
	Orgs     []Org    `yaml:"orgs" json:"orgs"`
	// Catalog lists extra table catalog files (the format of
	// schemas/catalog/nextgen/*.yaml, one table per file) merged with the
	// built-in NextGen catalog, for tables it does not know. Load resolves
	// relative paths against the configuration file's directory.
	Catalog []string `yaml:"catalog,omitempty" json:"catalog,omitempty"`
	// Lake is the change lake the tables with lake on go to.
	Lake Lake `yaml:"lake,omitempty" json:"lake,omitempty"`
}

// Store is the cloud store the rows are written to.
type Store struct {
	// URL is a PostgreSQL connection URL or key=value string; a secret.
	URL Secret `yaml:"url" json:"url"`
	// OwnerURL, when set, connects as the role that owns the store's
	// ehrsync schema (a secret): migrations, the writer's grants and new
	// organizations' schemas are made as it, and URL's role may then only
	// append to the audit and position history (docs/operations-store.md).
	// Unset: URL's role migrates, as one role.
	OwnerURL Secret `yaml:"owner_url" json:"owner_url"`
	// InsecureTransport accepts a store on another machine reached without
	// a verified certificate (any sslmode but verify-full in URL or
	// OwnerURL). Off, such a URL is refused; on, it is warned about at
	// every start. A store on loopback or a Unix socket needs neither.
	InsecureTransport bool `yaml:"insecure_transport,omitempty" json:"insecure_transport,omitempty"`
}

// Server is the daemon's HTTP servers: metrics and health on Listen, the
// admin API on AdminListen.
type Server struct {
	// Listen is host:port of /metrics, /healthz and /readyz; default
	// 127.0.0.1:9464 (loopback only).
	Listen string `yaml:"listen" json:"listen"`
	// AdminListen is host:port of the admin API, a listener of its own;
	// default 127.0.0.1:9465 (DefaultAdminListen). Any address but
	// loopback requires AdminTLS.
	AdminListen string `yaml:"admin_listen" json:"admin_listen"`
	// AdminToken is a bearer token of the admin API, operator "admin"; a
	// secret. With AdminTokensFile unset too, the admin API is off.
	AdminToken Secret `yaml:"admin_token" json:"admin_token"`
	// AdminTokensFile names the operators' tokens file: one
	// "operator:sha256-hex-of-token" line per token (package admin). Load
	// resolves a relative path against the configuration file's
	// directory.
	AdminTokensFile string `yaml:"admin_tokens_file,omitempty" json:"admin_tokens_file,omitempty"`
	// AdminTLS serves the admin API over TLS; required on any address but
	// loopback.
	AdminTLS *AdminTLS `yaml:"admin_tls,omitempty" json:"admin_tls,omitempty"`
}

// Defaults are the bounds every table and run inherits unless it overrides
// them. In YAML, batch_bytes is an integer or a size string such as "64MiB".
type Defaults struct {
	BatchRows    int           `yaml:"batch_rows" json:"batch_rows"`
	BatchBytes   int64         `yaml:"batch_bytes" json:"batch_bytes"`
	RunTimeout   time.Duration `yaml:"run_timeout" json:"run_timeout"`
	QueryTimeout time.Duration `yaml:"query_timeout" json:"query_timeout"`
}

// Default values filled in by [Config.ApplyDefaults].
const (
	DefaultListen         = "127.0.0.1:9464"
	DefaultBatchRows      = 10000
	DefaultBatchBytes     = 64 << 20
	DefaultRunTimeout     = time.Hour
	DefaultQueryTimeout   = 5 * time.Minute
	DefaultConnectTimeout = 30 * time.Second
	// DefaultApplicationName names ehrsync's sessions at the source.
	DefaultApplicationName = "ehrsync"
	// DefaultMaxConnections bounds a source's connection pool.
	DefaultMaxConnections = 4
	// DefaultParallelTables is how many of an organization's tables sync
	// at once unless it says otherwise.
	DefaultParallelTables = 2
	DefaultTimezone       = "UTC"
	DefaultStart          = "00:00"
	DefaultVendor         = "nextgen"
	DefaultSSHPort        = 22
	DefaultTLSMinVersion  = "1.2"
	// DefaultSchema is the source schema of a table named without one.
	DefaultSchema = "dbo"
)

// Org is one organization: one source database, its schedule and its tables.
// Its Name is also the store's PostgreSQL schema for its tables.
type Org struct {
	Name     string   `yaml:"name" json:"name"`
	Schedule Schedule `yaml:"schedule" json:"schedule"`
	Source   Source   `yaml:"source" json:"source"`
	Tables   []Table  `yaml:"tables" json:"tables"`
	// ParallelTables is how many of the organization's tables sync at once
	// (each on its own source connection); default
	// DefaultParallelTables, at most source.max_connections.
	ParallelTables int `yaml:"parallel_tables" json:"parallel_tables"`
	// Lake turns the change lake on for the organization's tables, but
	// those that say otherwise.
	Lake bool `yaml:"lake,omitempty" json:"lake,omitempty"`
}

// Schedule says when an organization's runs start: either a cron expression
// (robfig/cron standard five fields, or a descriptor like @hourly) or an
// interval Every anchored at the time of day Start ("HH:MM"), both in
// Timezone (an IANA zone; default UTC).
//
// With Every, runs start at Start + k*Every for whole k, each day; with
// Cron, Start is not used.
type Schedule struct {
	Cron     string        `yaml:"cron,omitempty" json:"cron,omitempty"`
	Every    time.Duration `yaml:"every,omitempty" json:"every,omitempty"`
	Start    string        `yaml:"start,omitempty" json:"start,omitempty"`
	Timezone string        `yaml:"timezone,omitempty" json:"timezone,omitempty"`
}

// Location returns the schedule's time zone (UTC when unset).
func (s Schedule) Location() (*time.Location, error) {
	return loadLocation(s.Timezone)
}

// Source is an organization's EHR database and how to reach it.
type Source struct {
	// Vendor is the EHR product; only "nextgen" (the default) for now.
	Vendor  string  `yaml:"vendor" json:"vendor"`
	Dialect Dialect `yaml:"dialect" json:"dialect"`
	Via     Via     `yaml:"via" json:"via"`
	// Host and Port are the database server as reached by Via: the relay's
	// private endpoint, the server as seen from the SSH bastion, or the
	// server itself.
	Host     string `yaml:"host" json:"host"`
	Port     int    `yaml:"port" json:"port"`
	Database string `yaml:"database" json:"database"`
	User     string `yaml:"user" json:"user"`
	Password Secret `yaml:"password" json:"password"`
	// Timezone is deprecated and unused: ehrsync copies the source's
	// zone-less datetime values as they are and converts none. It is still
	// read, so that configurations that set it keep loading, and
	// [Source.Deprecations] says to remove it.
	Timezone string `yaml:"timezone,omitempty" json:"timezone,omitempty"`
	// PracticeIDs restricts every query to these NextGen practices
	// (practice_id, char(4)); empty means no filter.
	PracticeIDs []string `yaml:"practice_ids,omitempty" json:"practice_ids,omitempty"`
	// Relay is optional with Via relay and forbidden otherwise.
	Relay *Relay `yaml:"relay,omitempty" json:"relay,omitempty"`
	// SSH is required with Via ssh and forbidden otherwise.
	SSH            *SSH          `yaml:"ssh,omitempty" json:"ssh,omitempty"`
	TLS            TLS           `yaml:"tls" json:"tls"`
	ConnectTimeout time.Duration `yaml:"connect_timeout" json:"connect_timeout"`
	// QueryTimeout bounds every source query; default defaults.query_timeout.
	QueryTimeout time.Duration `yaml:"query_timeout" json:"query_timeout"`
	// ApplicationName is how ehrsync's sessions show at the source (SQL
	// Server's program_name, PostgreSQL's application_name); default ehrsync.
	ApplicationName string `yaml:"application_name" json:"application_name"`
	// MaxConnections bounds the connections to the source; default 4.
	MaxConnections int `yaml:"max_connections" json:"max_connections"`
	// Kerberos switches SQL Server login to Windows authentication by
	// Kerberos (the user is user or DOMAIN\user). Without it, SQL
	// authentication is used, or NTLM when the user has the DOMAIN\user form.
	Kerberos *Kerberos `yaml:"kerberos,omitempty" json:"kerberos,omitempty"`
	// ServerSPN is the Kerberos service principal name of the SQL Server
	// service, used with Kerberos only; default (filled in by
	// ApplyDefaults) [DefaultServerSPN]. Set it when that name or port is
	// not the server's own: behind a relay whose port differs from SQL
	// Server's, or an availability group listener registered under its
	// own name.
	ServerSPN string `yaml:"server_spn,omitempty" json:"server_spn,omitempty"`
	// InsecureTransport accepts a source on another machine reached
	// without verified TLS (tls.mode disable, or
	// tls.trust_server_certificate). Off, validation refuses such a
	// source ([Source.UnverifiedTransport]); on, it is warned about at
	// every start. A source on loopback needs neither.
	InsecureTransport bool `yaml:"insecure_transport,omitempty" json:"insecure_transport,omitempty"`
}

// DefaultServerSPN is the SQL Server service principal name ehrsync asks
// Kerberos for unless server_spn says otherwise:
// MSSQLSvc/<tls.server_name or host>:<port>, the name SQL Server registers
// for a TCP instance (setspn -L on its service account lists them).
func DefaultServerSPN(s Source) string {
	host := s.Host
	if s.TLS.ServerName != "" {
		host = s.TLS.ServerName
	}
	return "MSSQLSvc/" + host + ":" + strconv.Itoa(s.Port)
}

// Deprecations lists the settings of s that are still accepted but no
// longer used, each with what to do; for the engine to log at start and
// for validate and check to show.
func (s Source) Deprecations() []string {
	var d []string
	if s.Timezone != "" {
		d = append(d, "source.timezone is deprecated and unused (datetime values are copied as the source stores them, without a zone, and never converted): remove it")
	}
	return d
}

// Kerberos is how ehrsync gets a Kerberos ticket for SQL Server: from a
// keytab, a credential cache, or the source's user and password.
type Kerberos struct {
	Realm      string `yaml:"realm" json:"realm"`             // e.g. HOSPITAL.LOCAL
	ConfigFile string `yaml:"config_file" json:"config_file"` // krb5.conf
	Keytab     string `yaml:"keytab,omitempty" json:"keytab,omitempty"`
	CredCache  string `yaml:"cred_cache,omitempty" json:"cred_cache,omitempty"`
}

// Dialect is the source database's SQL dialect.
type Dialect string

// The source dialects.
const (
	SQLServer Dialect = "sqlserver"
	Postgres  Dialect = "postgres"
)

// DefaultPort returns the dialect's usual port (0 for an unknown dialect).
func (d Dialect) DefaultPort() int {
	switch d {
	case SQLServer:
		return 1433
	case Postgres:
		return 5432
	}
	return 0
}

// Via is how the engine reaches the source.
type Via string

// The ways to reach a source.
const (
	// ViaRelay connects to the customer relay's private endpoint.
	ViaRelay Via = "relay"
	// ViaSSH connects through an SSH tunnel ([Source.SSH]).
	ViaSSH Via = "ssh"
	// ViaDirect connects to the server itself.
	ViaDirect Via = "direct"
)

// Relay holds optional relay settings.
type Relay struct {
	// Probe is checked for reachability by `ehrsync check` and the
	// reachability metric: tcp://host:port or an https:// URL.
	Probe string `yaml:"probe,omitempty" json:"probe,omitempty"`
}

// SSH is an SSH tunnel to the source. The server's host key is always
// verified: against KnownHosts, HostKeyFingerprint, or both when both are
// set. Authentication uses PrivateKey, Password, or both.
type SSH struct {
	Host string `yaml:"host" json:"host"`
	// Port defaults to 22.
	Port int    `yaml:"port" json:"port"`
	User string `yaml:"user" json:"user"`
	// PrivateKey is the PEM private key itself; usually file:/path.
	PrivateKey Secret `yaml:"private_key" json:"private_key"`
	Password   Secret `yaml:"password" json:"password"`
	// KnownHosts is the path of an OpenSSH known_hosts file.
	KnownHosts string `yaml:"known_hosts,omitempty" json:"known_hosts,omitempty"`
	// HostKeyFingerprint is "SHA256:" and the unpadded base64 of the key's
	// SHA-256, as printed by ssh-keygen -l.
	HostKeyFingerprint string `yaml:"host_key_fingerprint,omitempty" json:"host_key_fingerprint,omitempty"`
}

// TLSMode says whether the connection to the source is encrypted.
type TLSMode string

// The TLS modes.
const (
	// TLSDisable does not encrypt (SQL Server may still encrypt the login
	// packet). Only for sources on a trusted network.
	TLSDisable TLSMode = "disable"
	// TLSRequire encrypts and verifies the server's certificate against the
	// system roots or CAFile and its name against ServerName or Host,
	// unless TrustServerCertificate is set. The default.
	TLSRequire TLSMode = "require"
	// TLSStrict is SQL Server 2022's TDS 8.0 strict encryption (TLS before
	// any TDS traffic, certificate always verified). SQL Server only.
	TLSStrict TLSMode = "strict"
)

// TLS is the source connection's TLS settings.
type TLS struct {
	// Mode defaults to require.
	Mode TLSMode `yaml:"mode" json:"mode"`
	// CAFile is a PEM bundle to verify the server's certificate with,
	// instead of the system roots.
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	// ServerName is the name expected in the certificate when it is not
	// Host (always the case behind a relay or tunnel).
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
	// TrustServerCertificate turns certificate verification off. It must be
	// written explicitly and the engine warns about it.
	TrustServerCertificate bool `yaml:"trust_server_certificate,omitempty" json:"trust_server_certificate,omitempty"`
	// MinVersion is "1.2" (the default) or "1.3".
	MinVersion string `yaml:"min_version" json:"min_version"`
}

// Version returns MinVersion as a crypto/tls version constant
// (tls.VersionTLS12 when unset or unknown).
func (t TLS) Version() uint16 {
	if t.MinVersion == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// Strategy is how a table's changes are read.
type Strategy string

// The strategies.
const (
	// StrategyAuto lets the planner pick per table (CDC, else Change
	// Tracking, else a high-water mark, else a snapshot).
	StrategyAuto           Strategy = "auto"
	StrategyCDC            Strategy = "cdc"
	StrategyChangeTracking Strategy = "change_tracking"
	StrategyHWM            Strategy = "hwm"
	StrategySnapshot       Strategy = "snapshot"
)

// DeletePolicy is what a source delete does to the store's row.
type DeletePolicy string

// The delete policies.
const (
	// DeleteHard removes the row. The default.
	DeleteHard DeletePolicy = "hard"
	// DeleteSoft keeps the row and marks it deleted.
	DeleteSoft DeletePolicy = "soft"
)

// Table is one source table to sync.
type Table struct {
	// Name is "schema.table" or "table" (schema dbo).
	Name     string   `yaml:"name" json:"name"`
	Strategy Strategy `yaml:"strategy" json:"strategy"`
	// Cursor is the high-water-mark column, for strategies hwm and auto;
	// empty lets the planner use the table's rowversion column.
	Cursor string `yaml:"cursor,omitempty" json:"cursor,omitempty"`
	// LookBack re-reads this far behind a timestamp cursor's position to
	// catch late commits. Needs a cursor or strategy hwm.
	LookBack time.Duration `yaml:"look_back,omitempty" json:"look_back,omitempty"`
	// Columns is an allow-list of columns to read; empty reads all. The
	// engine adds the key columns the strategy needs.
	Columns      []string     `yaml:"columns,omitempty" json:"columns,omitempty"`
	DeletePolicy DeletePolicy `yaml:"delete_policy" json:"delete_policy"`
	// ChangeLog keeps an append-only history of every change in the store.
	ChangeLog bool `yaml:"change_log,omitempty" json:"change_log,omitempty"`
	// Lake appends every change committed for the table to the change lake
	// (top-level lake); unset, the organization's lake setting decides.
	Lake *bool `yaml:"lake,omitempty" json:"lake,omitempty"`
	// BatchRows bounds the rows per batch; after defaults are applied it is
	// defaults.batch_rows unless overridden.
	BatchRows int `yaml:"batch_rows" json:"batch_rows"`
	// ReconcileEvery turns on key reconciliation for strategies that cannot
	// see deletes (hwm, snapshot): at most this often, after a run, the
	// table's keys at the source are compared with the store's and rows gone
	// at the source are deleted by the delete policy. 0 (the default): off.
	ReconcileEvery time.Duration `yaml:"reconcile_every,omitempty" json:"reconcile_every,omitempty"`
	// OnExpired says what happens when the table's saved position expired
	// at the source (CDC cleanup, Change Tracking's minimum valid version):
	// resnapshot (the default) or fail. Either way it is logged and counted.
	OnExpired ExpiryPolicy `yaml:"on_expired" json:"on_expired"`
}

// ExpiryPolicy is what to do about an expired position.
type ExpiryPolicy string

// The expiry policies.
const (
	// ExpiredResnapshot resets the position and snapshots the table again. The default.
	ExpiredResnapshot ExpiryPolicy = "resnapshot"
	// ExpiredFail fails the table's runs until an operator resets it.
	ExpiredFail ExpiryPolicy = "fail"
)

// SchemaName splits Name into its schema and table: "dbo.x" gives
// ("dbo", "x"), "x" gives ("dbo", "x").
func (t Table) SchemaName() (schema, name string) {
	if s, n, ok := strings.Cut(t.Name, "."); ok {
		return s, n
	}
	return DefaultSchema, t.Name
}

// Org returns the organization with this name.
func (c *Config) Org(name string) (*Org, bool) {
	for i := range c.Orgs {
		if c.Orgs[i].Name == name {
			return &c.Orgs[i], true
		}
	}
	return nil, false
}

// Table returns the organization's table with this name, matched as
// SchemaName does and case-insensitively ("x" finds "dbo.x").
func (o *Org) Table(name string) (*Table, bool) {
	want := Table{Name: name}
	ws, wn := want.SchemaName()
	for i := range o.Tables {
		s, n := o.Tables[i].SchemaName()
		if strings.EqualFold(s, ws) && strings.EqualFold(n, wn) {
			return &o.Tables[i], true
		}
	}
	return nil, false
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	return time.LoadLocation(name)
}
