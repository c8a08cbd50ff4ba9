package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/admin"
	"github.com/ehrsync/ehrsync/pkg/backfill"
	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/lake"
	"github.com/ehrsync/ehrsync/pkg/service"
)

func init() { register(runCommand) }

func runCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "run --config FILE [--listen HOST:PORT] [--concurrency N] [--jitter D] [--grace D] [--retries N] [--backoff D]",
		Short: "run the daemon: every organization on its schedule, with /metrics, /healthz, /readyz and the admin API",
		Long: "Run the daemon: every organization on its schedule, under table leases, with retries of transient errors,\n" +
			"/metrics, /healthz and /readyz on --listen and the admin API on server.admin_listen. SIGHUP reloads --config;\n" +
			"SIGTERM stops it, letting runs in flight finish within --grace.",
	}
	path := configFlag(c)
	f := c.Flags()
	listen := f.String("listen", "", "HTTP listen address for metrics and health (default: server.listen, "+config.DefaultListen+"); the admin API listens on server.admin_listen")
	concurrency := f.Int("concurrency", 4, "organizations run at once")
	jitter := f.Duration("jitter", 2*time.Second, "random delay before each scheduled run, at most this")
	grace := f.Duration("grace", 30*time.Second, "on SIGTERM, how long runs in flight may finish before they are canceled")
	retries := f.Int("retries", 3, "retries of a table after a transient error (timeouts, deadlocks, dropped connections); -1: none")
	backoff := f.Duration("backoff", 5*time.Second, "first retry delay; doubles each retry, up to 5m")
	agentLag := f.Duration("capture-agent-lag", 5*time.Minute, "how long a SQL Server CDC capture job may go without a finished log scan before ehrsync_source_capture_agent_up is 0")
	c.RunE = func(c *cobra.Command, _ []string) error {
		return runDaemon(c.Context(), env, *path, *listen, daemon.Options{
			Concurrency: *concurrency, Jitter: *jitter, Grace: *grace, Retries: *retries, Backoff: *backoff, Actor: "daemon",
			Agent: service.CaptureAgent(*agentLag),
		})
	}
	return c
}

// runDaemon runs the daemon of the configuration at path until ctx ends.
func runDaemon(ctx context.Context, env *environment, path, listen string, opts daemon.Options) error {
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	addr := cfg.Server.Listen
	if listen != "" {
		addr = listen
	}
	if addr == "" {
		addr = config.DefaultListen
	}
	operators, err := adminOperators(cfg.Server)
	if err != nil {
		return err
	}
	for _, w := range cfg.Server.Warnings() {
		env.log.Warn("admin API reachable from other machines", "warning", w)
	}

	service.WarnSources(ctx, cfg.Orgs, env.log)
	svc, err := service.Open(ctx, cfg, env.log, "daemon", opts.Concurrency)
	if err != nil {
		return err
	}
	defer svc.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc.Instrument(reg)
	metrics := daemon.NewMetrics(reg)
	backfills := svc.Backfills(backfill.Options{Log: env.log, Metrics: backfill.NewMetrics(reg), WaitForLease: true})
	if svc.Lake != nil {
		opts.LakeEvery = cfg.Lake.MaintainEvery
		opts.LakeMaintenance = func(ctx context.Context, org *config.Org) {
			for _, t := range svc.LakeTables(org) {
				r, err := svc.MaintainLake(ctx, t, opts.Actor, lake.MaintainOptions{})
				switch {
				case err != nil:
					env.log.Error("lake maintenance failed", "org", org.Name, "table", t.Table, "err", err)
				case r.Busy:
					env.log.Info("lake maintenance skipped: a flush holds the table", "org", org.Name, "table", t.Table)
				default:
					env.log.Info("lake maintained", "org", org.Name, "table", t.Table, "files_rewritten", r.FilesRewritten,
						"snapshots_expired", r.SnapshotsExpired, "orphans_deleted", r.OrphansDeleted)
				}
			}
		}
	}
	d, err := daemon.New(cfg, svc.Engine, backfills, env.log, metrics, opts)
	if err != nil {
		return err
	}
	srv := &admin.Server{Daemon: d, Positions: svc.Positions, Store: svc.Store, Gatherer: reg, Audit: svc.Audit, Log: env.log,
		Operators: operators, Catalog: svc.Engine.Catalog(), Status: svc.Status,
		Resetter: &daemon.Resetter{Positions: svc.Positions, Leases: svc.Leases, Audit: svc.Audit, Catalog: svc.Engine.Catalog()}}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen %s: %w", addr, err)
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	serve := daemon.Serve{
		Listener: ln, Handler: srv.HealthHandler(), Reload: hup,
		Load: func() (*config.Config, error) { return loadConfig(path) },
	}
	adminAddr := "off"
	if operators.Len() == 0 {
		env.log.Warn("admin API is off: set server.admin_token or server.admin_tokens_file to turn it on")
	} else {
		aln, err := admin.Listen(cfg.Server)
		if err != nil {
			ln.Close()
			return err
		}
		serve.AdminListener, serve.AdminHandler = aln, srv.AdminHandler()
		adminAddr = aln.Addr().String()
		if cfg.Server.AdminTLS != nil {
			adminAddr = "https://" + adminAddr
		}
	}
	env.log.Info("ehrsync daemon started", "listen", ln.Addr().String(), "admin_listen", adminAddr, "operators", operators.Len(),
		"orgs", len(cfg.Orgs), "version", version)

	return d.Run(ctx, serve)
}

// adminOperators loads the admin API's credentials: server.admin_token
// (operator "admin") and the operators of server.admin_tokens_file. A weak
// token or a tokens file others may read stops the daemon here.
func adminOperators(srv config.Server) (*admin.Operators, error) {
	var token string
	if srv.AdminToken.IsSet() {
		t, err := srv.AdminToken.Reveal()
		if err != nil {
			return nil, fmt.Errorf("server.admin_token: %w", err)
		}
		token = t
	}
	return admin.LoadOperators(token, srv.AdminTokensFile)
}
