package lease_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/lease"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func manager(t *testing.T, url string, m *lease.Metrics) *lease.Manager {
	t.Helper()
	cfg, err := pgx.ParseConfig(url)
	require.NoError(t, err)
	return lease.NewManager(cfg, m)
}

func TestOneHolderPerTable(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	metrics := lease.NewMetrics(prometheus.NewRegistry())
	a, b := manager(t, url, metrics), manager(t, url, metrics)

	unlock, ok, err := a.TryLock(ctx, "org", "dbo.claims")
	require.NoError(t, err)
	require.True(t, ok)

	_, ok, err = b.TryLock(ctx, "org", "dbo.claims")
	require.NoError(t, err)
	require.False(t, ok, "a second runner got a held table's lease")
	require.Equal(t, 1.0, testutil.ToFloat64(metrics.Busy.WithLabelValues("org", "dbo.claims")))
	require.Equal(t, 1.0, testutil.ToFloat64(metrics.Held.WithLabelValues("org", "dbo.claims")))

	// Other tables and other orgs are independent.
	u2, ok, err := b.TryLock(ctx, "org", "dbo.payers")
	require.NoError(t, err)
	require.True(t, ok)
	u2()
	u3, ok, err := b.TryLock(ctx, "other", "dbo.claims")
	require.NoError(t, err)
	require.True(t, ok)
	u3()

	unlock()
	u4, ok, err := b.TryLock(ctx, "org", "dbo.claims")
	require.NoError(t, err)
	require.True(t, ok, "released lease still held")
	u4()

	_, ok, err = a.TryLock(ctx, "org", "dbo.claims")
	require.NoError(t, err)
	require.True(t, ok)
	_, ok, err = a.TryLock(ctx, "org", "dbo.claims")
	require.NoError(t, err)
	require.False(t, ok)
	require.Equal(t, 2.0, testutil.ToFloat64(metrics.Busy.WithLabelValues("org", "dbo.claims")))
}

// A crashed holder's connection ends and the server releases its lock.
func TestCrashedHolderIsReleased(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	holder, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	var ok bool
	require.NoError(t, holder.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", lease.Key("org", "dbo.claims")).Scan(&ok))
	require.True(t, ok)

	m := manager(t, url, nil)
	_, ok, err = m.TryLock(ctx, "org", "dbo.claims")
	require.NoError(t, err)
	require.False(t, ok)

	// The crash: the session ends without unlocking.
	require.NoError(t, holder.Close(ctx))
	require.Eventually(t, func() bool {
		unlock, ok, err := m.TryLock(ctx, "org", "dbo.claims")
		require.NoError(t, err)
		if ok {
			unlock()
		}
		return ok
	}, 10*time.Second, 20*time.Millisecond)
}

func TestKeysAreDistinct(t *testing.T) {
	require.NotEqual(t, lease.Key("a", "b.c"), lease.Key("a.b", "c"))
	require.NotEqual(t, lease.Key("ab", "c"), lease.Key("a", "bc"))
	require.Equal(t, lease.Key("a", "b"), lease.Key("a", "b"))
}

// TestHoldersNamesWhoHoldsEachLease: every lease held is found by its Key
// (keys with the sign bit set and without), named by the holding process
// and machine; a released lease is not.
func TestHoldersNamesWhoHoldsEachLease(t *testing.T) {
	ctx := context.Background()
	url := pgtest.URL(t)
	m := manager(t, url, nil)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	defer pool.Close()

	var negative, positive string
	for i := 0; negative == "" || positive == ""; i++ {
		table := fmt.Sprintf("dbo.t%d", i)
		if lease.Key("org", table) < 0 {
			negative = table
		} else {
			positive = table
		}
	}
	var unlocks []func()
	for _, table := range []string{negative, positive} {
		unlock, ok, err := m.TryLock(ctx, "org", table)
		require.NoError(t, err)
		require.True(t, ok)
		unlocks = append(unlocks, unlock)
	}
	host, err := os.Hostname()
	require.NoError(t, err)
	holders, err := lease.Holders(ctx, pool)
	require.NoError(t, err)
	for _, table := range []string{negative, positive} {
		h, ok := holders[lease.Key("org", table)]
		require.True(t, ok, "lease of %s not found among %v", table, holders)
		require.Equal(t, fmt.Sprintf("%d@%s", os.Getpid(), host), h.Holder)
		require.NotZero(t, h.PID)
		require.False(t, h.Since.IsZero())
	}
	_, ok := holders[lease.Key("other", negative)]
	require.False(t, ok, "a lease nobody holds")

	unlocks[0]()
	holders, err = lease.Holders(ctx, pool)
	require.NoError(t, err)
	_, ok = holders[lease.Key("org", negative)]
	require.False(t, ok, "a released lease is still listed")
	_, ok = holders[lease.Key("org", positive)]
	require.True(t, ok)
	unlocks[1]()
}
