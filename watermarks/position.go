package watermarks

import (
	"fmt"
	"log/slog"
	"strings"
	"unicode/utf8"
)

// Kind names a kind of position. It is the "kind" of the JSON form and the
// kind column of ehrsync.positions.
type Kind string

// The kinds of position.
const (
	KindCDC      Kind = "cdc"
	KindCT       Kind = "ct"
	KindCursor   Kind = "cursor"
	KindSnapshot Kind = "snapshot"
)

// Position says where a table's sync stands: everything up to it is applied
// in the store. It is one of CDC, CT, Cursor and Snapshot (values, not
// pointers); a nil Position means the table has none yet (it has never been
// synced, or an operator reset it).
//
// String is safe to log: it shows the kind, LSNs, versions and row-version
// numbers (the database's counters), never key values nor a timestamp
// cursor's value. Display adds the cursor's value whatever its type, for an
// operator's terminal (positions list, the sync report); Detail adds the key
// values too, for positions show only.
type Position interface {
	Kind() Kind
	String() string
	Display() string
	Detail() string
	position()
}

// CDC is a SQL Server Change Data Capture position.
//
// At a transaction boundary Seqval is zero and Op 0: everything up to and
// including LSN's transaction is applied; the next read starts after LSN.
// Inside a transaction (a chunk ended mid-transaction, PITFALLS P4)
// CommandID, Seqval and Op are the __$command_id, __$seqval and __$operation
// of the last row applied: the next read resumes after exactly the row
// (LSN, CommandID, Seqval, Op) in the change order, never after LSN.
//
// The change order within a transaction is __$command_id, then __$seqval
// and __$operation: Microsoft documents that __$seqval must not be used for
// ordering (the two rows of an update may be out of seqval order, KB
// 3030352). CommandID is 0 at a boundary, and in positions saved before it
// was recorded; such a position resumes at the first row of its
// transaction (command ids start at 1), re-reading rows already applied
// rather than skipping any.
//
// Op is __$operation: 1 delete, 2 insert, 3 update (before image), 4 update
// (after image).
type CDC struct {
	LSN       LSN
	CommandID int32
	Seqval    LSN
	Op        int8
	Instance  string // the capture instance read from; "" when not chosen yet
}

// InTransaction reports whether c is a resume point inside a transaction.
func (c CDC) InTransaction() bool { return !c.Seqval.IsZero() }

// CT is a SQL Server Change Tracking position.
//
// Everything up to and including Version is applied. While the window
// (Version, To] is read in key-ordered chunks, To > Version and LastKey is
// the last key applied in the window (nil before the window's first chunk).
// When the window is done the position is CT{Version: To}.
type CT struct {
	Version int64
	To      int64
	LastKey Key
}

// InWindow reports whether c is part way through a version window.
func (c CT) InWindow() bool { return c.To != 0 }

// Cursor is a high-water mark on a column (a rowversion or a timestamp).
// Everything with (cursor, key) ≤ (Value, Key) is applied: paging by
// (cursor, key) is safe when many rows share a cursor value (PITFALLS P9).
// An empty Key means everything with cursor ≤ Value is applied. A NULL Value
// means nothing is applied yet.
type Cursor struct {
	Column string
	Value  Value
	Key    Key
}

// Snapshot is a keyset snapshot in progress (PITFALLS P8). LastKey is the
// last key copied (nil: not started). Resume is the incremental position
// recorded before the snapshot's first read, where the table's incremental
// strategy continues once the snapshot is done; nil for tables snapshotted
// every run. Resume is never a Snapshot.
type Snapshot struct {
	LastKey Key
	Resume  Position
}

func (CDC) Kind() Kind      { return KindCDC }
func (CT) Kind() Kind       { return KindCT }
func (Cursor) Kind() Kind   { return KindCursor }
func (Snapshot) Kind() Kind { return KindSnapshot }

func (CDC) position()      {}
func (CT) position()       {}
func (Cursor) position()   {}
func (Snapshot) position() {}

