package sink

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/ehrsync/ehrsync/pkg/storedb"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Apply applies one change batch and moves the table's position from m.From
// to m.To, all in one transaction: Begin, Write and Commit in a row. rec may
// be nil or empty: an idle table still moves its position (PITFALLS P3). The
// caller keeps ownership of rec. m.Org and m.Table are set from the target.
// On any error nothing is applied and the position does not move; a position
// that moved since m.From was read gives watermarks.ErrPositionMoved.
func (tg *Target) Apply(ctx context.Context, rec arrow.RecordBatch, m watermarks.Move) (Result, error) {
	p, err := tg.Begin(ctx, rec, m)
	if err != nil {
		return Result{}, err
	}
	if err := p.Write(ctx); err != nil {
		return Result{}, err
	}
	return p.Commit(ctx)
}

// Pending is one chunk's transaction, in three steps so that a runner can
// write the next chunk's rows while this one commits, each on a store
// connection of its own:
//
//   - Begin takes the chunk's store connection and, for a chunk with rows,
//     opens the transaction, reserves the commit's history id and takes the
//     chunk's lock (an advisory lock held until it ends). The chunks of a
//     Target begin one at a time, in read order: whether a chunk may go
//     straight into the target, or be upserted early, depends on the one
//     begun before it, and a chunk never waits for a connection while a
//     later one holds one and waits for it to commit.
//   - Write copies the rows, into the target (direct.go) or into the
//     connection's staging table. A staged chunk is upserted there and then
//     ("early") when the one other chunk open is the one begun before it,
//     which has rows, and the keys of both are known and disjoint: the two
//     upserts touch disjoint rows and run at once. When they share some
//     keys, the rows of the others are upserted early and those of the
//     shared keys at commit, after the chunk before has committed its own. An early chunk's Write
//     then waits, on the server, for the lock of the chunk before it, and
//     returns once that one has ended: write each chunk on a goroutine of
//     its own, as the engine does. The chunk holds row locks while it waits,
//     and a wait the server sees is one its deadlock detector can break,
//     should a transaction outside ehrsync hold a row the chunk before
//     needs and wait for one of this chunk's. Otherwise Write takes no lock
//     another chunk's transaction waits for: a direct chunk's keys are its
//     own, and staging tables are per connection.
//   - Commit claims the position (waiting for a chunk that holds it to end,
//     and failing with watermarks.ErrPositionMoved unless it is still m.From),
//     applies staged rows not yet applied, moves the position, records it
//     and commits. Chunks commit in read order: a chunk's From is the To of
//     the one before it, so a chunk committed before that one, or after it
//     failed, is refused by the claim and commits nothing, its early upsert
//     with it.
//
// A step that fails rolls back and releases the connection; so does Abort,
// for a chunk that will not be committed. A Pending is used by one goroutine
// at a time.
type Pending struct {
	tg     *Target
	conn   *pgxpool.Conn // acquired by Begin (in read order); nil once done
	rec    arrow.RecordBatch
	m      watermarks.Move
	c      commit
	direct directPlan
	apply  string // the staged apply, should the rows be staged: of all of them, or of the part not late
	// applyLate is the staged apply of the late part (a chunk upserted
	// early but for the keys it shares with the chunk before, which it
	// applies at commit); "" for none.
	applyLate string
	late      []bool // per row: its key is one the chunk before holds; nil for none
	res       Result
	ended     bool   // committed, failed or aborted
	lake      []byte // the rows for the lake outbox (TableOptions.Lake), from Write to Commit

	lock    int32       // the chunk's advisory lock (storedb.ChunkLockClass, lock); 0: an idle chunk, which takes none
	keys    keySet      // its key hashes; nil when not known
	early   bool        // its staged rows (all, or those not late) are upserted in Write
	waitFor int32       // the lock an early chunk waits for: the chunk before's
	closed  atomic.Bool // ended, as the goroutine that begins chunks sees it

	// With the target's indexes deferred (deferred.go): loaded records the
	// chunk's position as the pass's last loaded at commit; buildFirst
	// builds the indexes before the rows are written, buildAtCommit when
	// the chunk commits.
	loaded, buildFirst, buildAtCommit bool
}

