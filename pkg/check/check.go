// Package check is ehrsync's "Test Connection": for each organization it
// walks the path to the source step by step (secrets, relay probe, DNS,
// TCP, SSH, TLS, login, a test query, version, database), then checks each
// configured table (exists, key, CDC/CT status, capture agent health,
// permissions the planned strategy needs, the plan itself), and reports
// each step's result, duration and, on failure, the error class with its
// fix (package source). Every step has its own timeout, so a check always
// finishes.
//
// Before the sources, Check tests the store as sync meets it (RunStore):
// its URL and transport, the connection, the schema's migrations and the
// writer's privileges; then, when a table has lake on, the change lake
// (RunLake): its storage secrets, its catalog in the store, and that its
// warehouse takes, returns and deletes a file.
//
// A report never holds a secret or a row value: failures are shown by
// their class's fixed texts (worded for the source's dialect and port),
// with the secret's reference when one does not resolve, and the driver's
// cause only for a refused login or database (the server's message names
// a user, a database or an address); other database messages are never
// shown.
package check

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	mssql "github.com/microsoft/go-mssqldb"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/source"
	"github.com/ehrsync/ehrsync/schemas"
)

// SchemaVersion is the version of the JSON report's schema; it changes only
// when a field changes meaning or goes away.
const SchemaVersion = 1

// DefaultStepTimeout bounds each step when Options.StepTimeout is 0.
const DefaultStepTimeout = 15 * time.Second

// Options are what a check needs besides the organization.
type Options struct {
	// StepTimeout bounds each step (DNS, TCP, login, each query).
	StepTimeout time.Duration
	// Catalog resolves the configured tables (schemas.NextGen()).
	Catalog *schemas.Catalog
	// Planner says which strategy each table will use; nil skips the plan.
	// A planner that describes tables (engine.Describer) finds schema drift
	// as a sync does.
	Planner engine.Planner
	// ConfigPath is the configuration file, for the commands fixes name
	// (ehrsync migrate --config FILE).
	ConfigPath string
}

// Status is a step's outcome.
type Status string

// The outcomes. Only StatusFailed makes an organization unhealthy.
const (
	StatusOK      Status = "ok"
	StatusFailed  Status = "failed"
	StatusWarning Status = "warning"
	StatusSkipped Status = "skipped"
)

// Problem is a failure's class: a stable code, a cause, a fix, and for a
// missing permission the GRANT that fixes it.
type Problem struct {
	Code  string `json:"code"`
	Cause string `json:"cause"`
	Fix   string `json:"fix"`
	Grant string `json:"grant,omitempty"`
}

// Step is one step's result.
type Step struct {
	Name       string   `json:"name"`
	Status     Status   `json:"status"`
	DurationMS int64    `json:"duration_ms"`
	Detail     string   `json:"detail,omitempty"`
	Problem    *Problem `json:"problem,omitempty"`
}

// Permission is one permission a table's strategy needs (or could use).
type Permission struct {
	Name    string `json:"name"`              // "SELECT", "VIEW CHANGE TRACKING", "SELECT ON SCHEMA cdc"
	Needed  bool   `json:"needed"`            // by the planned strategy
	Granted *bool  `json:"granted,omitempty"` // nil: could not be checked
	Grant   string `json:"grant,omitempty"`   // the statement that grants it, when not granted
}

// TableReport is one table's checks.
type TableReport struct {
	Name        string       `json:"name"`
	Status      Status       `json:"status"`
	Exists      bool         `json:"exists"`
	Key         []string     `json:"key,omitempty"` // primary key at the source
	CDC         string       `json:"cdc,omitempty"` // "enabled", "disabled", "unknown"; SQL Server only
	CT          string       `json:"change_tracking,omitempty"`
	Permissions []Permission `json:"permissions,omitempty"`
	Strategy    string       `json:"strategy,omitempty"`
	Why         string       `json:"why,omitempty"`
	Blind       string       `json:"blind,omitempty"` // what the strategy cannot see
	Problems    []Problem    `json:"problems,omitempty"`
	Notes       []string     `json:"notes,omitempty"`
}

