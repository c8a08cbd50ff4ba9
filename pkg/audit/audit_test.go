package audit_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/audit"
	"github.com/ehrsync/ehrsync/pkg/engine"
	"github.com/ehrsync/ehrsync/pkg/pgtest"
	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/watermarks"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func store(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := pgtest.Pool(t)
	require.NoError(t, storedb.Migrate(context.Background(), pool))
	return pool
}

// records are audit records with every kind of field: NULLs, empty and
// non-ASCII text, column lists (empty, none), positions.
func records() []audit.Record {
	lsn := watermarks.CT{Version: 42}
	var recs []audit.Record
	for i, r := range []audit.Record{
		{Actor: "daemon", Action: audit.ActionRun, Org: "st-mary", Table: "dbo.claims", RunID: "a1b2", Columns: []string{"claim_id", "status"},
			Chunks: 3, To: lsn, Outcome: "ok", Duration: 1500 * time.Millisecond},
		{Actor: "ålice ✓", Action: audit.ActionAdmin, What: "reset", Org: "st-mary", Table: "dbo.claims", From: lsn, Outcome: "ok"},
		{Actor: "sync", Action: audit.ActionRun, Org: "o", Table: "t", Columns: []string{}, Outcome: "failed", ErrorClass: "login_failed"},
		{Actor: "bob", Action: audit.ActionBackfill, What: "key range: from and to given", Outcome: "ok"},
		{Actor: "x", Action: audit.ActionAdmin, What: "pause", Org: "o", Columns: []string{"a,b", `"q"`, ""}, Outcome: "ok"},
	} {
		r.Rows.Inserted, r.Rows.Updated, r.Rows.Deleted = int64(i*10), int64(i), -int64(i) // any int64 hashes
		recs = append(recs, r)
	}
	return recs
}

func write(t *testing.T, pool *pgxpool.Pool, recs ...audit.Record) {
	t.Helper()
	rec := audit.New(pool)
	for _, r := range recs {
		require.NoError(t, rec.Write(context.Background(), r))
	}
}

func ids(t *testing.T, pool *pgxpool.Pool) []int64 {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT id FROM ehrsync.audit ORDER BY id")
	require.NoError(t, err)
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var id int64
		require.NoError(t, rows.Scan(&id))
		out = append(out, id)
	}
	require.NoError(t, rows.Err())
	return out
}

// tamper runs stmts on the row id as the schema's owner with the
// append-only triggers lifted, as an owner (or a superuser) could.
func tamper(t *testing.T, pool *pgxpool.Pool, id int64, stmts ...string) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx) //nolint:errcheck
	_, err = tx.Exec(ctx, "ALTER TABLE ehrsync.audit DISABLE TRIGGER audit_append_only")
	require.NoError(t, err)
	for _, stmt := range stmts {
		tag, err := tx.Exec(ctx, stmt, id)
		require.NoError(t, err)
		require.EqualValues(t, 1, tag.RowsAffected(), stmt)
	}
	_, err = tx.Exec(ctx, "ALTER TABLE ehrsync.audit ENABLE TRIGGER audit_append_only")
	require.NoError(t, err)
	require.NoError(t, tx.Commit(ctx))
}

func broken(t *testing.T, err error) *audit.BrokenError {
	t.Helper()
	require.ErrorIs(t, err, audit.ErrBroken)
	var b *audit.BrokenError
	require.ErrorAs(t, err, &b)
	return b
}

// TestVerifyAnIntactChain: records of every shape, hashed by the store's
// trigger, verify with the Go encoding; the head is the last row's hash.
func TestVerifyAnIntactChain(t *testing.T) {
	ctx := context.Background()
	pool := store(t)
	c, err := audit.Verify(ctx, pool)
	require.NoError(t, err, "an empty audit verifies")
	require.Zero(t, c.Rows)

	write(t, pool, records()...)
	c, err = audit.Verify(ctx, pool)
	require.NoError(t, err)
	got := ids(t, pool)
	require.Equal(t, audit.Chain{Rows: 5, FirstID: got[0], LastID: got[4], Head: c.Head}, c)
	var head string
	require.NoError(t, pool.QueryRow(ctx, "SELECT encode(hash, 'hex') FROM ehrsync.audit ORDER BY id DESC LIMIT 1").Scan(&head))
	require.Equal(t, head, c.Head)
}

