package config

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/robfig/cron/v3"

	// Time zones resolve on machines without a zoneinfo database.
	_ "time/tzdata"
)

// MaxOrgNameLen bounds an organization's name, which is also its schema in
// the store (PostgreSQL identifiers are at most 63 bytes; the rest is room
// for suffixes).
const MaxOrgNameLen = 50

var (
	orgNameRE    = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)
	practiceIDRE = regexp.MustCompile(`^[A-Za-z0-9]{4}$`)
	startRE      = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
)

// reservedOrgNames are schemas an organization must not take in the store.
var reservedOrgNames = map[string]bool{"ehrsync": true, "public": true, "information_schema": true}

const maxIdentLen = 128 // SQL Server's sysname

// Validate checks the configuration as it is after [Config.ApplyDefaults]
// and reports every problem at once: the result joins (errors.Join) one
// [*FieldError] per problem, each naming its key path. It does not resolve
// secrets or touch the network or the file system.
func (c *Config) Validate() error {
	v := &validator{}
	v.secret("store.url", c.Store.URL, true)
	v.secret("store.owner_url", c.Store.OwnerURL, false)
	v.server(c.Server)
	v.defaults(c.Defaults)
	v.lake(c)
	if len(c.Orgs) == 0 {
		v.add("orgs", "no organizations")
	}
	for i, f := range c.Catalog {
		k := fmt.Sprintf("catalog[%d]", i)
		switch ext := strings.ToLower(filepath.Ext(f)); {
		case strings.TrimSpace(f) == "":
			v.add(k, "not set (want the path of a table catalog file)")
		case ext != ".yaml" && ext != ".yml":
			v.add(k, "want a .yaml or .yml table catalog file")
		}
	}
	seen := map[string]int{}
	for i := range c.Orgs {
		o := &c.Orgs[i]
		key := fmt.Sprintf("orgs[%d]", i)
		v.orgName(key+".name", o.Name)
		// Two names that differ only by - and _ share one store schema
		// (sink.SchemaFor), and would mix two hospitals' rows.
		schema := StoreSchema(o.Name)
		if j, dup := seen[schema]; dup && o.Name != "" {
			if c.Orgs[j].Name == o.Name {
				v.add(key+".name", "duplicate organization %q (also orgs[%d])", o.Name, j)
			} else {
				v.add(key+".name", "organization %q would share the store schema %q with %q (orgs[%d]): rename one", o.Name, schema, c.Orgs[j].Name, j)
			}
		} else {
			seen[schema] = i
		}
		v.schedule(key+".schedule", o.Schedule)
		v.source(key+".source", &o.Source)
		v.tables(key+".tables", o.Tables, o.Source.Dialect)
		if o.ParallelTables < 1 || o.ParallelTables > max(o.Source.MaxConnections, 1) {
			v.add(key+".parallel_tables", "must be between 1 and source.max_connections (%d): each table being synced holds a source connection", o.Source.MaxConnections)
		}
	}
	return errors.Join(v.errs...)
}

type validator struct {
	errs []error
}

func (v *validator) add(key, format string, args ...any) {
	v.errs = append(v.errs, &FieldError{Key: key, Problem: fmt.Sprintf(format, args...)})
}

func (v *validator) secret(key string, s Secret, required bool) {
	if !s.IsSet() {
		if required {
			v.add(key, "not set")
		}
		return
	}
	if p := s.check(); p != "" {
		v.add(key, "%s", p)
	}
}

func (v *validator) listen(key, addr string) {
	if addr == "" {
		v.add(key, "not set")
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		v.add(key, "%q is not host:port", addr)
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		v.add(key, "port %q is not 1..65535", port)
	}
}

func (v *validator) defaults(d Defaults) {
	if d.BatchRows <= 0 {
		v.add("defaults.batch_rows", "must be positive")
	}
	if d.BatchBytes <= 0 {
		v.add("defaults.batch_bytes", "must be positive")
	}
	if d.RunTimeout <= 0 {
		v.add("defaults.run_timeout", "must be positive")
	}
	if d.QueryTimeout <= 0 {
		v.add("defaults.query_timeout", "must be positive")
	}
}