// OrgReport is one organization's report.
type OrgReport struct {
	Name     string        `json:"name"`
	Dialect  string        `json:"dialect"`
	Via      string        `json:"via"`
	Healthy  bool          `json:"healthy"`
	Steps    []Step        `json:"steps"`
	Tables   []TableReport `json:"tables"`
	Warnings []string      `json:"warnings,omitempty"`
}

// Report is the whole check: healthy when the store (when checked) and
// every organization are.
type Report struct {
	SchemaVersion int          `json:"schema_version"`
	Healthy       bool         `json:"healthy"`
	Store         *StoreReport `json:"store,omitempty"`
	// Lake is the change lake's checks, when a table has lake on.
	Lake *LakeReport `json:"lake,omitempty"`
	Orgs []OrgReport `json:"orgs"`
}

// Check checks cfg's store (RunStore), then each of orgs (cfg's
// organizations, or those the caller selected): what `ehrsync check`
// reports.
func Check(ctx context.Context, cfg *config.Config, orgs []config.Org, opts Options) Report {
	store, pool := checkStore(ctx, cfg, orgs, opts)
	var lk *LakeReport
	if config.LakeUsed(cfg.Orgs) {
		l := runLake(ctx, cfg, pool, &store, opts)
		lk = &l
	}
	if pool != nil {
		pool.Close()
	}
	r := Run(ctx, orgs, opts)
	r.Store, r.Lake = &store, lk
	r.Healthy = r.Healthy && store.Healthy && (lk == nil || lk.Healthy)
	return r
}

// Run checks each organization in turn.
func Run(ctx context.Context, orgs []config.Org, opts Options) Report {
	r := Report{SchemaVersion: SchemaVersion, Healthy: true}
	for i := range orgs {
		o := RunOrg(ctx, &orgs[i], opts)
		r.Healthy = r.Healthy && o.Healthy
		r.Orgs = append(r.Orgs, o)
	}
	return r
}

// problemFor is err's class as a Problem (nil for nil), its texts worded
// for src (Class.For: the source's dialect and port).
func problemFor(err error, src config.Source) *Problem {
	c := source.Classify(err)
	if c == nil {
		return nil
	}
	c = c.For(src)
	p := &Problem{Code: c.Code, Cause: c.Cause, Fix: c.Fix}
	var pe *source.PermissionError
	if errors.As(err, &pe) {
		p.Grant = pe.Grant
	}
	return p
}

// checker holds one organization's check.
type checker struct {
	opts Options
	org  *config.Org
	rep  *OrgReport
}

// problem is err's class as a Problem, as it reads for the source.
func (c *checker) problem(err error) *Problem { return problemFor(err, c.org.Source) }

// step runs fn with the step timeout and records it; it reports whether
// the step did not fail.
func (c *checker) step(ctx context.Context, name string, fn func(ctx context.Context) (string, error)) bool {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
	defer cancel()
	start := time.Now()
	detail, err := fn(ctx)
	s := Step{Name: name, Status: StatusOK, DurationMS: time.Since(start).Milliseconds(), Detail: detail}
	if err != nil {
		s.Status, s.Problem = StatusFailed, c.problem(err)
		if d := safeDetail(err); d != "" {
			s.Detail = strings.TrimSpace(s.Detail + " " + d)
		}
		if ctx.Err() != nil && s.Problem.Code == source.ClassUnknown.Code {
			s.Problem = c.problem(ctx.Err())
		}
	}
	c.rep.Steps = append(c.rep.Steps, s)
	return err == nil
}

func (c *checker) add(name string, status Status, detail string, p *Problem) {
	c.rep.Steps = append(c.rep.Steps, Step{Name: name, Status: status, Detail: detail, Problem: p})
}