// TestVerifyFindsTheFirstBrokenLink: an edit of any field, a row rewritten
// with a new hash, and rows deleted at the start, in the middle or at the
// end are each found, at the row where the chain breaks.
func TestVerifyFindsTheFirstBrokenLink(t *testing.T) {
	if testing.Short() {
		t.Skip("long (a fresh chain for each of nine tamperings): runs without -short")
	}
	const edit = "UPDATE ehrsync.audit SET %s WHERE id = $1"
	for _, tc := range []struct {
		name string
		// stmts tamper with the row ids[at]; want is the row reported
		// (an index into ids), problem what it says.
		stmts    []string
		at, want int
		problem  string
	}{
		{"edited rows", []string{fmt.Sprintf(edit, "rows_inserted = rows_inserted + 1")}, 2, 2, "the row was edited"},
		{"edited actor", []string{fmt.Sprintf(edit, "actor = 'mallory'")}, 1, 1, "the row was edited"},
		{"edited position", []string{fmt.Sprintf(edit, `to_position = '{"v": 1, "kind": "ct", "version": 41}'`)}, 0, 0, "the row was edited"},
		{"edited columns", []string{fmt.Sprintf(edit, "columns = '{claim_id}'")}, 0, 0, "the row was edited"},
		{"edited time", []string{fmt.Sprintf(edit, "at = at - interval '1 day'")}, 3, 3, "the row was edited"},
		{"rewritten with its hash", []string{fmt.Sprintf(edit, "actor = 'mallory'"),
			fmt.Sprintf(edit, "hash = ehrsync.audit_hash(prev_hash, audit)")}, 2, 3, "was rewritten"},
		{"deleted in the middle", []string{"DELETE FROM ehrsync.audit WHERE id = $1"}, 2, 3, "rows between them were deleted"},
		{"deleted first", []string{"DELETE FROM ehrsync.audit WHERE id = $1"}, 0, 1, "it does not start the chain"},
		{"deleted last", []string{"DELETE FROM ehrsync.audit WHERE id = $1"}, 4, 4, "rows at the end were deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pool := store(t)
			write(t, pool, records()...)
			id := ids(t, pool)
			tamper(t, pool, id[tc.at], tc.stmts...)
			_, err := audit.Verify(ctx, pool)
			b := broken(t, err)
			require.Equal(t, id[tc.want], b.ID, "%v", err)
			require.Contains(t, err.Error(), tc.problem)
		})
	}
}

// TestChainIsOneAcrossWriters: writers in separate sessions (as separate
// processes would be) appending at once produce one chain, ids increasing
// along it.
func TestChainIsOneAcrossWriters(t *testing.T) {
	ctx := context.Background()
	pool := store(t)
	const writers, each = 6, 15
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			p, err := pgxpool.New(ctx, pool.Config().ConnString())
			if err != nil {
				errs[i] = err
				return
			}
			defer p.Close()
			rec := audit.New(p)
			for j := range each {
				if err := rec.Write(ctx, audit.Record{Actor: fmt.Sprintf("w%d", i), Action: audit.ActionRun, RunID: fmt.Sprint(j), Outcome: "ok"}); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))
	c, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.EqualValues(t, writers*each, c.Rows)
}