// begun is what Begin knows of a Target's chunks. Only the goroutine that
// begins them uses it, but for open, which their ends count down.
type begun struct {
	last    *Pending     // the chunk begun last
	keySets [2]keySet    // the key hashes of the chunk begun last, and of the one being begun
	keyHash []uint64     // chunkKeys' scratch
	open    atomic.Int32 // chunks begun and not ended
}

// Begin starts applying rec with m: the first of Pending's steps. The caller
// keeps ownership of rec and must keep it until Write returns.
func (tg *Target) Begin(ctx context.Context, rec arrow.RecordBatch, m watermarks.Move) (*Pending, error) {
	m.Org, m.Table = tg.org, tg.positionName()
	p := &Pending{tg: tg, m: m}
	if rec != nil && rec.NumRows() > 0 {
		if err := schemas.ValidateChangeBatch(tg.table, rec); err != nil {
			return nil, tg.errorf(err)
		}
		if err := checkText(rec); err != nil {
			return nil, tg.errorf(err)
		}
		p.rec, p.res.Rows = rec, rec.NumRows()
	}
	p.m.Rows = p.res.Rows
	pos, err := watermarks.Encode(m.To)
	if err != nil {
		return nil, tg.errorf(err)
	}
	p.c.pos = pos
	// Every chunk, an idle one too, takes its connection here, in read
	// order: a chunk never waits for a connection while a later one holds
	// one and waits for it to commit.
	if p.conn, err = tg.sink.pool.Acquire(ctx); err != nil {
		return nil, tg.errorf(err)
	}
	if tg.begun == nil {
		tg.begun = &begun{}
	}
	bg := tg.begun
	prev, open := bg.last, bg.open.Add(1)-1 // open: the others
	bg.last = p
	if p.rec == nil {
		// An idle chunk continues a pass loading straight into the target
		// as a loaded chunk would.
		continues := tg.continuesDirect(m.From)
		if continues {
			tg.directAfter = pos
		}
		p.deferredMove(continues)
		return p, nil // Commit begins and does it all, in one batch
	}
	if !tg.deferred && startsSnapshot(m.From) && !endsPass(m.To) && tg.directCandidate(p.rec, p.m) {
		tg.deferIndexes(ctx, p.conn.Conn())
	}
	p.lock = nextChunkLock()
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	tg.sink.positions.QueueReserve(b, &p.c.id, &p.c.at)
	b.Queue("SELECT pg_advisory_xact_lock($1, $2)", storedb.ChunkLockClass, p.lock)
	b.Queue(tg.createStageSQL()) // before planDirect's savepoint, which a fallback rolls back to
	p.direct = tg.planDirect(b, rec, p.m)
	if err := p.conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, p.fail(ctx, err)
	}
	p.m.Batch = p.c.id
	tg.directAfter = nil
	if p.direct.take() {
		tg.directAfter = pos
		p.deferredMove(true)
		p.apply = tg.applyStatement(false, false, partAll) // should the direct COPY fall back: inserts only
		return p, nil
	}
	p.deferredMove(false)
	set := bg.keySets[0]
	if set == nil {
		set = keySet{}
	}
	bg.keySets[0], bg.keySets[1] = bg.keySets[1], set // the one begun last is the other
	known, unique := tg.chunkKeys(rec, set, &bg.keyHash)
	deletes := !onlyOps(rec, len(tg.cols), func(op schemas.Op) bool { return op != schemas.OpDelete })
	p.apply = tg.applyStatement(unique, deletes, partAll)
	if !known {
		return p, nil
	}
	p.keys = set
	// Nor after one that builds the indexes first: its upsert would meet
	// the table without them.
	if open != 1 || p.buildFirst || prev.buildFirst || prev.closed.Load() || prev.keys == nil {
		return p, nil
	}
	// prev, begun last and not ended, is the one chunk open; it has rows
	// (keys), so a lock.
	if set.disjoint(prev.keys) {
		p.early, p.waitFor = true, prev.lock
		return p, nil
	}
	// Keys shared with prev (a busy claim's changes in chunk after chunk)
	// are upserted at commit, after prev's; the others early.
	if !partlyEarly {
		return p, nil
	}
	if late, some := lateRows(bg.keyHash[:rec.NumRows()], prev.keys); some && tg.directStage(rec) {
		p.early, p.waitFor, p.late = true, prev.lock, late
		p.apply = tg.applyStatement(unique, deletes, partEarly)
		p.applyLate = tg.applyStatement(unique, deletes, partLate)
	}
	return p, nil
}