// StoreSchema is the store schema of an organization's tables: its name
// with dashes as underscores, so analysts need no quoting (st-mary →
// st_mary).
func StoreSchema(org string) string { return strings.ReplaceAll(org, "-", "_") }

func (v *validator) orgName(key, name string) {
	switch {
	case name == "":
		v.add(key, "not set")
	case len(name) > MaxOrgNameLen || !orgNameRE.MatchString(name):
		v.add(key, "%q is not a valid name (lower-case letters, digits, _ and -, starting with a letter, at most %d characters)", name, MaxOrgNameLen)
	case reservedOrgNames[StoreSchema(name)] || strings.HasPrefix(StoreSchema(name), "pg_"):
		v.add(key, "%q is reserved in the store", name)
	}
}

func (v *validator) schedule(key string, s Schedule) {
	switch {
	case s.Cron != "" && s.Every != 0:
		v.add(key, "set one of cron or every, not both")
	case s.Cron == "" && s.Every == 0:
		v.add(key, "set one of cron or every")
	case s.Cron != "":
		v.cron(key+".cron", s.Cron)
		if s.Start != "" {
			v.add(key+".start", "only with every (a cron expression says its own times)")
		}
	default:
		if s.Every < 0 {
			v.add(key+".every", "must be positive")
		}
		if s.Start != "" && !startRE.MatchString(s.Start) {
			v.add(key+".start", "%q is not a time of day HH:MM (00:00 to 23:59)", s.Start)
		}
	}
	v.timezone(key+".timezone", s.Timezone)
}

func (v *validator) cron(key, spec string) {
	spec = strings.TrimSpace(spec)
	switch {
	case strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ="):
		v.add(key, "put the time zone in schedule.timezone, not in the expression")
	case strings.HasPrefix(spec, "@every"):
		v.add(key, "use schedule.every for intervals")
	default:
		if _, err := cron.ParseStandard(spec); err != nil {
			v.add(key, "bad cron expression %q: %s", spec, err)
		} else if problem := cronStep(spec); problem != "" {
			v.add(key, "%s", problem)
		}
	}
}

// cronFields are the fields of a standard cron expression, with the last
// value of each.
var cronFields = []struct {
	name string
	last string
}{{"minute", "59"}, {"hour", "23"}, {"day-of-month", "31"}, {"month", "12"}, {"day-of-week", "6"}}

// cronStep says which step of a five-field cron expression (parsed
// already) is larger than the range it steps through, or "". robfig/cron
// accepts such a step and matches the range's first value only: */61 in
// the minute field runs at minute 0 of every hour, not every 61 minutes.
func cronStep(spec string) string {
	fields := strings.Fields(spec)
	if len(fields) != len(cronFields) {
		return "" // a descriptor (@daily)
	}
	for i, f := range fields {
		for _, part := range strings.Split(f, ",") {
			rng, step, ok := strings.Cut(part, "/")
			if !ok {
				continue
			}
			if rng != "*" && !strings.Contains(rng, "-") {
				rng += "-" + cronFields[i].last // "5/10" steps from 5 to the field's end
			}
			first, n := cronValues(fields, i, part)
			if _, all := cronValues(fields, i, rng); n == 1 && all > 1 {
				return fmt.Sprintf("the step /%s in the %s field (%q) is larger than the range it steps through, so it matches only %s %d: "+
					"a step does not carry over into the next hour, day or month; for an interval this long use schedule.every (with start)",
					step, cronFields[i].name, part, cronFields[i].name, first)
			}
		}
	}
	return ""
}

// cronValues is the first value and the number of values part matches in
// field i of fields, as robfig/cron parses it (0 values when it does not
// parse).
func cronValues(fields []string, i int, part string) (first, n int) {
	f := []string{"*", "*", "*", "*", "*"}
	f[i] = part
	s, err := cron.ParseStandard(strings.Join(f, " "))
	spec, ok := s.(*cron.SpecSchedule)
	if err != nil || !ok {
		return 0, 0
	}
	const star = 1 << 63 // robfig/cron's marker of a field written *
	mask := []uint64{spec.Minute, spec.Hour, spec.Dom, spec.Month, spec.Dow}[i] &^ star
	return bits.TrailingZeros64(mask), bits.OnesCount64(mask)
}