// TestPruneKeepsTheChainVerifiable: rows written before the cutoff go,
// with the position history of then; the last one pruned becomes the
// anchor, the rest verifies, and the prune itself is audited. A broken
// chain is not pruned.
func TestPruneKeepsTheChainVerifiable(t *testing.T) {
	ctx := context.Background()
	pool := store(t)
	history := func() {
		_, err := pool.Exec(ctx, `INSERT INTO ehrsync.position_history (id, org, table_name, reason, actor)
			VALUES (nextval(pg_get_serial_sequence('ehrsync.position_history', 'id')), 'o', 't', 'sync', 'test')`)
		require.NoError(t, err)
	}
	recs := records()
	write(t, pool, recs[:3]...)
	history()
	history()
	// The cutoff is the server's time between the two groups: each row's
	// time is its transaction's start.
	var cutoff time.Time
	require.NoError(t, pool.QueryRow(ctx, "SELECT clock_timestamp()").Scan(&cutoff))
	write(t, pool, recs[3:]...)
	history()
	before := ids(t, pool)

	p, err := audit.Prune(ctx, pool, cutoff, "carol")
	require.NoError(t, err)
	require.Equal(t, audit.Pruned{AuditRows: 3, HistoryRows: 2, AnchorID: before[2]}, p)
	c, err := audit.Verify(ctx, pool)
	require.NoError(t, err)
	require.Equal(t, before[2], c.AnchorID)
	require.EqualValues(t, 3, c.Rows, "two kept and the prune's own record")
	require.Equal(t, before[3], c.FirstID)
	var what string
	require.NoError(t, pool.QueryRow(ctx, "SELECT what FROM ehrsync.audit WHERE actor = 'carol' AND action = 'admin'").Scan(&what))
	require.Contains(t, what, "prune: 3 audit rows and 2 position history rows written before ")
	var n int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM ehrsync.position_history").Scan(&n))
	require.Equal(t, 1, n)

	// Again, with nothing old enough: only the prune's record is added.
	p, err = audit.Prune(ctx, pool, cutoff, "carol")
	require.NoError(t, err)
	require.Equal(t, audit.Pruned{}, p)
	_, err = audit.Verify(ctx, pool)
	require.NoError(t, err)

	// The triggers are back: rows cannot be removed outside a prune.
	_, err = pool.Exec(ctx, "DELETE FROM ehrsync.audit")
	require.ErrorContains(t, err, "append-only")
	_, err = pool.Exec(ctx, "DELETE FROM ehrsync.position_history")
	require.ErrorContains(t, err, "append-only")

	// Removing the first kept row is found against the anchor, and a
	// broken chain is not pruned.
	tamper(t, pool, before[3], "DELETE FROM ehrsync.audit WHERE id = $1")
	_, err = audit.Verify(ctx, pool)
	require.Equal(t, before[4], broken(t, err).ID)
	require.Contains(t, err.Error(), fmt.Sprintf("it does not follow row %d, the last row pruned", before[2]))
	_, err = audit.Prune(ctx, pool, time.Now().Add(time.Hour), "carol")
	broken(t, err)
	require.ErrorContains(t, err, "prune refused")
}

// TestPruneNeedsTheOwner: the writer role cannot prune.
func TestPruneNeedsTheOwner(t *testing.T) {
	ctx := context.Background()
	db := pgtest.URL(t)
	owner, err := pgxpool.New(ctx, db)
	require.NoError(t, err)
	defer owner.Close()
	require.NoError(t, storedb.Migrate(ctx, owner))
	writer, err := pgxpool.New(ctx, pgtest.Role(t, db, "writer"))
	require.NoError(t, err)
	defer writer.Close()
	name, err := storedb.CurrentRole(ctx, writer)
	require.NoError(t, err)
	require.NoError(t, storedb.GrantWriter(ctx, owner, name))
	write(t, writer, records()...)
	_, err = audit.Prune(ctx, writer, time.Now().Add(time.Hour), "mallory")
	require.ErrorContains(t, err, "only the ehrsync schema's owner may")
	c, err := audit.Verify(ctx, writer)
	require.NoError(t, err, "the writer verifies")
	require.EqualValues(t, 5, c.Rows)
}

