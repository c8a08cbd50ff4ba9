package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestParseAppliesDefaults(t *testing.T) {
	c, err := Load("testdata/minimal.good.yaml")
	require.NoError(t, err)

	require.Equal(t, "127.0.0.1:9464", c.Server.Listen)
	require.False(t, c.Server.AdminToken.IsSet())
	require.Equal(t, Defaults{BatchRows: 10000, BatchBytes: 64 << 20, RunTimeout: time.Hour, QueryTimeout: 5 * time.Minute}, c.Defaults)

	o := c.Orgs[0]
	require.Equal(t, Schedule{Every: 10 * time.Minute, Start: "00:00", Timezone: "UTC"}, o.Schedule)
	s := o.Source
	require.Equal(t, "nextgen", s.Vendor)
	require.Equal(t, SQLServer, s.Dialect)
	require.Equal(t, 1433, s.Port)
	require.Empty(t, s.Timezone, "source.timezone is deprecated: no default")
	require.Empty(t, s.Deprecations())
	require.Empty(t, s.ServerSPN, "server_spn is for kerberos only")
	require.Equal(t, TLS{Mode: TLSRequire, MinVersion: "1.2"}, s.TLS)
	require.Equal(t, 30*time.Second, s.ConnectTimeout)
	require.Equal(t, 5*time.Minute, s.QueryTimeout)
	require.Equal(t, "ehrsync", s.ApplicationName)
	require.Equal(t, 4, s.MaxConnections)
	require.Equal(t, 2, o.ParallelTables)
	require.Nil(t, s.Relay)
	require.Nil(t, s.SSH)
	require.Equal(t, []Table{{Name: "dbo.trans_detail", Strategy: StrategyAuto, DeletePolicy: DeleteHard, BatchRows: 10000, OnExpired: ExpiredResnapshot}}, o.Tables)
}

func TestParseKeepsExplicitValues(t *testing.T) {
	c, err := Load("testdata/relay-full.good.yaml")
	require.NoError(t, err)

	require.Equal(t, Defaults{BatchRows: 20000, BatchBytes: 32 << 20, RunTimeout: 2 * time.Hour, QueryTimeout: 10 * time.Minute}, c.Defaults)
	require.Equal(t, "env:EHRSYNC_ADMIN_TOKEN", c.Server.AdminToken.String())
	o, ok := c.Org("st-mary")
	require.True(t, ok)
	require.Equal(t, Schedule{Every: 10 * time.Minute, Start: "02:00", Timezone: "America/Chicago"}, o.Schedule)
	s := o.Source
	require.Equal(t, 11433, s.Port)
	require.Equal(t, ViaRelay, s.Via)
	require.Equal(t, []string{"0001", "0003"}, s.PracticeIDs)
	require.Equal(t, &Relay{Probe: "tcp://relay-st-mary.internal:443"}, s.Relay)
	require.Equal(t, TLS{Mode: TLSRequire, CAFile: "/etc/ehrsync/st-mary-ca.pem", ServerName: "sql01.hospital.local", MinVersion: "1.3"}, s.TLS)
	require.Equal(t, 15*time.Second, s.ConnectTimeout)
	require.Equal(t, 3*time.Minute, s.QueryTimeout)

	enc, ok := o.Table("patient_encounter")
	require.True(t, ok)
	require.Equal(t, Table{
		Name: "dbo.patient_encounter", Strategy: StrategyHWM, Cursor: "row_timestamp",
		Columns: []string{"enc_id", "practice_id", "enc_status"}, DeletePolicy: DeleteSoft, BatchRows: 50000, OnExpired: ExpiredResnapshot,
	}, *enc)
	claims, ok := o.Table("dbo.claims")
	require.True(t, ok)
	require.Equal(t, 20000, claims.BatchRows, "inherits defaults.batch_rows")
	require.True(t, claims.ChangeLog)
}