func (v *validator) timezone(key, name string) {
	switch name {
	case "", "UTC":
		return
	case "Local":
		v.add(key, "name a zone such as America/Chicago, not Local")
		return
	}
	if _, err := time.LoadLocation(name); err != nil {
		v.add(key, "unknown time zone %q", name)
	}
}

func (v *validator) source(key string, s *Source) {
	if s.Vendor != DefaultVendor {
		v.add(key+".vendor", "unknown vendor %q (want nextgen)", s.Vendor)
	}
	dialectOK := s.Dialect == SQLServer || s.Dialect == Postgres
	if !dialectOK {
		v.add(key+".dialect", "unknown dialect %q (want one of sqlserver, postgres)", s.Dialect)
	}
	switch s.Via {
	case ViaRelay, ViaSSH, ViaDirect:
	case "":
		v.add(key+".via", "not set (want one of relay, ssh, direct)")
	default:
		v.add(key+".via", "unknown via %q (want one of relay, ssh, direct)", s.Via)
	}
	v.host(key+".host", s.Host)
	if dialectOK || s.Port != 0 {
		v.port(key+".port", s.Port)
	}
	if s.Database == "" {
		v.add(key+".database", "not set")
	}
	if s.User == "" {
		v.add(key+".user", "not set")
	}
	v.secret(key+".password", s.Password, false)
	// source.timezone is deprecated and unused (Source.Deprecations warns):
	// not validated, so that no configuration in the field stops loading.

	seen := map[string]int{}
	for i, id := range s.PracticeIDs {
		k := fmt.Sprintf("%s.practice_ids[%d]", key, i)
		if !practiceIDRE.MatchString(id) {
			v.add(k, "%q is not a 4-character practice_id (letters and digits; quote it: \"0001\")", id)
		}
		if j, dup := seen[id]; dup {
			v.add(k, "duplicate practice_id %q (also practice_ids[%d])", id, j)
		} else {
			seen[id] = i
		}
	}

	if s.Relay != nil {
		if s.Via != ViaRelay {
			v.add(key+".relay", "only with via: relay")
		} else if s.Relay.Probe != "" {
			v.probe(key+".relay.probe", s.Relay.Probe)
		}
	}
	switch {
	case s.Via == ViaSSH && s.SSH == nil:
		v.add(key+".ssh", "required with via: ssh")
	case s.Via != ViaSSH && s.SSH != nil:
		v.add(key+".ssh", "only with via: ssh")
	case s.SSH != nil:
		v.ssh(key+".ssh", s.SSH)
	}
	v.tls(key+".tls", s.TLS, s.Dialect)
	v.transport(key, s)
	if s.ConnectTimeout <= 0 {
		v.add(key+".connect_timeout", "must be positive")
	}
	if s.QueryTimeout <= 0 {
		v.add(key+".query_timeout", "must be positive")
	}
	if k := s.Kerberos; k != nil {
		switch {
		case s.Dialect != SQLServer:
			v.add(key+".kerberos", "only with dialect sqlserver")
		case k.Realm == "":
			v.add(key+".kerberos.realm", "not set (the Kerberos realm, e.g. HOSPITAL.LOCAL)")
		case k.ConfigFile == "":
			v.add(key+".kerberos.config_file", "not set (the krb5.conf naming the realm's KDC)")
		case k.Keytab != "" && k.CredCache != "":
			v.add(key+".kerberos", "keytab and cred_cache: choose one")
		case k.Keytab == "" && k.CredCache == "" && !s.Password.IsSet():
			v.add(key+".kerberos", "needs a keytab, a cred_cache, or the source's password")
		}
	}
	if s.ServerSPN != "" {
		v.serverSPN(key+".server_spn", s)
	}
	if s.MaxConnections < 1 || s.MaxConnections > 100 {
		v.add(key+".max_connections", "must be between 1 and 100")
	}
	if len(s.ApplicationName) > 128 || strings.ContainsAny(s.ApplicationName, "\x00;") {
		v.add(key+".application_name", "at most 128 characters, without ; or NUL")
	}
}