// TestWriteFailsLoudly: a record the store refuses is a *WriteError
// (engine.ErrAuditNotWritten), not a log line.
func TestWriteFailsLoudly(t *testing.T) {
	ctx := context.Background()
	db := pgtest.URL(t)
	owner, err := pgxpool.New(ctx, db)
	require.NoError(t, err)
	defer owner.Close()
	require.NoError(t, storedb.Migrate(ctx, owner))
	writer, err := pgxpool.New(ctx, pgtest.Role(t, db, "writer"))
	require.NoError(t, err)
	defer writer.Close()
	name, err := storedb.CurrentRole(ctx, writer)
	require.NoError(t, err)
	require.NoError(t, storedb.GrantWriter(ctx, owner, name))
	_, err = owner.Exec(ctx, "REVOKE INSERT ON ehrsync.audit FROM "+name)
	require.NoError(t, err)
	err = audit.New(writer).Write(ctx, records()[0])
	require.ErrorIs(t, err, engine.ErrAuditNotWritten)
	require.ErrorContains(t, err, "audit record not written to ehrsync.audit")
}

// TestPositionsAreSummarized: the audit records a position as its summary
// (kind, version, row-version number), never its key or cursor values,
// whoever writes the record (Write for admin actions and backfills,
// TableRun for table runs); the chain over such rows verifies.
func TestPositionsAreSummarized(t *testing.T) {
	const sentinel = "SENTINEL-K9Q3"
	pool := store(t)
	ctx := context.Background()
	key := watermarks.Key{watermarks.String("varchar(20)", sentinel)}
	stamp, err := watermarks.ParseValue(watermarks.TypeDateTime, "datetime", "2031-07-04T11:22:33.000")
	require.NoError(t, err)
	from := watermarks.CT{Version: 41, To: 50, LastKey: key}
	to := watermarks.Cursor{Column: "row_timestamp", Value: watermarks.RowVersion([8]byte{0, 0, 0, 0, 0, 0, 0x07, 0xD1}), Key: key}
	rec := audit.New(pool)
	require.NoError(t, rec.Write(ctx, audit.Record{Actor: "alice", Action: audit.ActionAdmin, What: "rewind", Org: "st-mary",
		Table: "dbo.claims", From: from, To: to, Outcome: "ok"}))
	require.NoError(t, rec.TableRun(ctx, "daemon", "r1", nil, engine.TableResult{Org: "st-mary", Table: "dbo.claims",
		From: watermarks.Snapshot{LastKey: key, Resume: from}, To: watermarks.Cursor{Column: "modify_timestamp", Value: stamp, Key: key}}))

	var leaked int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM ehrsync.audit a
		WHERE a::text LIKE '%' || $1 || '%' OR a::text LIKE '%2031-07-04%'`, sentinel).Scan(&leaked))
	require.Zero(t, leaked, "an audit row holds a key or cursor value")
	var kinds, versions, rowVersions, keyValues []string
	rows, err := pool.Query(ctx, `SELECT from_position->>'kind', coalesce(from_position->>'version', from_position->'resume'->>'version'),
		coalesce(to_position->>'row_version', '-'), to_position->>'key_values' FROM ehrsync.audit ORDER BY id`)
	require.NoError(t, err)
	for rows.Next() {
		var k, v, rv, kv string
		require.NoError(t, rows.Scan(&k, &v, &rv, &kv))
		kinds, versions, rowVersions, keyValues = append(kinds, k), append(versions, v), append(rowVersions, rv), append(keyValues, kv)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"ct", "snapshot"}, kinds)
	require.Equal(t, []string{"41", "41"}, versions)
	require.Equal(t, []string{"0x00000000000007D1", "-"}, rowVersions, "a row version's number is kept, a timestamp's value is not")
	require.Equal(t, []string{"1", "1"}, keyValues)
	_, err = audit.Verify(ctx, pool)
	require.NoError(t, err)
}