// String: "cdc 0x0000002A000001F00003 (dbo_claims)", or inside a transaction
// "cdc 0x0000002A000001F00003 after command 3 seqval 0x0000002A000001F00002 op 2 (dbo_claims)"
// ("after seqval ..." without a command id).
func (c CDC) String() string {
	var b strings.Builder
	b.WriteString("cdc " + c.LSN.String())
	if c.InTransaction() {
		if c.CommandID != 0 {
			fmt.Fprintf(&b, " after command %d", c.CommandID)
		} else {
			b.WriteString(" after")
		}
		fmt.Fprintf(&b, " seqval %s op %d", c.Seqval, c.Op)
	}
	if c.Instance != "" {
		b.WriteString(" (" + c.Instance + ")")
	}
	return b.String()
}

// Display is String: a CDC position holds no row data.
func (c CDC) Display() string { return c.String() }

// Detail is String: a CDC position holds no row data.
func (c CDC) Detail() string { return c.String() }

// String: "ct version 120", or in a window "ct version 120, window to 150
// after <key of 1 value>".
func (c CT) String() string { return c.describe(Key.String) }

// Display is String: a CT position's only values are its key's.
func (c CT) Display() string { return c.String() }

// Detail is String with the key's values.
func (c CT) Detail() string { return c.describe(Key.Text) }

func (c CT) describe(key func(Key) string) string {
	s := fmt.Sprintf("ct version %d", c.Version)
	switch {
	case c.To == 0:
		return s
	case c.LastKey == nil:
		return s + fmt.Sprintf(", window to %d not started", c.To)
	}
	return s + fmt.Sprintf(", window to %d after %s", c.To, key(c.LastKey))
}

// String: "cursor row_timestamp 0x00000000000007D1, after <key of 1
// value>" for a row version (a PostgreSQL transaction id in decimal), and
// "cursor modify_timestamp <datetime datetime>" for a timestamp, whose value
// is row data.
func (c Cursor) String() string {
	return c.describe(func(v Value) string {
		if n := rowVersionNumber(v); n != "" {
			return n
		}
		return v.String()
	}, Key.String)
}

// Display is String with the cursor's value whatever its type, without
// the key's: "cursor modify_timestamp 2026-11-01T08:30:00.003, after <key
// of 1 value>". A timestamp's value is row data: never log it.
func (c Cursor) Display() string { return c.describe(cursorValue, Key.String) }

// Detail is Display with the key's values: "cursor modify_timestamp
// 2026-11-01T08:30:00.003, after key (42)".
func (c Cursor) Detail() string {
	return c.describe(cursorValue, func(k Key) string { return "key " + k.Text() })
}

// cursorValue is a cursor's value as text: NULL when nothing is applied yet.
func cursorValue(v Value) string {
	if v.IsNull() {
		return "NULL"
	}
	return v.Text()
}

func (c Cursor) describe(value func(Value) string, key func(Key) string) string {
	s := "cursor " + c.Column + " " + value(c.Value)
	if len(c.Key) > 0 {
		s += ", after " + key(c.Key)
	}
	return s
}

// String: "snapshot after <key of 1 value>, then cdc 0x..." (a pass in
// progress that hands off to an incremental position), "snapshot after <key
// of 1 value>" (a pass of a table snapshotted every run), "snapshot not
// started, then ..." and, for Snapshot{}, "snapshot complete, next pass
// from the start": the position a table snapshotted every run keeps
// between passes.
func (s Snapshot) String() string {
	return s.describe(Key.String, func(p Position) string { return p.String() })
}

// Display is String with the resume position's Display.
func (s Snapshot) Display() string {
	return s.describe(Key.String, func(p Position) string { return p.Display() })
}

// Detail is String with the key's and the resume position's values.
func (s Snapshot) Detail() string {
	return s.describe(func(k Key) string { return "key " + k.Text() }, func(p Position) string { return p.Detail() })
}

func (s Snapshot) describe(key func(Key) string, pos func(Position) string) string {
	switch {
	case len(s.LastKey) == 0 && s.Resume == nil:
		return "snapshot complete, next pass from the start"
	case len(s.LastKey) == 0:
		return "snapshot not started, then " + pos(s.Resume)
	case s.Resume == nil:
		return "snapshot after " + key(s.LastKey)
	}
	return "snapshot after " + key(s.LastKey) + ", then " + pos(s.Resume)
}

