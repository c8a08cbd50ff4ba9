package main

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

func init() {
	commands["audit"] = command{summary: "verify the audit's hash chain, or prune audit and position history past their retention", run: runAudit}
}

const auditUsage = "verify|prune --config FILE [--older-than AGE] [--actor NAME]"

// minRetention is the shortest --older-than prune accepts: a typo such as
// --older-than 0 must not wipe the trail.
const minRetention = 24 * time.Hour

func runAudit(ctx context.Context, env *environment, args []string) error {
	if len(args) == 0 {
		return usageError{fmt.Errorf("audit: want a subcommand: verify or prune")}
	}
	sub, args := args[0], args[1:]
	fs := newFlags(env, "audit", auditUsage)
	path := fs.String("config", "", "configuration file (YAML)")
	olderThan := fs.String("older-than", "", "prune: remove audit and position history rows older than this: days (400d) or a duration (9600h); at least 1d")
	actor := fs.String("actor", osUser(), "prune: who prunes, recorded in the audit (default: the operating-system user)")
	if err := parse(fs, args); err != nil {
		return err
	}
	switch sub {
	case "verify":
	case "prune":
		if *olderThan == "" {
			return usageError{fmt.Errorf("audit prune: --older-than is required")}
		}
		if *actor == "" {
			return usageError{fmt.Errorf("--actor: empty")}
		}
	default:
		return usageError{fmt.Errorf("audit: unknown subcommand %q (want verify or prune)", sub)}
	}
	var age time.Duration
	if sub == "prune" {
		var err error
		if age, err = parseAge(*olderThan); err != nil {
			return usageError{fmt.Errorf("--older-than: %w", err)}
		}
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		return err
	}
	if sub == "verify" {
		pool, err := service.StorePool(ctx, cfg, env.log)
		if err != nil {
			return err
		}
		defer pool.Close()
		c, err := audit.Verify(ctx, pool)
		if err != nil {
			return err
		}
		from := "the start"
		if c.AnchorID > 0 {
			from = fmt.Sprintf("the anchor after pruned row %d", c.AnchorID)
		}
		fmt.Fprintf(env.stdout, "audit chain intact: %d rows (ids %d to %d) from %s; head %s\n", c.Rows, c.FirstID, c.LastID, from, c.Head)
		return nil
	}
	pool, err := service.OwnerPool(ctx, cfg, env.log)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := storedb.Migrate(ctx, pool); err != nil {
		return err
	}
	before := time.Now().Add(-age)
	p, err := audit.Prune(ctx, pool, before, *actor)
	if err != nil {
		return err
	}
	anchor := "none pruned"
	if p.AnchorID > 0 {
		anchor = fmt.Sprintf("row %d", p.AnchorID)
	}
	fmt.Fprintf(env.stdout, "pruned %d audit rows and %d position history rows written before %s; chain anchor: %s\n",
		p.AuditRows, p.HistoryRows, before.UTC().Format(time.RFC3339), anchor)
	return nil
}

var daysRE = regexp.MustCompile(`^([0-9]+)d$`)

// parseAge reads "400d" or a Go duration, at least minRetention.
func parseAge(s string) (time.Duration, error) {
	var d time.Duration
	if m := daysRE.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100*366 {
			return 0, fmt.Errorf("%q: too many days", s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, errors.New("want days (400d) or a duration (9600h)")
		}
	}
	if d < minRetention {
		return 0, fmt.Errorf("%s is under the shortest retention, 1d", s)
	}
	return d, nil
}
