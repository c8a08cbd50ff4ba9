package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/secrets"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/status"
	"github.com/ehrsync/ehrsync/pkg/terminal"
)

func init() { register(statusCommandTree) }

// statusOptions is `ehrsync status`'s command line.
type statusOptions struct {
	Config string
	Org    string
	Tables []string
	JSON   bool
	// Watch redraws the report every Watch until interrupted; 0: once.
	Watch time.Duration
	// StaleAfter is the staleness threshold; 0: three schedule intervals.
	StaleAfter time.Duration
	// Admin is the daemon's admin API (https://HOST:PORT); "": read the
	// store. AdminToken is the bearer token (a secret reference), AdminCA
	// a PEM file of the CA that signed the admin API's certificate.
	Admin      string
	AdminToken config.Secret
	AdminCA    string
}

// defaultWatch is --watch's interval when none is given.
const defaultWatch = 10 * time.Second

func statusCommandTree(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use: "status --config FILE [--org NAME [--table NAME ...]] [--json] [--watch[=INTERVAL]] [--stale-after DURATION]\n" +
			"  ehrsync status --admin URL [--admin-token SECRET] [--admin-ca FILE] [--org NAME [--table NAME ...]] [--json] [--watch[=INTERVAL]]",
		Short: "show each table's state, last run, freshness, next run and lease, from the store or a daemon's admin API",
		Long: "Per organization and table: strategy, state, position summary (never key values), last run (when, outcome,\n" +
			"error class, rows), freshness, next scheduled run and lease holder. For tables with lake on, the change lake\n" +
			"as the store records it: its last commit, claim, rows appended in all, the position it holds to (a summary)\n" +
			"and what waits in the table's lake outbox (chunks, rows, bytes, since when). Read from the store, with or\n" +
			"without a daemon; --admin reads a running daemon's report instead.\n" +
			"Exit 1 when a table needs attention: failing, expired, corrupt, stale, or its lake behind the store (a chunk\n" +
			"has waited in the lake outbox longer than the staleness threshold, --stale-after).",
	}
	var o statusOptions
	path, org, tables, asJSON := configFlag(c), orgFlag(c), tablesFlag(c), jsonFlag(c)
	c.Flags().DurationVar(&o.Watch, "watch", 0, "redraw the report every INTERVAL (--watch=30s; alone: "+defaultWatch.String()+") until interrupted")
	c.Flags().Lookup("watch").NoOptDefVal = defaultWatch.String()
	c.Flags().DurationVar(&o.StaleAfter, "stale-after", 0, "a table not synced for longer is stale (default: three intervals of its organization's schedule)")
	c.Flags().StringVar(&o.Admin, "admin", "", "read the report from a running daemon's admin API (https://HOST:PORT, or http:// on loopback), with what only it knows: its next run, a run in progress, a paused schedule")
	token := c.Flags().String("admin-token", "env:EHRSYNC_ADMIN_TOKEN", "the admin API token: env:NAME, file:PATH or enc:...")
	c.Flags().StringVar(&o.AdminCA, "admin-ca", "", "PEM file of the CA that signed the admin API's certificate (default: the system's roots)")
	c.RunE = func(c *cobra.Command, _ []string) error {
		if c.Flags().Changed("watch") && o.Watch < time.Second {
			return usageError{errors.New("--watch: want an interval of 1s or more, such as 30s or 5m")}
		}
		o.Config, o.Org, o.Tables, o.JSON = *path, *org, *tables, *asJSON
		o.AdminToken = config.NewSecret(*token).For("server.admin_token")
		return statusCommand(c.Context(), env, o)
	}
	return c
}

// statusCommand prints the report once, or every o.Watch until ctx ends,
// and fails when a table needs attention (failing, expired, corrupt,
// stale, or its lake behind) in the last report.
func statusCommand(ctx context.Context, env *environment, o statusOptions) error {
	if len(o.Tables) > 0 && o.Org == "" {
		return usageError{errors.New("--table needs --org")}
	}
	if o.StaleAfter < 0 {
		return usageError{errors.New("--stale-after: want a positive duration such as 30m")}
	}
	var (
		gather func(context.Context) (*status.Report, error)
		err    error
	)
	if o.Admin != "" {
		gather, err = adminStatus(o)
	} else {
		var done func()
		gather, done, err = storeStatus(ctx, env, o)
		if done != nil {
			defer done()
		}
	}
	if err != nil {
		return err
	}
	if o.Watch == 0 {
		rep, err := gather(ctx)
		if err != nil {
			return err
		}
		if err := writeStatus(env.stdout, rep, o.JSON, false); err != nil {
			return err
		}
		return attention(rep)
	}
	tty := false
	if f, ok := env.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	tick := time.NewTicker(o.Watch)
	defer tick.Stop()
	var last error
	for {
		rep, err := gather(ctx)
		if ctx.Err() != nil {
			return last
		}
		if tty && !o.JSON {
			fmt.Fprint(env.stdout, "\033[H\033[2J")
		}
		if err != nil {
			// A store or daemon that is away for a moment: say so, and
			// try again at the next tick.
			fmt.Fprintf(env.stderr, "ehrsync status: %v\n", err)
			last = err
		} else {
			if err := writeStatus(env.stdout, rep, o.JSON, true); err != nil {
				return err
			}
			last = attention(rep)
		}
		select {
		case <-ctx.Done():
			return last
		case <-tick.C:
		}
	}
}