// LogValue logs c as String does.
func (c CDC) LogValue() slog.Value { return slog.StringValue(c.String()) }

// LogValue logs c as String does, without key values.
func (c CT) LogValue() slog.Value { return slog.StringValue(c.String()) }

// LogValue logs c as String does, without key values or a timestamp's
// value.
func (c Cursor) LogValue() slog.Value { return slog.StringValue(c.String()) }

// LogValue logs s as String does, without key values.
func (s Snapshot) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Validate checks p against its kind's rules (the ones Encode enforces). A
// nil p is valid: no position.
func Validate(p Position) error {
	switch p := p.(type) {
	case nil:
		return nil
	case CDC:
		return p.validate()
	case CT:
		return p.validate()
	case Cursor:
		return p.validate()
	case Snapshot:
		return p.validate()
	}
	return invalidf("", "unknown position type %T", p)
}

const maxNameLen = 512

func checkName(path, s string) error {
	switch {
	case len(s) > maxNameLen:
		return invalidf(path, "longer than %d bytes", maxNameLen)
	case !utf8.ValidString(s):
		return invalidf(path, "not valid UTF-8")
	case strings.IndexByte(s, 0) >= 0:
		return invalidf(path, "has a NUL character")
	}
	return nil
}

func (c CDC) validate() error {
	if c.LSN.IsZero() {
		return invalidf("lsn", "is zero")
	}
	if c.CommandID < 0 {
		return invalidf("command_id", "is negative")
	}
	if c.Seqval.IsZero() {
		if c.Op != 0 {
			return invalidf("op", "set without seqval")
		}
		if c.CommandID != 0 {
			return invalidf("command_id", "set without seqval")
		}
	} else if c.Op < 1 || c.Op > 4 {
		return invalidf("op", "%d is not 1 (delete), 2 (insert), 3 (update before) or 4 (update after)", c.Op)
	}
	return checkName("instance", c.Instance)
}

func (c CT) validate() error {
	if c.Version < 0 {
		return invalidf("version", "is negative")
	}
	if c.To == 0 {
		if c.LastKey != nil {
			return invalidf("last_key", "set outside a window (to is 0)")
		}
		return nil
	}
	if c.To <= c.Version {
		return invalidf("to", "%d is not after version %d", c.To, c.Version)
	}
	return validateKey("last_key", c.LastKey)
}

func (c Cursor) validate() error {
	if c.Column == "" {
		return invalidf("column", "is empty")
	}
	if err := checkName("column", c.Column); err != nil {
		return err
	}
	if err := c.Value.Validate(); err != nil {
		return within("value", err)
	}
	return validateKey("key", c.Key)
}

func (s Snapshot) validate() error {
	if err := validateKey("last_key", s.LastKey); err != nil {
		return err
	}
	if _, ok := s.Resume.(Snapshot); ok {
		return invalidf("resume", "is a snapshot")
	}
	return within("resume", Validate(s.Resume))
}

func validateKey(path string, k Key) error {
	for i, v := range k {
		p := fmt.Sprintf("%s[%d]", path, i)
		if err := v.Validate(); err != nil {
			return within(p, err)
		}
		if v.IsNull() {
			return invalidf(p, "key value is null")
		}
	}
	return nil
}

// Covers reports whether c covers a row with cursor value v and key k:
// whether (v, k) ≤ (c.Value, c.Key), or v ≤ c.Value when c.Key is empty. It
// is the tie-safe resume predicate (PITFALLS P9) for in-process models and
// tests: it orders with Compare, which for strings and uuids is not the
// source's order, so queries must let the source compare. NULL sorts first,
// so a row whose cursor is NULL counts as covered: a high-water mark never
// reads such rows.
func (c Cursor) Covers(v Value, k Key) (bool, error) {
	cmp, err := Compare(v, c.Value)
	if err != nil {
		return false, fmt.Errorf("cursor %s: %w", c.Column, err)
	}
	if cmp != 0 || len(c.Key) == 0 {
		return cmp <= 0, nil
	}
	kc, err := CompareKeys(k, c.Key)
	if err != nil {
		return false, fmt.Errorf("cursor %s: %w", c.Column, err)
	}
	return kc <= 0, nil
}