// RunOrg checks one organization.
func RunOrg(ctx context.Context, org *config.Org, opts Options) OrgReport {
	if opts.StepTimeout <= 0 {
		opts.StepTimeout = DefaultStepTimeout
	}
	src := org.Source
	rep := OrgReport{Name: org.Name, Dialect: string(src.Dialect), Via: string(src.Via)}
	c := &checker{opts: opts, org: org, rep: &rep}
	c.connectAndInspect(ctx)
	rep.Healthy = true
	for _, s := range rep.Steps {
		if s.Status == StatusFailed {
			rep.Healthy = false
		}
	}
	for _, t := range rep.Tables {
		if t.Status == StatusFailed {
			rep.Healthy = false
		}
	}
	if rep.Steps == nil {
		rep.Steps = []Step{}
	}
	if rep.Tables == nil {
		rep.Tables = []TableReport{}
	}
	return rep
}

func (c *checker) connectAndInspect(ctx context.Context) {
	src := c.org.Source
	c.rep.Warnings = append(c.rep.Warnings, source.Warnings(src)...)
	if !c.step(ctx, "secrets", func(context.Context) (string, error) {
		if _, err := src.Password.Reveal(); err != nil {
			return "", fmt.Errorf("source.password: %w", err)
		}
		if src.SSH != nil {
			if _, err := src.SSH.PrivateKey.Reveal(); err != nil {
				return "", fmt.Errorf("source.ssh.private_key: %w", err)
			}
			if _, err := src.SSH.Password.Reveal(); err != nil {
				return "", fmt.Errorf("source.ssh.password: %w", err)
			}
		}
		return "resolved", nil
	}) {
		return
	}
	dialer, err := source.NewDialer(src)
	if err != nil {
		c.add("connect", StatusFailed, safeDetail(err), c.problem(err))
		return
	}
	defer dialer.Close()
	hop, addr := dialer.FirstHop()
	probeOK := true
	if src.Relay != nil && src.Relay.Probe != "" {
		probeOK = c.step(ctx, "relay probe", func(ctx context.Context) (string, error) {
			return src.Relay.Probe, source.Probe(ctx, src, c.opts.StepTimeout)
		})
	}
	host, _, _ := net.SplitHostPort(addr)
	if net.ParseIP(host) == nil {
		if !c.step(ctx, "dns", func(ctx context.Context) (string, error) {
			ips, err := net.DefaultResolver.LookupHost(ctx, host)
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s → %v", host, ips), nil
		}) {
			return
		}
	}
	if !c.step(ctx, "tcp "+string(hop), func(ctx context.Context) (string, error) {
		var nd net.Dialer
		conn, err := nd.DialContext(ctx, "tcp", addr)
		if err != nil {
			return addr, &source.DialError{Hop: hop, Addr: addr, Err: err}
		}
		return addr + " accepts connections", conn.Close()
	}) {
		return
	}
	if !probeOK {
		c.rep.Warnings = append(c.rep.Warnings, "the relay endpoint accepts connections but its health probe failed")
	}
	if t := dialer.Tunnel(); t != nil {
		if !c.step(ctx, "ssh", func(ctx context.Context) (string, error) {
			return "host key verified, authenticated as " + src.SSH.User, t.Connect(ctx)
		}) {
			return
		}
		if !c.step(ctx, "tunnel", func(ctx context.Context) (string, error) {
			conn, err := t.DialContext(ctx, dialer.Addr())
			if err != nil {
				return "", err
			}
			return "bastion reaches " + dialer.Addr(), conn.Close()
		}) {
			return
		}
	}
	dialer.Close()

	// Login (with TLS inside it for SQL Server, and before it for PostgreSQL).
	var db *sql.DB
	lctx, cancel := context.WithTimeout(ctx, c.opts.StepTimeout)
	start := time.Now()
	db, err = source.Open(lctx, src)
	cancel()
	elapsed := time.Since(start).Milliseconds()
	tlsStep := Step{Name: "tls", Status: StatusOK, DurationMS: elapsed}
	switch {
	case src.TLS.Mode == config.TLSDisable:
		tlsStep.Status, tlsStep.Detail = StatusWarning, "disabled by tls.mode"
	case src.TLS.TrustServerCertificate:
		tlsStep.Status, tlsStep.Detail = StatusWarning, "encrypted, certificate NOT verified (trust_server_certificate)"
	default:
		tlsStep.Detail = "encrypted, certificate verified"
	}
	p := c.problem(err)
	if err != nil && ctx.Err() == nil && lctx.Err() != nil && p.Code == source.ClassUnknown.Code {
		p = c.problem(context.DeadlineExceeded)
	}
	if p != nil && isTLS(p.Code) {
		tlsStep.Status, tlsStep.Detail, tlsStep.Problem = StatusFailed, "", p
		c.rep.Steps = append(c.rep.Steps, tlsStep)
		c.add("login", StatusSkipped, "", nil)
		return
	}
	if p != nil {
		tlsStep.Status, tlsStep.Detail = StatusSkipped, "not reached"
		c.rep.Steps = append(c.rep.Steps, tlsStep)
		c.rep.Steps = append(c.rep.Steps, Step{Name: "login", Status: StatusFailed, DurationMS: elapsed, Detail: safeDetail(err), Problem: p})
		return
	}
	defer db.Close()
	c.rep.Steps = append(c.rep.Steps, tlsStep)
	c.rep.Steps = append(c.rep.Steps, Step{Name: "login", Status: StatusOK, DurationMS: elapsed, Detail: "as " + src.User})
	if !c.step(ctx, "query", func(ctx context.Context) (string, error) {
		var one int
		return "SELECT 1", db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	}) {
		return
	}
	c.step(ctx, "version", func(ctx context.Context) (string, error) { return version(ctx, db, src.Dialect) })
	c.step(ctx, "database", func(ctx context.Context) (string, error) {
		q := "SELECT current_database()"
		if src.Dialect == config.SQLServer {
			q = "SELECT DB_NAME()"
		}
		var name string
		return name, db.QueryRowContext(ctx, q).Scan(&name)
	})
	anyCDC := false
	for _, tc := range c.org.Tables {
		t := c.table(ctx, db, tc)
		anyCDC = anyCDC || t.CDC == "enabled"
		c.rep.Tables = append(c.rep.Tables, t)
	}
	if anyCDC {
		c.captureAgent(ctx, db)
	}
}