// serverSPN checks source.server_spn: Kerberos only, and the shape of a
// SQL Server service principal name, MSSQLSvc/host[:port or instance].
func (v *validator) serverSPN(key string, s *Source) {
	if s.Kerberos == nil || s.Dialect != SQLServer {
		v.add(key, "only with kerberos (dialect sqlserver): it names the SQL Server service Kerberos issues a ticket for")
		return
	}
	const want = "want MSSQLSvc/HOST:PORT (or MSSQLSvc/HOST:INSTANCE), as setspn -L lists it for SQL Server's service account"
	service, host, ok := strings.Cut(s.ServerSPN, "/")
	if name, _, _ := strings.Cut(host, ":"); !ok || !strings.EqualFold(service, "MSSQLSvc") || name == "" ||
		strings.ContainsFunc(s.ServerSPN, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) ||
		strings.ContainsAny(host, "/@") {
		v.add(key, "%q is not a SQL Server service principal name: %s", s.ServerSPN, want)
	}
}

func (v *validator) host(key, host string) {
	switch {
	case host == "":
		v.add(key, "not set")
	case net.ParseIP(host) != nil:
	case strings.ContainsAny(host, ":/ \t\\"):
		v.add(key, "%q is not a host name or IP address (the port goes in port)", host)
	}
}

func (v *validator) port(key string, port int) {
	if port < 1 || port > 65535 {
		v.add(key, "%d is not 1..65535", port)
	}
}

func (v *validator) probe(key, probe string) {
	u, err := url.Parse(probe)
	if err != nil {
		v.add(key, "%q is not a URL (want tcp://host:port or https://...)", probe)
		return
	}
	switch u.Scheme {
	case "tcp":
		_, port, err := net.SplitHostPort(u.Host)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 1 || n > 65535 || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
			v.add(key, "%q is not tcp://host:port", probe)
		}
	case "https":
		if u.Host == "" {
			v.add(key, "%q has no host", probe)
		}
	default:
		v.add(key, "%q: want tcp://host:port or https://...", probe)
	}
}

func (v *validator) ssh(key string, s *SSH) {
	v.host(key+".host", s.Host)
	v.port(key+".port", s.Port)
	if s.User == "" {
		v.add(key+".user", "not set")
	}
	if !s.PrivateKey.IsSet() && !s.Password.IsSet() {
		v.add(key, "set private_key or password")
	}
	v.secret(key+".private_key", s.PrivateKey, false)
	v.secret(key+".password", s.Password, false)
	if s.KnownHosts == "" && s.HostKeyFingerprint == "" {
		v.add(key, "set known_hosts or host_key_fingerprint (the server's host key is always verified)")
	}
	if s.HostKeyFingerprint != "" {
		b64, ok := strings.CutPrefix(s.HostKeyFingerprint, "SHA256:")
		if b, err := base64.RawStdEncoding.DecodeString(b64); !ok || err != nil || len(b) != 32 {
			v.add(key+".host_key_fingerprint", "want SHA256:<base64>, as printed by ssh-keygen -l")
		}
	}
}

func (v *validator) tls(key string, t TLS, d Dialect) {
	switch t.Mode {
	case TLSRequire:
	case TLSDisable:
		if t.CAFile != "" || t.ServerName != "" || t.TrustServerCertificate {
			v.add(key+".mode", "disable turns TLS off; ca_file, server_name and trust_server_certificate need TLS on")
		}
	case TLSStrict:
		if d == Postgres {
			v.add(key+".mode", "strict is SQL Server only (want disable or require)")
		}
		if t.TrustServerCertificate {
			v.add(key+".trust_server_certificate", "not with mode strict, which always verifies the certificate")
		}
	default:
		v.add(key+".mode", "unknown TLS mode %q (want one of disable, require, strict)", t.Mode)
	}
	if t.TrustServerCertificate && t.CAFile != "" {
		v.add(key+".trust_server_certificate", "turns verification off, so ca_file would not be used; set one")
	}
	if t.MinVersion != "1.2" && t.MinVersion != "1.3" {
		v.add(key+".min_version", "%q is not a TLS version ehrsync allows (want 1.2 or 1.3)", t.MinVersion)
	}
}

