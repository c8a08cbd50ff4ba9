package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/service"
	"github.com/ehrsync/ehrsync/pkg/storedb"
)

func init() { register(auditCommand) }

// minRetention is the shortest --older-than prune accepts: a typo such as
// --older-than 0 must not wipe the trail.
const minRetention = 24 * time.Hour

func auditCommand(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "audit",
		Short: "verify the audit's hash chain, or prune audit and position history past their retention",
	}
	c.AddCommand(auditVerify(env), auditPrune(env))
	return c
}

func auditVerify(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "verify --config FILE",
		Short: "check the audit's hash chain: 0 when intact, 1 naming the first broken link",
	}
	path := configFlag(c)
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
		}
		pool, err := service.StorePool(ctx, cfg, env.log)
		if err != nil {
			return err
		}
		defer pool.Close()
		chain, err := audit.Verify(ctx, pool)
		if err != nil {
			return err
		}
		from := "the start"
		if chain.AnchorID > 0 {
			from = fmt.Sprintf("the anchor after pruned row %d", chain.AnchorID)
		}
		fmt.Fprintf(env.stdout, "audit chain intact: %d rows (ids %d to %d) from %s; head %s\n", chain.Rows, chain.FirstID, chain.LastID, from, chain.Head)
		return nil
	}
	return c
}

func auditPrune(env *environment) *cobra.Command {
	c := &cobra.Command{
		Use:   "prune --config FILE --older-than AGE [--actor NAME]",
		Short: "as the schema's owner, remove audit and position history rows older than AGE, keeping the chain verifiable",
	}
	path, actorOf := configFlag(c), actorFlag(c)
	olderThan := c.Flags().String("older-than", "", "remove audit and position history rows older than this: days (400d) or a duration (9600h); at least 1d")
	c.RunE = func(c *cobra.Command, _ []string) error {
		ctx := c.Context()
		if *olderThan == "" {
			return usageError{fmt.Errorf("audit prune: --older-than is required")}
		}
		actor, err := actorOf()
		if err != nil {
			return err
		}
		age, err := parseAge(*olderThan)
		if err != nil {
			return usageError{fmt.Errorf("--older-than: %w", err)}
		}
		cfg, err := loadConfig(*path)
		if err != nil {
			return err
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
		p, err := audit.Prune(ctx, pool, before, actor)
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
	return c
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
