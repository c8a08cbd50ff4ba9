package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/term"

	"github.com/ehrsync/ehrsync/pkg/daemon"
	"github.com/ehrsync/ehrsync/pkg/service"
)

func init() {
	commands["backfill"] = command{summary: "re-snapshot an organization's tables (all, or --table), beside the daemon, resumable", run: runBackfill}
}

func runBackfill(ctx context.Context, env *environment, args []string) error {
	fs := newFlags(env, "backfill", "--config FILE --org NAME [--table NAME ...] [--actor NAME]")
	path := fs.String("config", "", "configuration file (YAML)")
	orgName := fs.String("org", "", "the organization (required)")
	var tables stringList
	fs.Var(&tables, "table", "backfill only this table (repeatable; default: every table of the org)")
	actor := fs.String("actor", os.Getenv("USER"), "who runs the backfill, recorded in the position history and audit (default $USER)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *orgName == "" {
		return usageError{fmt.Errorf("--org is required")}
	}
	if *actor == "" {
		return usageError{fmt.Errorf("--actor is required when $USER is not set")}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	org, ok := cfg.Org(*orgName)
	if !ok {
		return usageError{fmt.Errorf("--org %s: no such organization in %s", *orgName, *path)}
	}
	if len(tables) == 0 {
		for _, t := range org.Tables {
			tables = append(tables, t.Name)
		}
	}
	for _, t := range tables {
		if _, ok := org.Table(t); !ok {
			return usageError{fmt.Errorf("--table %s: org %s has no such table in %s", t, org.Name, *path)}
		}
	}
	svc, err := service.Open(ctx, cfg, env.log, *actor)
	if err != nil {
		return err
	}
	defer svc.Close()
	tty := false
	if f, ok := env.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}
	b := &daemon.Backfill{Engine: svc.Engine, Leases: svc.Leases, Store: svc.Store, Audit: svc.Audit, Log: env.log,
		WaitForLease: true, Progress: func(p daemon.Progress) { progress(env.stdout, tty, p) }}
	var failed []string
	for _, t := range tables {
		res, err := b.Backfill(ctx, org, t, *actor)
		if err == nil {
			err = res.Err
		}
		if err != nil {
			fmt.Fprintf(env.stdout, "%s %s: failed: %v\n", org.Name, t, err)
			failed = append(failed, t)
			if ctx.Err() != nil {
				break
			}
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("backfill of %d tables failed: %s (run it again to resume)", len(failed), strings.Join(failed, ", "))
	}
	return nil
}

// progress prints one progress line: redrawn in place on a terminal, one
// line per report otherwise.
func progress(w io.Writer, tty bool, p daemon.Progress) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", p.Org, p.Table)
	if p.Estimate > 0 && tty {
		frac := min(float64(p.Rows)/float64(p.Estimate), 1)
		const width = 24
		n := int(frac * width)
		fmt.Fprintf(&b, "[%s%s] %3.0f%% ", strings.Repeat("#", n), strings.Repeat(".", width-n), frac*100)
	}
	fmt.Fprintf(&b, "%d rows", p.Rows)
	if p.Estimate > 0 {
		fmt.Fprintf(&b, " of ~%d", p.Estimate)
	}
	fmt.Fprintf(&b, ", %.0f rows/s, %s elapsed", p.RowsPerSec, p.Elapsed.Round(time.Second))
	if p.ETA > 0 {
		fmt.Fprintf(&b, ", ETA %s", p.ETA.Round(time.Second))
	}
	if p.Resumed {
		b.WriteString(" (resumed)")
	}
	if p.Done {
		b.WriteString(", done")
	}
	switch {
	case tty && !p.Done:
		fmt.Fprintf(w, "\r\033[K%s", b.String())
	case tty:
		fmt.Fprintf(w, "\r\033[K%s\n", b.String())
	default:
		fmt.Fprintln(w, b.String())
	}
}