// partlyEarly lets a chunk that shares keys with the one before it upsert
// its other keys early (a variable for BenchmarkHotKeys' A/B).
var partlyEarly = true

var chunkLocks atomic.Int32

func init() { chunkLocks.Store(rand.Int32()) }

// nextChunkLock returns the second key of a chunk's advisory lock (the
// first is storedb.ChunkLockClass), never 0. Two processes'
// chunks that draw one key wait for each other's end: a delay, seen by
// the server, never a wrong result.
func nextChunkLock() int32 {
	for {
		if k := chunkLocks.Add(1); k != 0 {
			return k
		}
	}
}

// deferredMove decides, for a chunk begun while the target's indexes are
// deferred, what the chunk does about them: a chunk loaded straight in (or
// an idle one continuing the load) that stays within the pass records its
// position; one that ends the pass builds the indexes as it commits; any
// other builds them before it writes. Chunks begun after one that builds
// find them built: they commit after it, or not at all. (Should the
// building chunk fail, the target's run fails with it; the next run's
// Prepare reads the table's state again.)
func (p *Pending) deferredMove(loaded bool) {
	tg := p.tg
	switch {
	case !tg.deferred:
	case loaded && !endsPass(p.m.To):
		p.loaded = true
	case loaded || p.rec == nil:
		p.buildAtCommit, tg.deferred = true, false
	default:
		p.buildFirst, tg.deferred = true, false
	}
}

// Write copies the rows begun: the second step.
func (p *Pending) Write(ctx context.Context) error {
	if p.ended {
		return p.tg.errorf(errDone)
	}
	if p.rec == nil {
		return nil // idle, or written
	}
	var err error
	if p.buildFirst {
		err = p.tg.buildIndexes(ctx, p.conn.Conn())
	}
	var direct bool
	if err == nil {
		direct, err = p.tg.applyDirect(ctx, p.conn.Conn(), p.rec, p.direct, p.c, &p.res)
	}
	if err == nil && !direct {
		err = p.tg.copyToStage(ctx, p.conn.Conn(), p.rec, p.late)
	}
	if err == nil && p.tg.opts.Lake {
		p.lake, err = lakeData(p.rec.Schema(), p.rec)
	}
	p.rec = nil // written: the caller may release it
	if err == nil && !direct && p.early {
		b := &pgx.Batch{}
		p.queueApply(b, p.apply)
		b.Queue("SELECT pg_advisory_xact_lock_shared($1, $2)", storedb.ChunkLockClass, p.waitFor)
		err = p.conn.SendBatch(ctx, b).Close()
	}
	if err != nil {
		return p.fail(ctx, err)
	}
	return nil
}

