// Package lease keeps DESIGN.md §1 invariant 7, one runner per table: a
// PostgreSQL session advisory lock per (org, table) on the store, held on a
// dedicated connection for the duration of a table's run. Any number of
// daemon replicas and manual sync or backfill commands take the same locks,
// so no two of them run one table at once. When a holder crashes, its
// connection ends and the server releases its lock.
package lease

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Key is the advisory lock key of (org, table): one bigint, a key space that
// never conflicts with storedb's two-int4 locks (storedb.LockClass).
// table is the source table's qualified name ("dbo.claims").
func Key(org, table string) int64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte("ehrsync\x00lease\x00"))
	_, _ = h.Write([]byte(org))
	_, _ = h.Write([]byte{0})
	_, _ = h.Write([]byte(table))
	return int64(h.Sum64())
}

// Metrics are the leases' Prometheus metrics.
type Metrics struct {
	Busy *prometheus.CounterVec // lease attempts that found the table held by another runner
	Held *prometheus.GaugeVec   // leases this process holds now
}

// NewMetrics creates the lease metrics and registers them on reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Busy: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "ehrsync", Subsystem: "lease", Name: "busy_total",
			Help: "Table runs skipped because another runner (replica, manual sync or backfill) held the table's lease.",
		}, []string{"org", "table"}),
		Held: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "ehrsync", Subsystem: "lease", Name: "held",
			Help: "Table leases this process holds now (1 while a table runs).",
		}, []string{"org", "table"}),
	}
	if reg != nil {
		reg.MustRegister(m.Busy, m.Held)
	}
	return m
}

// InitMetrics makes (org, table)'s lease metrics exist at 0 before any
// run, so that rates and alerts see a table that never met a busy lease.
func (m *Manager) InitMetrics(org, table string) {
	m.metrics.Busy.WithLabelValues(org, table)
	m.metrics.Held.WithLabelValues(org, table)
}

// Manager takes table leases on the store. It is safe for concurrent use.
type Manager struct {
	conn    *pgx.ConnConfig
	metrics *Metrics
}

// NewManager returns a Manager that opens one dedicated connection per held
// lease from conn (the store's connection configuration; not modified).
// metrics may be nil.
func NewManager(conn *pgx.ConnConfig, metrics *Metrics) *Manager {
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	c := conn.Copy()
	if c.RuntimeParams == nil {
		c.RuntimeParams = map[string]string{}
	}
	c.RuntimeParams["application_name"] = holderName()
	return &Manager{conn: c, metrics: metrics}
}

// holderPrefix starts the application_name of every lease connection.
const holderPrefix = "ehrsync lease "

// holderName is this process's lease connections' application_name:
// "ehrsync lease PID@HOST", cut to the 63 bytes PostgreSQL keeps, so that
// Holders can tell which process on which machine holds a lease.
func holderName() string {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	name := fmt.Sprintf("%s%d@%s", holderPrefix, os.Getpid(), host)
	if len(name) > 63 {
		name = name[:63]
	}
	return name
}

// Holder is who holds a lease now: the lease connection's server process
// and what its client said it is.
type Holder struct {
	// Holder is "PID@HOST" of the ehrsync process holding the lease, as
	// its lease connection names it; "" when the store does not show it
	// to this role (another role's session).
	Holder string
	// PID is the store's server process of the lease connection.
	PID int32
	// ClientAddr is the address the lease connection came from; "" for a
	// Unix socket or when not shown.
	ClientAddr string
	// Since is when the lease connection began (zero when not shown).
	Since time.Time
}

// Querier runs a query: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Holders returns the holder of every table lease held now in q's
// database, by Key. A session advisory lock on one bigint key (ehrsync's
// leases) shows in pg_locks as its high and low 32 bits (classid, objid)
// with objsubid 1; other advisory locks in the database on a bigint key
// are returned too and match no table's Key but by chance.
func Holders(ctx context.Context, q Querier) (map[int64]Holder, error) {
	rows, err := q.Query(ctx, `SELECT (l.classid::int8 << 32) | l.objid::int8, l.pid,
			coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), a.backend_start
		FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.granted
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`)
	if err != nil {
		return nil, fmt.Errorf("read the leases held: %w", err)
	}
	out := map[int64]Holder{}
	var (
		key   int64
		h     Holder
		app   string
		since *time.Time
	)
	_, err = pgx.ForEachRow(rows, []any{&key, &h.PID, &app, &h.ClientAddr, &since}, func() error {
		h.Holder = strings.TrimPrefix(app, holderPrefix)
		if h.Holder == app {
			h.Holder = "" // not a lease connection's name, or not shown
		}
		h.Since = time.Time{}
		if since != nil {
			h.Since = *since
		}
		out[key] = h
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the leases held: %w", err)
	}
	return out, nil
}

// TryLock takes (org, table)'s lease without waiting. ok is false, with no
// error, when another runner holds it ("busy, skipped" is a normal outcome).
// When ok, unlock releases the lease; it is safe to call once, from any
// goroutine, also after ctx is done.
func (m *Manager) TryLock(ctx context.Context, org, table string) (unlock func(), ok bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, m.conn)
	if err != nil {
		return nil, false, fmt.Errorf("lease %s %s: connect to the store: %w", org, table, err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_try_advisory_lock($1)", Key(org, table)).Scan(&ok); err != nil {
		closeConn(conn)
		return nil, false, fmt.Errorf("lease %s %s: %w", org, table, err)
	}
	if !ok {
		closeConn(conn)
		m.metrics.Busy.WithLabelValues(org, table).Inc()
		return nil, false, nil
	}
	held := m.metrics.Held.WithLabelValues(org, table)
	held.Inc()
	return func() {
		held.Dec()
		// Closing the session releases its advisory locks; unlocking first
		// makes it immediate even if the close is slow.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", Key(org, table))
		_ = conn.Close(ctx)
	}, true, nil
}

// Wait takes (org, table)'s lease, polling every interval while another
// runner holds it, for up to limit (0: until ctx is done). For operator
// commands (a backfill, a reset) that should queue behind a running sync
// rather than skip. limit bounds only the time the lease is seen busy: an
// attempt to take it is bounded by ctx alone, so a slow store is not
// mistaken for a busy table. waiting, when set, is called once, when the
// lease is first found busy.
func (m *Manager) Wait(ctx context.Context, org, table string, interval, limit time.Duration, waiting func()) (unlock func(), err error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	var giveUp <-chan time.Time
	for {
		unlock, ok, err := m.TryLock(ctx, org, table)
		if err != nil || ok {
			return unlock, err
		}
		if giveUp == nil {
			if waiting != nil {
				waiting()
			}
			if limit > 0 {
				timer := time.NewTimer(limit)
				defer timer.Stop()
				giveUp = timer.C
			} else {
				giveUp = make(chan time.Time)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lease %s %s: %w", org, table, errors.Join(ErrBusy, ctx.Err()))
		case <-giveUp:
			return nil, fmt.Errorf("lease %s %s: %w after %s", org, table, ErrBusy, limit)
		case <-t.C:
		}
	}
}

// ErrBusy means another runner holds the table's lease.
var ErrBusy = errors.New("table busy: another runner holds its lease")

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
