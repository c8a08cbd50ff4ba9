package lake

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/apache/iceberg-go"
	"github.com/apache/iceberg-go/table"
	"github.com/apache/iceberg-go/table/compaction"
)

// The defaults of MaintainOptions.
const (
	// DefaultTargetFileBytes is the size compaction writes data files up to.
	DefaultTargetFileBytes = 128 << 20
	// DefaultRetainSnapshots is how many snapshots expiry keeps at least.
	DefaultRetainSnapshots = 10
	// DefaultSnapshotAge is the age a snapshot must pass before expiry
	// removes it (beyond the ones it keeps).
	DefaultSnapshotAge = 7 * 24 * time.Hour
	// DefaultOrphanAge is the age an unreferenced file must pass before
	// orphan cleanup deletes it.
	DefaultOrphanAge = 72 * time.Hour
)

// MaintainOptions tune Maintain; the zero value is every default.
type MaintainOptions struct {
	// TargetFileBytes is the size compaction writes data files up to; 0
	// means DefaultTargetFileBytes. Data files under three quarters of it
	// are small, and rewritten when there are at least two.
	TargetFileBytes int64
	// RetainSnapshots is how many of the latest snapshots expiry keeps
	// whatever their age; 0 means DefaultRetainSnapshots.
	RetainSnapshots int
	// SnapshotAge is how old a snapshot beyond those must be to expire; 0
	// means DefaultSnapshotAge, negative means any age.
	SnapshotAge time.Duration
	// OrphanAge is how old a file no snapshot or metadata references must
	// be to be deleted; 0 means DefaultOrphanAge, negative means any age.
	// The table lock keeps this process's flushes out while it runs, so
	// any age is safe against them.
	OrphanAge time.Duration
	// DryRun lists orphan files without deleting them (compaction and
	// expiry still run).
	DryRun bool
}

func (o MaintainOptions) withDefaults() MaintainOptions {
	if o.TargetFileBytes <= 0 {
		o.TargetFileBytes = DefaultTargetFileBytes
	}
	if o.RetainSnapshots <= 0 {
		o.RetainSnapshots = DefaultRetainSnapshots
	}
	o.SnapshotAge = ageOrDefault(o.SnapshotAge, DefaultSnapshotAge)
	o.OrphanAge = ageOrDefault(o.OrphanAge, DefaultOrphanAge)
	return o
}

func ageOrDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
}

// MaintainResult is what one Maintain did. It holds counts, sizes and
// file paths, never row values.
type MaintainResult struct {
	// Busy says a flush or maintenance of the table held it; this one did
	// nothing.
	Busy bool
	// FilesRewritten are the small data files compaction replaced, of
	// BytesRewritten bytes, by FilesAdded files of BytesAdded bytes.
	FilesRewritten int
	FilesAdded     int
	BytesRewritten int64
	BytesAdded     int64
	// SnapshotsExpired counts the snapshots expiry removed (their data
	// files no other snapshot holds are deleted with them).
	SnapshotsExpired int
	// Orphans are the files under the table's location that no metadata
	// references, older than the orphan age, of OrphanBytes bytes;
	// OrphansDeleted counts those deleted (none on a dry run).
	Orphans        []string
	OrphanBytes    int64
	OrphansDeleted int
	// State is the table's after maintenance.
	State State
}

// MaintainStep names a step of Maintain in its errors.
type MaintainStep string

// Maintain's steps, in order.
const (
	StepCompact MaintainStep = "compact"
	StepExpire  MaintainStep = "expire snapshots"
	StepOrphans MaintainStep = "delete orphan files"
)

// MaintainError is a Maintain that failed at Step of Table.
type MaintainError struct {
	Table Table
	Step  MaintainStep
	Err   error
}

func (e *MaintainError) Error() string {
	return fmt.Sprintf("lake maintenance of %s: %s: %v", e.Table, e.Step, e.Err)
}

func (e *MaintainError) Unwrap() error { return e.Err }

// Maintain compacts t's small data files, expires its old snapshots and
// deletes its orphan files (a flush stopped before its commit leaves its
// data and manifest files orphans), in that order, holding the table's
// flush lock: it returns with MaintainResult.Busy when a flush or another
// maintenance holds it. The table's PropClaim and PropPosition stay as
// they are; compaction's snapshot summary carries them too. A table not
// created yet has nothing to maintain.
func (l *Lake) Maintain(ctx context.Context, t Table, opts MaintainOptions) (res MaintainResult, err error) {
	defer func() { err = l.safe(err) }()
	opts = opts.withDefaults()
	lock, ok, err := l.lock(ctx, t)
	if err != nil || !ok {
		return MaintainResult{Busy: !ok && err == nil}, err
	}
	defer lock.unlock()
	tbl, err := l.load(ctx, t)
	if err != nil || tbl == nil {
		return res, err
	}
	if err := l.owned(t, tbl); err != nil {
		return res, err
	}
	fail := func(step MaintainStep, err error) (MaintainResult, error) {
		res.State = stateOf(tbl)
		return res, &MaintainError{Table: t, Step: step, Err: err}
	}
	if tbl, err = compact(ctx, tbl, opts, &res); err != nil {
		return fail(StepCompact, err)
	}
	if tbl, err = expire(ctx, tbl, opts, &res); err != nil {
		return fail(StepExpire, err)
	}
	if err := deleteOrphans(ctx, tbl, opts, &res); err != nil {
		return fail(StepOrphans, err)
	}
	res.State = stateOf(tbl)
	return res, nil
}

