package cdc

import (
	"context"
	"time"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Source is the SQL layer the extractor and CheckAgent read through;
// SQLServer implements it over a go-mssqldb pool. Implementations are safe
// for concurrent use; every method blocks on the source and honours ctx.
type Source interface {
	// Instances returns the capture instances of the table schema.table
	// (cdc.change_tables joined to sys.tables and sys.schemas by object id,
	// never by the name "<schema>_<table>", PITFALLS.md P7), ordered by
	// StartLSN, with their captured columns (cdc.captured_columns). None:
	// the table is not tracked by CDC.
	Instances(ctx context.Context, schema, table string) ([]Instance, error)
	// MinLSN returns the lowest LSN still readable in the capture instance
	// (sys.fn_cdc_get_min_lsn; cleanup raises it, P1). Zero: the instance
	// does not exist (any more).
	MinLSN(ctx context.Context, instance string) (watermarks.LSN, error)
	// MaxLSN returns the highest LSN the capture agent has harvested
	// (MAX(start_lsn) of cdc.lsn_time_mapping). It moves only while the
	// agent runs (P6). Zero: nothing harvested yet.
	MaxLSN(ctx context.Context) (watermarks.LSN, error)
	// Changes returns at most q.Limit change rows of q.Instance after q.After
	// and at or below q.To, in (__$start_lsn, __$command_id, __$seqval,
	// __$operation) order: deletes (1), inserts (2) and update after-images
	// (4); update before-images (3) are left out. __$command_id, not
	// __$seqval, is the order of the operations within a transaction:
	// Microsoft documents that __$seqval "should not be used for ordering"
	// (the two rows of an update, or of a split update's delete and insert,
	// may be out of seqval order, KB 3030352); __$seqval and __$operation
	// only break ties within one command.
	Changes(ctx context.Context, q Query) ([]Change, error)
}

// Instance is one capture instance of a table.
type Instance struct {
	Name     string
	StartLSN watermarks.LSN
	// Columns are the captured columns, in column_ordinal order. A change
	// table keeps the columns it was created with (P7).
	Columns []string
	// NoCommandID is true when the change table has no __$command_id
	// column (SQL Server 2012/2014 before the updates of KB 3030352, or a
	// server patched without its replication components, or an Availability
	// Group upgraded secondary first). Its changes are read in (__$start_lsn,
	// __$seqval, __$operation) order, and a transaction whose rows are out
	// of seqval order can then be applied in the wrong order.
	NoCommandID bool
}

// Query asks for one chunk of change rows.
type Query struct {
	Instance string
	// After is the exclusive lower bound: after the transaction After.LSN
	// at a boundary, after exactly the row (LSN, CommandID, Seqval, Op)
	// inside a transaction (P4).
	After watermarks.CDC
	To    watermarks.LSN // inclusive upper bound
	Limit int
	// Columns are the captured columns to return, in this order.
	Columns []string
	// NoCommandID: the change table has no __$command_id (see Instance);
	// its rows read as command 0.
	NoCommandID bool
	// Practice and Practices restrict the rows to the organization's
	// practices (bound with the column's exact type, PITFALLS.md P15): a
	// row whose practice column holds one of Practices is returned whole;
	// an update after-image of another practice (a row that may have moved
	// out of the organization) and a delete whose image carries no practice
	// (P16) are returned Foreign, with their Key columns only, every other
	// value NULL at the source; other rows are not returned. Another
	// practice's values never leave the server. Empty Practices: no filter.
	Practice  schemas.Column
	Practices []string
	// Key names the key columns among Columns (returned for Foreign rows).
	Key []string
}

// Change is one change row.
type Change struct {
	LSN watermarks.LSN // __$start_lsn: the commit LSN, shared by the transaction's rows
	// CommandID is __$command_id: the order of the row's operation within
	// the transaction (NULL reads as 0).
	CommandID int32
	Seqval    watermarks.LSN // __$seqval: the row's log sequence; not its order (see Changes)
	Op        int8           // __$operation: 1 delete, 2 insert, 4 update after-image
	// Values hold Query.Columns' values as go-mssqldb returns them
	// (arrowscan's raw values: GUIDs in wire order, decimals as text bytes,
	// time.Time, ...), nil for NULL.
	Values []any
	// Foreign: the row is not of the organization's practices (see
	// Query.Practices); only its key values are set. The extractor reads
	// it as a key-only delete: a row that moved out of the organization
	// leaves the store, and a key the store never held is a no-op.
	Foreign bool
}

// SelectChecker is the optional ability of a Source to tell whether the
// login may SELECT from a table. sys.fn_cdc_get_min_lsn answers no LSN both
// for a capture instance that is gone and for a login without SELECT on the
// captured table; with this ability the extractor tells the two apart.
type SelectChecker interface {
	CanSelect(ctx context.Context, t *schemas.Table) (bool, error)
}

// AgentProber is the optional ability of a Source to report on the capture
// agent (P6). SQLServer has it.
type AgentProber interface {
	Agent(ctx context.Context) (AgentStatus, error)
}

// AgentStatus is what a source knows about its capture agent.
type AgentStatus struct {
	// HarvestedLSN is MaxLSN.
	HarvestedLSN watermarks.LSN
	// SinceScan is how long ago, by the server's clock, the agent last
	// finished a log scan; -1: unknown (no finished scan on record: right
	// after a restart or failover, or on an Availability Group secondary,
	// where sys.dm_cdc_log_scan_sessions has no rows).
	SinceScan time.Duration
	// Errors counts capture errors the source reports (sys.dm_cdc_errors).
	Errors int
	// Unknown names why the status could not be read (a missing grant),
	// "" when it could.
	Unknown string
}