func TestParseDetails(t *testing.T) {
	tests := []struct {
		name  string
		file  string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "ssh port defaults to 22",
			file: "testdata/ssh.good.yaml",
			check: func(t *testing.T, c *Config) {
				o, _ := c.Org("lakeside")
				require.Equal(t, 22, o.Source.SSH.Port)
				require.Equal(t, "file:/etc/ehrsync/id_ed25519", o.Source.SSH.PrivateKey.String())
				o, _ = c.Org("hillcrest_clinic")
				require.Equal(t, 2222, o.Source.SSH.Port)
			},
		},
		{
			name: "postgres port and tls",
			file: "testdata/postgres.good.yaml",
			check: func(t *testing.T, c *Config) {
				s := c.Orgs[0].Source
				require.Equal(t, Postgres, s.Dialect)
				require.Equal(t, 5432, s.Port)
				require.Equal(t, TLSDisable, s.TLS.Mode)
			},
		},
		{
			name: "cron keeps no start; unquoted practice id keeps its zeros",
			file: "testdata/cron.good.yaml",
			check: func(t *testing.T, c *Config) {
				require.Equal(t, Schedule{Cron: "*/10 6-22 * * 1-5", Timezone: "America/Chicago"}, c.Orgs[0].Schedule)
				require.Equal(t, Schedule{Cron: "@hourly", Timezone: "UTC"}, c.Orgs[1].Schedule)
				require.Equal(t, []string{"0001", "0002"}, c.Orgs[1].Source.PracticeIDs)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.file)
			require.NoError(t, err)
			tt.check(t, c)
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr string
	}{
		{in: "1048576", want: 1 << 20},
		{in: "64MiB", want: 64 << 20},
		{in: "64 MiB", want: 64 << 20},
		{in: "512KiB", want: 512 << 10},
		{in: "2GiB", want: 2 << 30},
		{in: "10MB", want: 10_000_000},
		{in: "1KB", want: 1000},
		{in: "100B", want: 100},
		{in: "64mib", wantErr: "bad size"},
		{in: "1.5GiB", wantErr: "bad size"},
		{in: "-1", wantErr: "bad size"},
		{in: "lots", wantErr: "bad size"},
		{in: "99999999999TiB", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseSize(tt.in)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}

func TestSchemaName(t *testing.T) {
	tests := []struct{ in, schema, name string }{
		{"dbo.trans_detail", "dbo", "trans_detail"},
		{"trans_detail", "dbo", "trans_detail"},
		{"sales.claims", "sales", "claims"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			s, n := Table{Name: tt.in}.SchemaName()
			require.Equal(t, tt.schema, s)
			require.Equal(t, tt.name, n)
		})
	}
}

func TestLookups(t *testing.T) {
	c, err := Load("testdata/ssh.good.yaml")
	require.NoError(t, err)

	o, ok := c.Org("hillcrest_clinic")
	require.True(t, ok)
	require.Equal(t, "hillcrest_clinic", o.Name)
	o.Schedule.Every = 2 * time.Hour
	require.Equal(t, 2*time.Hour, c.Orgs[1].Schedule.Every, "Org returns a pointer into the config")
	_, ok = c.Org("nobody")
	require.False(t, ok)

	for _, name := range []string{"dbo.claims", "claims", "DBO.Claims"} {
		tb, ok := o.Table(name)
		require.True(t, ok, name)
		require.Equal(t, "dbo.claims", tb.Name)
	}
	_, ok = o.Table("sales.claims")
	require.False(t, ok)
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
		return p
	}
	tests := []struct {
		name string
		path string
		want string
	}{
		{name: "missing file", path: filepath.Join(dir, "nope.yaml"), want: "read config: open " + filepath.Join(dir, "nope.yaml")},
		{name: "empty file", path: write("empty.yaml", "# only a comment\n"), want: "empty configuration"},
		{name: "two documents", path: write("two.yaml", "store: {url: x}\n---\nstore: {url: y}\n"), want: "line 2: more than one YAML document"},
		{name: "duplicate key", path: write("dup.yaml", "store: {url: x}\nstore: {url: y}\n"), want: `: line 2: mapping key "store" already defined at line 1`},
		{name: "secret as a mapping", path: write("map.yaml", "store:\n  url: {env: X}\n"), want: "line 2: store.url: want a string"},
		{name: "top level list", path: write("list.yaml", "- a\n"), want: "cannot decode a seq"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.path)
			require.ErrorContains(t, err, tt.want)
		})
	}
}