// compactionConfig plans groups of at least two data files under three
// quarters of target, packed up to target.
func compactionConfig(target int64) compaction.Config {
	cfg := compaction.DefaultConfig()
	cfg.TargetFileSizeBytes = target
	cfg.MinFileSizeBytes = target * 3 / 4
	cfg.MaxFileSizeBytes = target * 9 / 5
	cfg.MinInputFiles = 2
	return cfg
}

// compact rewrites tbl's small data files in one replace commit, made
// only on the snapshot it planned from, that keeps the table's
// properties and carries PropClaim and PropPosition in its summary. It
// returns the table as committed (tbl when there was nothing to do).
func compact(ctx context.Context, tbl *table.Table, opts MaintainOptions, res *MaintainResult) (*table.Table, error) {
	if tbl.CurrentSnapshot() == nil {
		return tbl, nil
	}
	tasks, err := tbl.Scan().PlanFiles(ctx)
	if err != nil {
		return nil, fmt.Errorf("plan the table's files: %w", err)
	}
	plan, err := compactionConfig(opts.TargetFileBytes).PlanCompaction(tasks)
	if err != nil {
		return nil, err
	}
	if len(plan.Groups) == 0 {
		return tbl, nil
	}
	groups := make([]table.CompactionTaskGroup, 0, len(plan.Groups))
	for _, g := range plan.Groups {
		groups = append(groups, table.CompactionTaskGroup{PartitionKey: g.PartitionKey, Tasks: g.Tasks, TotalSizeBytes: g.TotalSizeBytes})
	}
	props := tbl.Properties()
	summary := iceberg.Properties{}
	for _, k := range []string{PropClaim, PropPosition} {
		if v, ok := props[k]; ok {
			summary[k] = v
		}
	}
	tx := tbl.NewTransaction()
	if err := tx.AssertRefSnapshotID(table.MainBranch); err != nil {
		return nil, err
	}
	rw, err := tx.RewriteDataFiles(ctx, groups, table.RewriteDataFilesOptions{
		SnapshotProps: summary,
		GroupOptions:  []table.CompactionGroupOption{table.WithCompactionTargetFileSize(opts.TargetFileBytes)},
	})
	if err != nil {
		return nil, err
	}
	if rw.RewrittenGroups == 0 {
		return tbl, nil
	}
	committed, err := commitTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	res.FilesRewritten += rw.RemovedDataFiles
	res.FilesAdded += rw.AddedDataFiles
	res.BytesRewritten += rw.BytesBefore
	res.BytesAdded += rw.BytesAfter
	return committed, nil
}

// expire removes the snapshots beyond the latest opts.RetainSnapshots
// older than opts.SnapshotAge, and their files no kept snapshot holds.
func expire(ctx context.Context, tbl *table.Table, opts MaintainOptions, res *MaintainResult) (*table.Table, error) {
	before := len(tbl.Metadata().Snapshots())
	if before <= opts.RetainSnapshots {
		return tbl, nil
	}
	tx := tbl.NewTransaction()
	if err := tx.ExpireSnapshots(table.WithRetainLast(opts.RetainSnapshots), table.WithOlderThan(opts.SnapshotAge)); err != nil {
		return nil, err
	}
	committed, err := commitTx(ctx, tx)
	if err != nil {
		return nil, err
	}
	res.SnapshotsExpired = before - len(committed.Metadata().Snapshots())
	return committed, nil
}

// commitTx commits tx. A commit that landed and then failed to delete the
// files it let go (expiry's post-commit step) counts as done: those files
// are orphans, deleted by the orphan step once old enough.
func commitTx(ctx context.Context, tx *table.Transaction) (*table.Table, error) {
	committed, err := tx.Commit(ctx)
	if err != nil && committed == nil {
		return nil, fmt.Errorf("commit: %w", err)
	}
	return committed, nil
}

// deleteOrphans lists (and unless opts.DryRun, deletes) the files under
// tbl's location that its metadata does not reference, older than
// opts.OrphanAge.
func deleteOrphans(ctx context.Context, tbl *table.Table, opts MaintainOptions, res *MaintainResult) error {
	or, err := tbl.DeleteOrphanFiles(ctx, table.WithFilesOlderThan(opts.OrphanAge), table.WithDryRun(opts.DryRun))
	if err != nil {
		return err
	}
	res.Orphans = or.OrphanFileLocations
	res.OrphanBytes = or.TotalSizeBytes
	res.OrphansDeleted = len(or.DeletedFiles)
	if !opts.DryRun && len(or.DeletedFiles) < len(or.OrphanFileLocations) {
		return errors.New("some orphan files were not deleted")
	}
	return nil
}
