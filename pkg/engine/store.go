package engine

import (
	"context"
	"time"

	"github.com/apache/arrow-go/v18/arrow"

	"github.com/ehrsync/ehrsync/pkg/sink"
	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Store is where the engine commits tables: it prepares each table's
// target (creating or adapting its tables). pkg/sink's Sink implements it
// through Sink; a second sink is another implementation.
type Store interface {
	Prepare(ctx context.Context, org string, t *schemas.Table, opts sink.TableOptions) (Target, error)
}

// Target is one table in the store: it commits chunks (Applier) and
// deletes the rows whose key the source no longer has (reconciliation).
type Target interface {
	Applier
	// WithPositionTable is the target with its positions kept under
	// another name (a ranged backfill's own position).
	WithPositionTable(name string) Target
	// LastReconciled is when the table's last reconciliation ran (zero:
	// never).
	LastReconciled(ctx context.Context) (time.Time, error)
	// Reconcile deletes, by the table's delete policy, the rows whose key
	// is not among keys; ReconcileRange only those in [from, to].
	Reconcile(ctx context.Context, keys sink.KeyBatches, actor string) (sink.ReconcileResult, error)
	ReconcileRange(ctx context.Context, keys sink.KeyBatches, actor string, from, to watermarks.Key) (sink.ReconcileResult, error)
}

// Applier commits chunks, each chunk's rows and its position in one
// transaction, in steps (Pending) so that the next chunk's rows can be
// written while one commits.
type Applier interface {
	// Begin starts a chunk's transaction. Chunks begin one at a time, in
	// read order.
	Begin(ctx context.Context, rec arrow.RecordBatch, m watermarks.Move) (Pending, error)
}

// Pending is a chunk begun: Write copies its rows, Commit moves the
// position and commits, Abort rolls back one that will not be committed.
// A step that fails rolls back by itself. sink.Pending implements it.
type Pending interface {
	Write(ctx context.Context) error
	Commit(ctx context.Context) (sink.Result, error)
	Abort()
}

// Sink is the Store of a PostgreSQL sink.
func Sink(s *sink.Sink) Store { return sinkStore{s} }

type sinkStore struct{ s *sink.Sink }

func (s sinkStore) Prepare(ctx context.Context, org string, t *schemas.Table, opts sink.TableOptions) (Target, error) {
	tg, err := s.s.Prepare(ctx, org, t, opts)
	if err != nil {
		return nil, err
	}
	return sinkTarget{tg}, nil
}

// sinkTarget is a sink.Target as a Target.
type sinkTarget struct{ *sink.Target }

// Applies is the Applier of a sink Target.
func Applies(tg *sink.Target) Applier { return sinkTarget{tg} }

func (t sinkTarget) Begin(ctx context.Context, rec arrow.RecordBatch, m watermarks.Move) (Pending, error) {
	p, err := t.Target.Begin(ctx, rec, m)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (t sinkTarget) WithPositionTable(name string) Target {
	return sinkTarget{t.Target.WithPositionTable(name)}
}