func (v *validator) tables(key string, tables []Table, d Dialect) {
	if len(tables) == 0 {
		v.add(key, "no tables")
	}
	seen := map[string]int{}
	for i, t := range tables {
		k := fmt.Sprintf("%s[%d]", key, i)
		if v.tableName(k+".name", t.Name) {
			s, n := t.SchemaName()
			id := strings.ToLower(s + "." + n)
			if j, dup := seen[id]; dup {
				v.add(k+".name", "duplicate table %q (also tables[%d])", t.Name, j)
			} else {
				seen[id] = i
			}
		}
		switch t.Strategy {
		case StrategyAuto, StrategyHWM, StrategySnapshot:
		case StrategyCDC, StrategyChangeTracking:
			if d == Postgres {
				v.add(k+".strategy", "%s is a SQL Server feature, not available with dialect postgres (use hwm or snapshot)", t.Strategy)
			}
		default:
			v.add(k+".strategy", "unknown strategy %q (want one of auto, cdc, change_tracking, hwm, snapshot)", t.Strategy)
		}
		if t.Cursor != "" {
			v.ident(k+".cursor", t.Cursor)
			if t.Strategy != StrategyHWM && t.Strategy != StrategyAuto {
				v.add(k+".cursor", "only with strategy hwm or auto")
			}
		}
		switch {
		case t.LookBack < 0:
			v.add(k+".look_back", "must not be negative")
		case t.LookBack > 0 && t.Cursor == "" && t.Strategy != StrategyHWM:
			v.add(k+".look_back", "only with a cursor or strategy hwm")
		}
		cols := map[string]int{}
		for j, c := range t.Columns {
			ck := fmt.Sprintf("%s.columns[%d]", k, j)
			v.ident(ck, c)
			if prev, dup := cols[strings.ToLower(c)]; dup {
				v.add(ck, "duplicate column %q (also columns[%d])", c, prev)
			} else {
				cols[strings.ToLower(c)] = j
			}
		}
		switch t.DeletePolicy {
		case DeleteHard, DeleteSoft:
		default:
			v.add(k+".delete_policy", "unknown delete policy %q (want one of hard, soft)", t.DeletePolicy)
		}
		if t.BatchRows < 0 {
			v.add(k+".batch_rows", "must not be negative")
		}
		switch t.OnExpired {
		case ExpiredResnapshot, ExpiredFail:
		default:
			v.add(k+".on_expired", "unknown policy %q (want resnapshot or fail)", t.OnExpired)
		}
		switch {
		case t.ReconcileEvery < 0:
			v.add(k+".reconcile_every", "must not be negative")
		case t.ReconcileEvery > 0 && (t.Strategy == StrategyCDC || t.Strategy == StrategyChangeTracking):
			v.add(k+".reconcile_every", "only for strategies that cannot see deletes (hwm, snapshot, auto)")
		}
	}
}

// tableName checks "schema.table" or "table" and reports whether it is
// well-formed.
func (v *validator) tableName(key, name string) bool {
	if name == "" {
		v.add(key, "not set")
		return false
	}
	parts := strings.Split(name, ".")
	if len(parts) > 2 {
		v.add(key, "%q: want table or schema.table", name)
		return false
	}
	for _, p := range parts {
		if len(p) >= 2 && (p[0] == '[' && p[len(p)-1] == ']' || p[0] == '"' && p[len(p)-1] == '"') {
			v.add(key, "%q: want table or schema.table, each part written unquoted (ehrsync quotes names itself)", name)
			return false
		}
		if problem := identProblem(p); problem != "" {
			v.add(key, "%q: want table or schema.table, each part %s", name, problem)
			return false
		}
	}
	return true
}

// ident checks a column name. Names are quoted wherever ehrsync writes
// SQL, so quotes, brackets, semicolons, spaces and any Unicode are allowed
// (the names of the catalog are what they are at the source); what is
// refused cannot be a sensible name on either server.
func (v *validator) ident(key, name string) {
	if problem := identProblem(name); problem != "" {
		v.add(key, "%q is not a usable SQL identifier: want one %s", name, problem)
	}
}

// identProblem says what makes name unusable as a table or column name,
// or "" when it is usable.
func identProblem(name string) string {
	const want = "of 1 to 128 characters, valid UTF-8, without control characters or leading or trailing spaces"
	switch {
	case name == "", utf8.RuneCountInString(name) > maxIdentLen, !utf8.ValidString(name),
		strings.TrimSpace(name) != name, strings.IndexFunc(name, unicode.IsControl) >= 0:
		return want
	}
	return ""
}