// writeStatus prints rep: indented JSON, or one line of JSON per report
// when watching; else text, followed by a blank line when watching.
func writeStatus(w io.Writer, rep *status.Report, asJSON, watching bool) error {
	switch {
	case asJSON && watching:
		return json.NewEncoder(w).Encode(rep)
	case asJSON:
		return rep.WriteJSON(w)
	}
	if err := rep.WriteText(w); err != nil {
		return err
	}
	if watching {
		_, err := fmt.Fprintln(w)
		return err
	}
	return nil
}

// attention is the command's failure when tables need an operator.
func attention(rep *status.Report) error {
	problems := rep.Attention()
	if len(problems) == 0 {
		return nil
	}
	names := make([]string, len(problems))
	for i, p := range problems {
		names[i] = terminal.Escape(p.String())
	}
	return fmt.Errorf("%d need attention: %s", len(problems), strings.Join(names, ", "))
}

// storeStatus gathers reports from the store, as store.url's role; it
// changes nothing there (no migrations). done closes the store's pool.
func storeStatus(ctx context.Context, env *environment, o statusOptions) (gather func(context.Context) (*status.Report, error), done func(), err error) {
	cfg, orgs, err := loadOrgs(o.Config, o.Org)
	if err != nil {
		return nil, nil, err
	}
	for _, t := range o.Tables {
		if _, ok := orgs[0].Table(t); !ok {
			return nil, nil, usageError{fmt.Errorf("--table %s: org %s has no such table in %s", t, orgs[0].Name, o.Config)}
		}
	}
	catalog, err := service.Catalog(cfg)
	if err != nil {
		return nil, nil, err
	}
	pool, err := service.StorePool(ctx, cfg, env.log)
	if err != nil {
		return nil, nil, err
	}
	st := status.New(pool)
	opts := status.Options{Orgs: orgs, Tables: o.Tables, Catalog: catalog, StaleAfter: o.StaleAfter}
	return func(ctx context.Context) (*status.Report, error) { return st.Gather(ctx, opts) }, pool.Close, nil
}

// adminStatus gathers reports from a daemon's GET /admin/status.
func adminStatus(o statusOptions) (func(context.Context) (*status.Report, error), error) {
	u, err := url.Parse(o.Admin)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return nil, usageError{fmt.Errorf("--admin: want the admin API's URL, https://HOST:PORT (http:// on loopback only)")}
	}
	if u.Scheme == "http" && !config.IsLoopback(u.Hostname()) {
		return nil, usageError{fmt.Errorf("--admin %s: the token would cross the network in clear text: use https:// (server.admin_tls)", u.Host)}
	}
	token, err := o.AdminToken.Reveal()
	if err != nil {
		return nil, usageError{fmt.Errorf("--admin-token: %w", err)}
	}
	if token == "" {
		return nil, usageError{fmt.Errorf("--admin-token: no token (%s is empty): give the operator's token as env:NAME or file:PATH", o.AdminToken)}
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if o.AdminCA != "" {
		pem, err := secrets.ReadTrusted(o.AdminCA)
		if err != nil {
			return nil, fmt.Errorf("--admin-ca: %w", err)
		}
		roots := x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--admin-ca %s: no PEM certificate in it", o.AdminCA)
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	}
	client := &http.Client{Transport: transport, Timeout: time.Minute}
	q := url.Values{}
	if o.Org != "" {
		q.Set("org", o.Org)
	}
	for _, t := range o.Tables {
		q.Add("table", t)
	}
	if o.StaleAfter > 0 {
		q.Set("stale_after", o.StaleAfter.String())
	}
	endpoint := u.JoinPath("admin", "status")
	endpoint.RawQuery = q.Encode()
	where := u.Redacted()
	return func(ctx context.Context) (*status.Report, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint.String(), nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := client.Do(req)
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err // without the request's URL: the report's own is named
		}
		if err != nil {
			return nil, fmt.Errorf("admin API %s: %w", where, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			why := strings.TrimSpace(string(body))
			var e struct {
				Error string `json:"error"`
			}
			if json.Unmarshal(body, &e) == nil && e.Error != "" {
				why = e.Error // the admin API answers errors as {"error": ...}
			}
			err := fmt.Errorf("admin API %s: %s: %s", where, resp.Status, terminal.Escape(why))
			if resp.StatusCode == http.StatusNotFound && (o.Org != "" || len(o.Tables) > 0) {
				return nil, usageError{err}
			}
			return nil, err
		}
		var rep status.Report
		if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<20)).Decode(&rep); err != nil {
			return nil, fmt.Errorf("admin API %s: read the report: %w", where, err)
		}
		return &rep, nil
	}, nil
}
