package status

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/ehrsync/ehrsync/pkg/config"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// lakeRow is a table's row of ehrsync.lake_tables.
type lakeRow struct {
	claim, snapshot, rows int64
	position              []byte
	committedAt           time.Time
}

// lakeRows reads org's last lake commits, by lake table name.
func (s *Store) lakeRows(ctx context.Context, org string) (map[string]lakeRow, error) {
	rows, err := s.pool.Query(ctx, `SELECT table_name, claim, snapshot_id, position, rows, committed_at
		FROM ehrsync.lake_tables WHERE org = $1`, org)
	if err != nil {
		return nil, fmt.Errorf("read ehrsync.lake_tables: %w", err)
	}
	out := map[string]lakeRow{}
	var (
		name string
		r    lakeRow
	)
	_, err = pgx.ForEachRow(rows, []any{&name, &r.claim, &r.snapshot, &r.position, &r.rows, &r.committedAt}, func() error {
		row := r
		row.position = append([]byte(nil), r.position...)
		out[name] = row
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read ehrsync.lake_tables: %w", err)
	}
	return out, nil
}

// lake is the lake status of org's table tc: its last lake commit from
// rows and what waits in its outbox. nil when the catalog does not know
// the table (its store names cannot be told).
func (s *Store) lake(ctx context.Context, at time.Time, org *config.Org, tc config.Table, catalog *schemas.Catalog,
	rows map[string]lakeRow, staleAfter time.Duration) (*Lake, error) {
	if catalog == nil {
		return nil, nil
	}
	st, ok := catalog.Table(tc.Name)
	if !ok {
		return nil, nil
	}
	lt := engine.LakeTable(org.Name, st)
	l := &Lake{Table: lt.StateName()}
	if r, ok := rows[l.Table]; ok {
		l.CommittedAt, l.Claim, l.SnapshotID, l.Rows = r.committedAt.UTC(), r.claim, r.snapshot, r.rows
		if len(r.position) > 0 {
			p, err := watermarks.Decode(r.position)
			if err != nil {
				l.PositionUnreadable = true
			} else {
				l.Position = watermarks.Summarize(p)
			}
		}
	}
	ob := lt.Outbox().Sanitize()
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", ob).Scan(&exists); err != nil {
		return nil, fmt.Errorf("read lake outbox %s: %w", lt, err)
	}
	if !exists {
		// The sink creates the outbox with the table: nothing waits.
		return l, nil
	}
	var since *time.Time
	w := &l.Waiting
	if err := s.pool.QueryRow(ctx, "SELECT count(*), coalesce(sum(rows), 0), coalesce(sum(bytes), 0), min(committed_at) FROM "+ob).
		Scan(&w.Chunks, &w.Rows, &w.Bytes, &since); err != nil {
		return nil, fmt.Errorf("read lake outbox %s: %w", lt, err)
	}
	w.Since = utc(since)
	l.Behind = !w.Since.IsZero() && at.Sub(w.Since) > staleAfter
	return l, nil
}
