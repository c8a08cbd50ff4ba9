package changetracking

import (
	"context"
	"fmt"
	"strings"

	"github.com/ehrsync/ehrsync/schemas"
	"github.com/ehrsync/ehrsync/watermarks"
)

// Source is the SQL layer the extractor reads Change Tracking through;
// SQLServer implements it over a go-mssqldb pool. Implementations are safe
// for concurrent use.
type Source interface {
	// CurrentVersion returns CHANGE_TRACKING_CURRENT_VERSION(): the version
	// of the last committed transaction. ok is false when the database does
	// not track changes (the function returns NULL).
	CurrentVersion(ctx context.Context) (v int64, ok bool, err error)
	// MinValidVersion returns CHANGE_TRACKING_MIN_VALID_VERSION(OBJECT_ID(t)).
	// ok is false when the function returns NULL: tracking is off for the
	// table, or the login lacks VIEW CHANGE TRACKING on it (the server does
	// not say which: ask Probe).
	MinValidVersion(ctx context.Context, t *schemas.Table) (v int64, ok bool, err error)
	// Changes reads one chunk of the window (q.From, q.To], in key order,
	// after q.After (nil: from the start). See Query and ChangeSet.
	Changes(ctx context.Context, q Query) (ChangeSet, error)
	// Probe reports whether t can be read by Change Tracking, for the
	// planner, `ehrsync check` and the extractor's setup errors
	// (PITFALLS.md P17).
	Probe(ctx context.Context, t *schemas.Table) (Status, error)
}

// Query is one chunk read of CHANGETABLE(CHANGES Table, From) joined to the
// table's current rows.
type Query struct {
	// Table is the (possibly projected) table the rows carry: the column
	// allow-list is pushed down as the select list.
	Table *schemas.Table
	// From and To bound the window: changes with From < version <= To.
	From, To int64
	// After is the last key read in the window; nil before the first chunk.
	After watermarks.Key
	// Practices restricts the current rows joined to the changes to rows
	// whose practice column holds one of these ids (empty: no filter). A
	// changed key whose row is gone or belongs to another practice reads
	// as gone: a key-only delete. Deletes cannot be filtered (the deleted
	// row's practice is gone with it); a delete of a key the store does not
	// hold is a no-op there.
	Practices []string
	// Limit bounds the rows returned (> 0).
	Limit int
}

// ChangeSet is one chunk read.
type ChangeSet struct {
	// Rows are the changed rows in key order, at most Query.Limit. Each row
	// is [SYS_CHANGE_OPERATION ("I", "U" or "D"), SYS_CHANGE_VERSION (int64),
	// exists (bool: the key's row is in the table now, in the practices),
	// then Table's columns in order as go-mssqldb returns them]: the key
	// from the change table, the other columns from the current row (NULL
	// when it reads as gone).
	Rows [][]any
	// MinValid is CHANGE_TRACKING_MIN_VALID_VERSION of the table read after
	// (or in one snapshot transaction with) the rows: if it is above From,
	// cleanup may have removed changes the read should have seen. MinValidOK
	// is false when it read NULL.
	MinValid   int64
	MinValidOK bool
}

// Status is whether a table can be read by Change Tracking, and why not.
type Status struct {
	Table string // qualified source name
	// DatabaseEnabled: ALTER DATABASE … SET CHANGE_TRACKING = ON was run.
	DatabaseEnabled bool
	// TableEnabled: ALTER TABLE … ENABLE CHANGE_TRACKING was run.
	TableEnabled bool
	// ViewChangeTracking: the login holds VIEW CHANGE TRACKING on the table
	// (HAS_PERMS_BY_NAME(table, 'OBJECT', 'VIEW CHANGE TRACKING')).
	ViewChangeTracking bool
	// Select: the login holds SELECT on the table (the join to the current
	// rows and the first snapshot need it).
	Select bool
	// SnapshotIsolation: ALLOW_SNAPSHOT_ISOLATION is on, so that the
	// validity check and the read share one snapshot.
	SnapshotIsolation bool
	// User is the database user the login maps to (USER_NAME()).
	User string
	// Database is DB_NAME().
	Database string
}

// Ready reports whether the table can be read by Change Tracking.
func (s Status) Ready() bool {
	return s.DatabaseEnabled && s.TableEnabled && s.ViewChangeTracking && s.Select
}

// Fixes returns, for each missing piece, what is missing and the statement
// that fixes it, in the order they must run.
func (s Status) Fixes() []Fix {
	table := quoteQualified(s.Table)
	user := "[" + strings.ReplaceAll(s.User, "]", "]]") + "]"
	var out []Fix
	if !s.DatabaseEnabled {
		db := "[" + strings.ReplaceAll(s.Database, "]", "]]") + "]"
		out = append(out, Fix{"change tracking is not enabled for the database",
			"ALTER DATABASE " + db + " SET CHANGE_TRACKING = ON (CHANGE_RETENTION = 7 DAYS, AUTO_CLEANUP = ON);"})
	}
	if !s.TableEnabled {
		out = append(out, Fix{"change tracking is not enabled for the table",
			"ALTER TABLE " + table + " ENABLE CHANGE_TRACKING;"})
	}
	if !s.Select {
		out = append(out, Fix{"the login lacks SELECT on the table",
			"GRANT SELECT ON " + table + " TO " + user + ";"})
	}
	if !s.ViewChangeTracking {
		out = append(out, Fix{"the login lacks VIEW CHANGE TRACKING on the table",
			"GRANT VIEW CHANGE TRACKING ON " + table + " TO " + user + ";"})
	}
	return out
}

// Fix is one missing piece of Change Tracking set-up and its fix.
type Fix struct {
	Problem   string
	Statement string
}

func (f Fix) String() string { return f.Problem + " (fix: " + f.Statement + ")" }

// quoteQualified quotes "schema.name" as [schema].[name].
func quoteQualified(name string) string {
	parts := strings.SplitN(name, ".", 2)
	for i, p := range parts {
		parts[i] = "[" + strings.ReplaceAll(p, "]", "]]") + "]"
	}
	return strings.Join(parts, ".")
}

// SetupError says why a table cannot be read by Change Tracking: tracking
// off, or a grant missing, with the statements that fix it (PITFALLS.md
// P17). It matches ErrNotReadable. It is permanent: retrying does not help.
type SetupError struct {
	Status Status
}

func (e *SetupError) Error() string {
	fixes := e.Status.Fixes()
	parts := make([]string, len(fixes))
	for i, f := range fixes {
		parts[i] = f.String()
	}
	if len(parts) == 0 {
		parts = append(parts, "the server returned no change tracking version although the probe found nothing missing")
	}
	return fmt.Sprintf("change tracking %s: %s", e.Status.Table, strings.Join(parts, "; "))
}

// Is makes errors.Is(err, ErrNotReadable) true.
func (e *SetupError) Is(target error) bool { return target == ErrNotReadable }