// Commit moves the position and commits: the last step. It returns what
// the chunk did to the target.
func (p *Pending) Commit(ctx context.Context) (Result, error) {
	tg := p.tg
	if p.ended || p.rec != nil {
		return Result{}, tg.errorf(errDone)
	}
	b := &pgx.Batch{}
	if p.res.Rows == 0 { // an idle chunk: its connection is not in a transaction yet
		b.Queue("BEGIN")
	}
	tg.sink.positions.QueueClaim(b, p.m.Org, p.m.Table, p.m.From)
	if p.res.Rows > 0 && !p.res.Direct {
		if !p.early { // an early chunk's ran in Write, but for its late part
			p.queueApply(b, p.apply)
		}
		if p.applyLate != "" {
			p.queueApply(b, p.applyLate)
		}
		p.queueChangeLog(b)
		if !p.early || p.applyLate != "" { // the notice counts what the apply did
			if err := p.conn.SendBatch(ctx, b).Close(); err != nil {
				return Result{}, p.fail(ctx, err)
			}
			b = &pgx.Batch{}
		}
	}
	if p.loaded {
		tg.queueLoaded(b, p.c.pos)
	}
	if p.buildAtCommit {
		if err := p.conn.SendBatch(ctx, b).Close(); err != nil {
			return Result{}, p.fail(ctx, err)
		}
		if err := tg.buildIndexes(ctx, p.conn.Conn()); err != nil {
			return Result{}, p.fail(ctx, err)
		}
		b = &pgx.Batch{}
	}
	p.queueOutbox(b)
	if err := tg.sink.positions.QueueAdvance(b, p.m); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	if err := tg.queueNotify(b, p.m, noticeRows{Insert: p.res.Inserted, Update: p.res.Updated, Delete: p.res.Deleted}); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	// COMMIT goes alone, after the batch's replies: the position's checks
	// (the claim, the first move's insert) run on the replies, and a
	// pipeline runs to its end on the server whatever a reply says.
	conn := p.conn.Conn()
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	if tg.testHookBeforeCommit != nil {
		if err := tg.testHookBeforeCommit(ctx, conn); err != nil {
			return Result{}, p.fail(ctx, err)
		}
	}
	if err := ctx.Err(); err != nil {
		return Result{}, p.fail(ctx, err)
	}
	// COMMIT, once sent, is seen through: canceled halfway, the server may
	// have committed a chunk the caller would count as failed.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	tag, err := conn.Exec(cctx, "COMMIT")
	if err == nil && tag.String() != "COMMIT" { // an aborted transaction answers ROLLBACK
		err = fmt.Errorf("commit: the server answered %s", tag.String())
	}
	if err != nil {
		return Result{}, p.fail(ctx, err)
	}
	p.conn.Release()
	p.conn = nil
	p.end()
	return p.res, nil
}

// end marks the chunk ended, once.
func (p *Pending) end() {
	if !p.ended {
		p.ended = true
		p.closed.Store(true)
		p.tg.begun.open.Add(-1)
	}
}

// Abort rolls back a chunk that will not be committed and releases its
// connection. It does nothing once a step has failed or Commit succeeded.
func (p *Pending) Abort() {
	if !p.ended {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.fail(ctx, errDone)
	}
	p.rec = nil
}

// commitTimeout bounds a COMMIT that its caller's context no longer can.
const commitTimeout = 30 * time.Second

// errDone is a step taken out of order or after the chunk ended.
var errDone = errors.New("the chunk's transaction has already ended")

// fail rolls the chunk's transaction back, releases its connection and
// returns err with the target named.
func (p *Pending) fail(ctx context.Context, err error) error {
	if p.conn != nil {
		if p.conn.Conn().PgConn().TxStatus() != 'I' {
			// Nothing of the chunk commits. Should the ROLLBACK fail, the
			// connection is still in the transaction, and Release closes
			// it (the server then rolls back).
			_, _ = p.conn.Exec(ctx, "ROLLBACK")
		}
		p.conn.Release()
		p.conn = nil
	}
	p.end()
	return p.tg.errorf(err)
}

func (tg *Target) errorf(err error) error {
	return fmt.Errorf("apply to %s: %w", tg.ident.Sanitize(), err)
}

// commit is what a chunk's rows carry: the commit's position-history id, the
// transaction's timestamp and its position (encoded).
type commit struct {
	id  int64
	at  time.Time
	pos []byte
}