func TestProblems(t *testing.T) {
	a, b := errors.New("a"), errors.New("b")
	tests := []struct {
		name string
		err  error
		want []error
	}{
		{name: "nil", err: nil, want: nil},
		{name: "single", err: a, want: []error{a}},
		{name: "joined", err: errors.Join(a, b), want: []error{a, b}},
		{name: "wrapped join", err: wrapf(errors.Join(a, b)), want: []error{a, b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.want, Problems(tt.err))
		})
	}
}

func wrapf(err error) error { return &wrapped{err} }

type wrapped struct{ err error }

func (w *wrapped) Error() string { return "config x: " + w.err.Error() }
func (w *wrapped) Unwrap() error { return w.err }

// validConfig is a valid configuration built in code, defaults applied.
func validConfig() *Config {
	c := &Config{
		Store: Store{URL: NewSecret("env:STORE")},
		Orgs: []Org{{
			Name:     "st-mary",
			Schedule: Schedule{Every: 10 * time.Minute},
			Source: Source{
				Via: ViaDirect, Host: "sql01", Database: "NGProd", User: "reader",
				Password: NewSecret("env:PW"),
			},
			Tables: []Table{{Name: "dbo.claims"}, {Name: "dbo.charges"}},
		}},
	}
	c.ApplyDefaults()
	return c
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *Config)
		want   []string // one substring per expected problem; none = valid
	}{
		{name: "valid", mutate: func(*Config) {}},
		{name: "store url unset", mutate: func(c *Config) { c.Store.URL = Secret{} }, want: []string{"store.url: not set"}},
		{name: "listen without port", mutate: func(c *Config) { c.Server.Listen = "localhost" }, want: []string{`server.listen: "localhost" is not host:port`}},
		{name: "listen port 0", mutate: func(c *Config) { c.Server.Listen = "127.0.0.1:0" }, want: []string{`server.listen: port "0" is not 1..65535`}},
		{name: "listen all interfaces", mutate: func(c *Config) { c.Server.Listen = ":9464" }},
		{name: "admin token enc", mutate: func(c *Config) { c.Server.AdminToken = NewSecret("enc:abc") }, want: []string{"server.admin_token: unknown enc: version (want enc:v2:..., from ehrsync secrets encrypt --for KEY)"}},
		{name: "bad env name", mutate: func(c *Config) { c.Store.URL = NewSecret("env:1X") }, want: []string{`store.url: bad environment variable name "1X"`}},
		{name: "bad owner url env name", mutate: func(c *Config) { c.Store.OwnerURL = NewSecret("env:1X") }, want: []string{`store.owner_url: bad environment variable name "1X"`}},
		{name: "file without path", mutate: func(c *Config) { c.Store.URL = NewSecret("file:") }, want: []string{"store.url: file: reference without a path"}},
		{name: "defaults not applied", mutate: func(c *Config) { c.Defaults = Defaults{} }, want: []string{
			"defaults.batch_rows: must be positive", "defaults.batch_bytes: must be positive",
			"defaults.run_timeout: must be positive", "defaults.query_timeout: must be positive"}},
		{name: "no orgs", mutate: func(c *Config) { c.Orgs = nil }, want: []string{"orgs: no organizations"}},
		{name: "org name unset", mutate: func(c *Config) { c.Orgs[0].Name = "" }, want: []string{"orgs[0].name: not set"}},
		{name: "org name upper case", mutate: func(c *Config) { c.Orgs[0].Name = "StMary" }, want: []string{`orgs[0].name: "StMary" is not a valid name`}},
		{name: "org name starts with digit", mutate: func(c *Config) { c.Orgs[0].Name = "1st" }, want: []string{`orgs[0].name: "1st" is not a valid name`}},
		{name: "org name 50 chars", mutate: func(c *Config) { c.Orgs[0].Name = "a" + strings.Repeat("b", 49) }},
		{name: "org name 51 chars", mutate: func(c *Config) { c.Orgs[0].Name = "a" + strings.Repeat("b", 50) }, want: []string{"is not a valid name"}},
		{name: "org name pg_", mutate: func(c *Config) { c.Orgs[0].Name = "pg_x" }, want: []string{`orgs[0].name: "pg_x" is reserved`}},
		{name: "org name public", mutate: func(c *Config) { c.Orgs[0].Name = "public" }, want: []string{`"public" is reserved`}},
		{name: "no schedule", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{} }, want: []string{"orgs[0].schedule: set one of cron or every"}},
		{name: "negative every", mutate: func(c *Config) { c.Orgs[0].Schedule.Every = -time.Minute }, want: []string{"orgs[0].schedule.every: must be positive"}},
		{name: "start 24:00", mutate: func(c *Config) { c.Orgs[0].Schedule.Start = "24:00" }, want: []string{`orgs[0].schedule.start: "24:00" is not a time of day`}},
		{name: "start 23:59", mutate: func(c *Config) { c.Orgs[0].Schedule.Start = "23:59" }},
		{name: "start with cron", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 * * * *", Start: "02:00"} }, want: []string{"orgs[0].schedule.start: only with every"}},
		{name: "cron descriptor", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "@daily"} }},
		{name: "cron @every", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "@every 5m"} }, want: []string{"orgs[0].schedule.cron: use schedule.every"}},
		{name: "cron out of range", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "61 * * * *"} }, want: []string{`orgs[0].schedule.cron: bad cron expression "61 * * * *"`}},
		{name: "cron minute step past the hour", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "*/61 * * * *"} }, want: []string{
			`orgs[0].schedule.cron: the step /61 in the minute field ("*/61") is larger than the range it steps through, so it matches only minute 0`}},
		{name: "cron minute step of a whole hour", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "*/60 * * * *"} }, want: []string{"the step /60 in the minute field"}},
		{name: "cron largest minute step", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "*/59 * * * *"} }},
		{name: "cron step from a start", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "50/15 * * * *"} }, want: []string{`("50/15") is larger than the range it steps through, so it matches only minute 50`}},
		{name: "cron step in a range", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 8-17/12 * * *"} }, want: []string{"only hour 8"}},
		{name: "cron step in a list", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 3,*/25 * * *"} }, want: []string{"the step /25 in the hour field"}},
		{name: "cron hour step", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 */12 * * *"} }},
		{name: "cron day steps", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 0 */32 * *"} }, want: []string{"only day-of-month 1"}},
		{name: "cron weekday step by name", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 0 * * MON-FRI/7"} }, want: []string{"only day-of-week 1"}},
		{name: "cron month step", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 0 1 */6 *"} }},
		{name: "cron seconds field", mutate: func(c *Config) { c.Orgs[0].Schedule = Schedule{Cron: "0 */10 * * * *"} }, want: []string{"bad cron expression"}},
		{name: "timezone Local", mutate: func(c *Config) { c.Orgs[0].Schedule.Timezone = "Local" }, want: []string{"orgs[0].schedule.timezone: name a zone"}},
		{name: "vendor", mutate: func(c *Config) { c.Orgs[0].Source.Vendor = "epic" }, want: []string{`orgs[0].source.vendor: unknown vendor "epic"`}},
		{name: "dialect unknown skips port", mutate: func(c *Config) { c.Orgs[0].Source.Dialect = "mysql"; c.Orgs[0].Source.Port = 0 }, want: []string{`orgs[0].source.dialect: unknown dialect "mysql"`}},
		{name: "via unset", mutate: func(c *Config) { c.Orgs[0].Source.Via = "" }, want: []string{"orgs[0].source.via: not set"}},
		{name: "host unset", mutate: func(c *Config) { c.Orgs[0].Source.Host = "" }, want: []string{"orgs[0].source.host: not set"}},
		{name: "host url", mutate: func(c *Config) { c.Orgs[0].Source.Host = "tcp://sql01" }, want: []string{"is not a host name"}},
		{name: "host ipv6", mutate: func(c *Config) { c.Orgs[0].Source.Host = "fd00::15" }},
		{name: "port 0", mutate: func(c *Config) { c.Orgs[0].Source.Port = 0 }, want: []string{"orgs[0].source.port: 0 is not 1..65535"}},
		{name: "user unset", mutate: func(c *Config) { c.Orgs[0].Source.User = "" }, want: []string{"orgs[0].source.user: not set"}},
		{name: "password optional", mutate: func(c *Config) { c.Orgs[0].Source.Password = Secret{} }},
		{name: "practice id too long", mutate: func(c *Config) { c.Orgs[0].Source.PracticeIDs = []string{"00001"} }, want: []string{`practice_ids[0]: "00001" is not a 4-character practice_id`}},
		{name: "practice id duplicate", mutate: func(c *Config) { c.Orgs[0].Source.PracticeIDs = []string{"0001", "0001"} }, want: []string{`practice_ids[1]: duplicate practice_id "0001"`}},
		{name: "practice id quote", mutate: func(c *Config) { c.Orgs[0].Source.PracticeIDs = []string{"00'1"} }, want: []string{"is not a 4-character practice_id"}},
		{name: "relay probe https", mutate: func(c *Config) {
			c.Orgs[0].Source.Via = ViaRelay
			c.Orgs[0].Source.Relay = &Relay{Probe: "https://relay.example/health"}
		}},
		{name: "relay probe no port", mutate: func(c *Config) {
			c.Orgs[0].Source.Via = ViaRelay
			c.Orgs[0].Source.Relay = &Relay{Probe: "tcp://relay.example"}
		}, want: []string{`orgs[0].source.relay.probe: "tcp://relay.example" is not tcp://host:port`}},
		{name: "relay probe scheme", mutate: func(c *Config) {
			c.Orgs[0].Source.Via = ViaRelay
			c.Orgs[0].Source.Relay = &Relay{Probe: "http://relay.example"}
		}, want: []string{"want tcp://host:port or https://"}},
		{name: "ssh missing", mutate: func(c *Config) { c.Orgs[0].Source.Via = ViaSSH }, want: []string{"orgs[0].source.ssh: required with via: ssh"}},
		{name: "ssh with direct", mutate: func(c *Config) { c.Orgs[0].Source.SSH = validSSH() }, want: []string{"orgs[0].source.ssh: only with via: ssh"}},
		{name: "ssh valid", mutate: func(c *Config) { c.Orgs[0].Source.Via = ViaSSH; c.Orgs[0].Source.SSH = validSSH() }},
		{name: "ssh empty", mutate: func(c *Config) { c.Orgs[0].Source.Via = ViaSSH; c.Orgs[0].Source.SSH = &SSH{} }, want: []string{
			"orgs[0].source.ssh.host: not set", "orgs[0].source.ssh.port: 0 is not 1..65535", "orgs[0].source.ssh.user: not set",
			"orgs[0].source.ssh: set private_key or password", "orgs[0].source.ssh: set known_hosts or host_key_fingerprint"}},
		{name: "ssh bad fingerprint", mutate: func(c *Config) {
			c.Orgs[0].Source.Via = ViaSSH
			c.Orgs[0].Source.SSH = validSSH()
			c.Orgs[0].Source.SSH.HostKeyFingerprint = "MD5:aa:bb"
		}, want: []string{"orgs[0].source.ssh.host_key_fingerprint: want SHA256:<base64>"}},
		{name: "ssh enc key", mutate: func(c *Config) {
			c.Orgs[0].Source.Via = ViaSSH
			c.Orgs[0].Source.SSH = validSSH()
			c.Orgs[0].Source.SSH.PrivateKey = NewSecret("enc:zzz")
		}, want: []string{"orgs[0].source.ssh.private_key: unknown enc: version (want enc:v2:..., from ehrsync secrets encrypt --for KEY)"}},
		{name: "tls unset mode", mutate: func(c *Config) { c.Orgs[0].Source.TLS.Mode = "" }, want: []string{`orgs[0].source.tls.mode: unknown TLS mode ""`}},
		{name: "tls disable with ca", mutate: func(c *Config) { c.Orgs[0].Source.TLS = TLS{Mode: TLSDisable, CAFile: "/ca.pem", MinVersion: "1.2"} }, want: []string{"orgs[0].source.tls.mode: disable turns TLS off"}},
		{name: "tls trust and ca", mutate: func(c *Config) {
			c.Orgs[0].Source.TLS.TrustServerCertificate = true
			c.Orgs[0].Source.TLS.CAFile = "/ca.pem"
		}, want: []string{"orgs[0].source.tls.trust_server_certificate: turns verification off"}},
		{name: "tls trust alone, another machine", mutate: func(c *Config) { c.Orgs[0].Source.TLS.TrustServerCertificate = true }, want: []string{
			"orgs[0].source.tls.trust_server_certificate: true accepts any certificate from sql01, which is not this machine, so the connection can be intercepted: use tls.mode: require"}},
		{name: "tls trust alone, insecure_transport", mutate: func(c *Config) {
			c.Orgs[0].Source.TLS.TrustServerCertificate = true
			c.Orgs[0].Source.InsecureTransport = true
		}},
		{name: "tls disable, another machine", mutate: func(c *Config) { c.Orgs[0].Source.TLS.Mode = TLSDisable }, want: []string{
			"orgs[0].source.tls.mode: disable sends the connection to sql01, which is not this machine, unencrypted (passwords and rows readable on the way): use tls.mode: require (the default: the certificate verified against the system roots or tls.ca_file, its name against tls.server_name or host), or set insecure_transport: true on the source to accept it"}},
		{name: "tls disable, another machine by ip", mutate: func(c *Config) {
			c.Orgs[0].Source.TLS.Mode = TLSDisable
			c.Orgs[0].Source.Host = "10.1.2.3"
		}, want: []string{"orgs[0].source.tls.mode: disable sends the connection to 10.1.2.3"}},
		{name: "tls disable, via ssh to a server the bastion reaches over the network", mutate: func(c *Config) {
			c.Orgs[0].Source.Via = ViaSSH
			c.Orgs[0].Source.SSH = validSSH()
			c.Orgs[0].Source.TLS.Mode = TLSDisable
		}, want: []string{"orgs[0].source.tls.mode: disable sends the connection to sql01"}},
		{name: "tls disable, insecure_transport", mutate: func(c *Config) {
			c.Orgs[0].Source.TLS.Mode = TLSDisable
			c.Orgs[0].Source.InsecureTransport = true
		}},
		{name: "tls disable, localhost", mutate: func(c *Config) { c.Orgs[0].Source.TLS.Mode = TLSDisable; c.Orgs[0].Source.Host = "localhost" }},
		{name: "tls disable, 127.0.0.2", mutate: func(c *Config) { c.Orgs[0].Source.TLS.Mode = TLSDisable; c.Orgs[0].Source.Host = "127.0.0.2" }},
		{name: "tls disable, ::1", mutate: func(c *Config) { c.Orgs[0].Source.TLS.Mode = TLSDisable; c.Orgs[0].Source.Host = "::1" }},
		{name: "tls trust, loopback", mutate: func(c *Config) {
			c.Orgs[0].Source.TLS.TrustServerCertificate = true
			c.Orgs[0].Source.Host = "127.0.0.1"
		}},
		{name: "tls strict postgres", mutate: func(c *Config) {
			c.Orgs[0].Source.Dialect = Postgres
			c.Orgs[0].Source.TLS.Mode = TLSStrict
		}, want: []string{"orgs[0].source.tls.mode: strict is SQL Server only"}},
		{name: "tls strict trust", mutate: func(c *Config) {
			c.Orgs[0].Source.TLS.Mode = TLSStrict
			c.Orgs[0].Source.TLS.TrustServerCertificate = true
		}, want: []string{"orgs[0].source.tls.trust_server_certificate: not with mode strict"}},
		{name: "tls 1.1", mutate: func(c *Config) { c.Orgs[0].Source.TLS.MinVersion = "1.1" }, want: []string{`orgs[0].source.tls.min_version: "1.1"`}},
		{name: "timeouts", mutate: func(c *Config) { c.Orgs[0].Source.ConnectTimeout = 0; c.Orgs[0].Source.QueryTimeout = -1 }, want: []string{
			"orgs[0].source.connect_timeout: must be positive", "orgs[0].source.query_timeout: must be positive"}},
		{name: "no tables", mutate: func(c *Config) { c.Orgs[0].Tables = nil }, want: []string{"orgs[0].tables: no tables"}},
		{name: "parallel tables over the connections", mutate: func(c *Config) { c.Orgs[0].ParallelTables = 5 }, want: []string{
			"orgs[0].parallel_tables: must be between 1 and source.max_connections (4)"}},
		{name: "parallel tables at the connections", mutate: func(c *Config) { c.Orgs[0].ParallelTables = 4 }},
		{name: "table name unset", mutate: func(c *Config) { c.Orgs[0].Tables[1].Name = "" }, want: []string{"orgs[0].tables[1].name: not set"}},
		{name: "table name bracketed", mutate: func(c *Config) { c.Orgs[0].Tables[1].Name = "[dbo].[charges]" }, want: []string{"orgs[0].tables[1].name: \"[dbo].[charges]\": want table or schema.table"}},
		{name: "table name empty schema", mutate: func(c *Config) { c.Orgs[0].Tables[1].Name = ".charges" }, want: []string{"want table or schema.table"}},
		{name: "duplicate via default schema", mutate: func(c *Config) { c.Orgs[0].Tables[1].Name = "claims" }, want: []string{`orgs[0].tables[1].name: duplicate table "claims" (also tables[0])`}},
		{name: "same table other schema", mutate: func(c *Config) { c.Orgs[0].Tables[1].Name = "audit.claims" }},
		{name: "strategy unset", mutate: func(c *Config) { c.Orgs[0].Tables[0].Strategy = "" }, want: []string{`orgs[0].tables[0].strategy: unknown strategy ""`}},
		{name: "cdc sqlserver", mutate: func(c *Config) { c.Orgs[0].Tables[0].Strategy = StrategyCDC }},
		{name: "cursor bad identifier", mutate: func(c *Config) { c.Orgs[0].Tables[0].Cursor = "modify\ttimestamp" }, want: []string{`orgs[0].tables[0].cursor: "modify\ttimestamp" is not a usable SQL identifier`}},
		{name: "look back with cursor on auto", mutate: func(c *Config) {
			c.Orgs[0].Tables[0].Cursor = "modify_timestamp"
			c.Orgs[0].Tables[0].LookBack = time.Minute
		}},
		{name: "look back hwm without cursor", mutate: func(c *Config) {
			c.Orgs[0].Tables[0].Strategy = StrategyHWM
			c.Orgs[0].Tables[0].LookBack = time.Minute
		}},
		{name: "look back cdc", mutate: func(c *Config) {
			c.Orgs[0].Tables[0].Strategy = StrategyCDC
			c.Orgs[0].Tables[0].LookBack = time.Minute
		}, want: []string{"orgs[0].tables[0].look_back: only with a cursor or strategy hwm"}},
		{name: "column bad identifier", mutate: func(c *Config) { c.Orgs[0].Tables[0].Columns = []string{"claim_id", " x;drop"} }, want: []string{`orgs[0].tables[0].columns[1]: " x;drop" is not a usable SQL identifier`}},
		{name: "delete policy unset", mutate: func(c *Config) { c.Orgs[0].Tables[0].DeletePolicy = "" }, want: []string{`orgs[0].tables[0].delete_policy: unknown delete policy ""`}},
		{name: "batch rows zero inherits", mutate: func(c *Config) { c.Orgs[0].Tables[0].BatchRows = 0 }},
		{name: "second org problems keyed", mutate: func(c *Config) {
			o := c.Orgs[0]
			o.Name = "lakeside"
			o.Tables = []Table{{Name: "dbo.claims", Strategy: "bogus", DeletePolicy: DeleteHard, OnExpired: ExpiredResnapshot}}
			c.Orgs = append(c.Orgs, o)
		}, want: []string{`orgs[1].tables[0].strategy: unknown strategy "bogus"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(c)
			err := c.Validate()
			if len(tt.want) == 0 {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			problems := Problems(err)
			var texts []string
			for _, p := range problems {
				var fe *FieldError
				require.ErrorAs(t, p, &fe)
				require.NotEmpty(t, fe.Key)
				texts = append(texts, p.Error())
			}
			for _, w := range tt.want {
				require.Truef(t, containsAny(texts, w), "want a problem containing %q; got:\n%s", w, strings.Join(texts, "\n"))
			}
			require.Lenf(t, problems, len(tt.want), "problems:\n%s", strings.Join(texts, "\n"))
		})
	}
}

func validSSH() *SSH {
	return &SSH{
		Host: "bastion.example", Port: 22, User: "tunnel",
		PrivateKey: NewSecret("file:/etc/ehrsync/id_ed25519"),
		KnownHosts: "/etc/ehrsync/known_hosts",
	}
}

func TestTLSVersion(t *testing.T) {
	require.Equal(t, uint16(0x0303), TLS{MinVersion: "1.2"}.Version())
	require.Equal(t, uint16(0x0304), TLS{MinVersion: "1.3"}.Version())
	require.Equal(t, uint16(0x0303), TLS{}.Version())
}

func TestLocations(t *testing.T) {
	loc, err := Schedule{Timezone: "America/Chicago"}.Location()
	require.NoError(t, err)
	require.Equal(t, "America/Chicago", loc.String())
	loc, err = Schedule{}.Location()
	require.NoError(t, err)
	require.Equal(t, time.UTC, loc)
	_, err = Schedule{Timezone: "Mars/Olympus"}.Location()
	require.Error(t, err)
}

// TestSourceTimezoneDeprecated: source.timezone was documented and never
// used. A file that sets it still loads, even with a zone that does not
// exist, and the source's deprecations (printed by validate, check and
// at start) say to remove it.
func TestSourceTimezoneDeprecated(t *testing.T) {
	c, err := Parse([]byte(`
store: {url: env:STORE}
orgs:
  - name: st-mary
    schedule: {every: 10m}
    source: {via: direct, host: sql01, database: NGProd, user: reader, timezone: Central}
    tables: [{name: dbo.claims}]
`))
	require.NoError(t, err)
	s := c.Orgs[0].Source
	require.Equal(t, "Central", s.Timezone)
	require.Len(t, s.Deprecations(), 1)
	require.Contains(t, s.Deprecations()[0], "source.timezone is deprecated and unused")
	require.Contains(t, s.Deprecations()[0], "remove it")
}

// TestServerSPN: server_spn defaults to MSSQLSvc/<tls.server_name or
// host>:<port> with kerberos, is kept when set, and is refused without
// kerberos or in another shape.
func TestServerSPN(t *testing.T) {
	load := func(t *testing.T, source string) (*Config, error) {
		t.Helper()
		return Parse([]byte(`
store: {url: env:STORE}
orgs:
  - name: st-mary
    schedule: {every: 10m}
    source: {via: relay, host: relay.internal, port: 11433, database: NGProd, user: ehrsync, ` + source + `}
    tables: [{name: dbo.claims}]
`))
	}
	const krb = `kerberos: {realm: HOSPITAL.LOCAL, config_file: /etc/krb5.conf, keytab: /etc/ehrsync/ehrsync.keytab}`
	c, err := load(t, krb)
	require.NoError(t, err)
	require.Equal(t, "MSSQLSvc/relay.internal:11433", c.Orgs[0].Source.ServerSPN)

	c, err = load(t, krb+`, tls: {server_name: ngsql01.hospital.local}`)
	require.NoError(t, err)
	require.Equal(t, "MSSQLSvc/ngsql01.hospital.local:11433", c.Orgs[0].Source.ServerSPN, "the certificate's name is the server's")

	c, err = load(t, krb+`, server_spn: MSSQLSvc/ngsql01.hospital.local:1433`)
	require.NoError(t, err)
	require.Equal(t, "MSSQLSvc/ngsql01.hospital.local:1433", c.Orgs[0].Source.ServerSPN)

	_, err = load(t, `server_spn: MSSQLSvc/ngsql01.hospital.local:1433`)
	require.ErrorContains(t, err, "orgs[0].source.server_spn: only with kerberos")
	for _, bad := range []string{"ngsql01:1433", "HTTP/ngsql01:1433", "MSSQLSvc/", "MSSQLSvc/:1433", "'MSSQLSvc/ngsql 01:1433'", "MSSQLSvc/ngsql01:1433@HOSPITAL.LOCAL"} {
		_, err = load(t, krb+`, server_spn: `+bad)
		require.ErrorContains(t, err, "orgs[0].source.server_spn: ", bad)
		require.ErrorContains(t, err, "is not a SQL Server service principal name", bad)
	}
}