// safeDetail is what may be shown of an error: the driver's cause of a
// refused login (driverCause), a secret that does not resolve (by
// reference: env:STMARY_PASSWORD is not set), and the text of
// network-level errors, which hold addresses and system error names only;
// database messages are otherwise never shown (they can quote values).
func safeDetail(err error) string {
	if d := driverCause(err); d != "" {
		return d
	}
	var open *secrets.PermissionError
	if errors.As(err, &open) { // a path and a mode, never the content
		return "(" + open.Error() + ")"
	}
	if source.Classify(err) == source.ClassSecret {
		// Secret.Reveal's errors name the reference, never a value.
		return "(" + err.Error() + ")"
	}
	var dial *source.DialError
	if errors.As(err, &dial) {
		return "(" + dial.Err.Error() + ")"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return "(" + dns.Error() + ")"
	}
	return ""
}

func isTLS(code string) bool {
	switch code {
	case source.ClassTLS.Code, source.ClassTLSExpired.Code, source.ClassTLSUnknownCA.Code, source.ClassTLSWrongHost.Code:
		return true
	}
	return false
}

func version(ctx context.Context, db *sql.DB, d config.Dialect) (string, error) {
	if d == config.SQLServer {
		var v, ed string
		err := db.QueryRowContext(ctx, "SELECT CAST(SERVERPROPERTY('ProductVersion') AS nvarchar(128)), CAST(SERVERPROPERTY('Edition') AS nvarchar(128))").Scan(&v, &ed)
		return fmt.Sprintf("SQL Server %s, %s", v, ed), err
	}
	var v string
	err := db.QueryRowContext(ctx, "SELECT version()").Scan(&v)
	return v, err
}

// sqlServerError is the number and message of the SQL Server error err
// holds.
func sqlServerError(err error) (int32, string, bool) {
	var ms mssql.Error
	if errors.As(err, &ms) {
		return ms.Number, ms.Message, true
	}
	return 0, "", false
}
