package watermarks

import (
	"encoding/hex"
	"strconv"
	"strings"
)

// Summary is a position without its row data: what the audit records, the
// admin API answers and NOTIFY carries. It keeps the kind, LSNs, Change
// Tracking versions and row-version numbers (SQL Server rowversion,
// PostgreSQL transaction ids), which are the database's counters, and of key
// and cursor values only their type and count: a key value, or a cursor
// value of a timestamp column, is row data (PHI) and is never in a Summary.
// The full position is read with the local CLI only (`ehrsync positions
// show`).
//
// Its JSON form is an object; fields that do not apply are left out:
//
//	{"kind": "cdc", "summary": "cdc 0x... (dbo_claims)", "lsn": "0x...", "instance": "dbo_claims"}
//	{"kind": "ct", "summary": "ct version 120, window to 150 after <key of 1 value>", "version": 120, "window_to": 150, "key_values": 1}
//	{"kind": "cursor", "summary": "cursor row_timestamp 0x00000000000007D1", "column": "row_timestamp", "value_type": "rowversion", "row_version": "0x00000000000007D1"}
//	{"kind": "snapshot", "summary": "...", "key_values": 1, "resume": {...}}
type Summary struct {
	Kind Kind `json:"kind"`
	// Text is the position's String: safe to log.
	Text string `json:"summary"`
	// CDC.
	LSN       *LSN   `json:"lsn,omitempty"`
	CommandID int32  `json:"command_id,omitempty"`
	Seqval    *LSN   `json:"seqval,omitempty"`
	Op        int8   `json:"op,omitempty"`
	Instance  string `json:"instance,omitempty"`
	// CT: the version applied, and the end of the window being read.
	Version  *int64 `json:"version,omitempty"`
	WindowTo int64  `json:"window_to,omitempty"`
	// Cursor: the column, its value's type, and the row-version number
	// when the cursor is a row version (hex for a SQL Server rowversion,
	// decimal for a PostgreSQL transaction id); never a timestamp's value.
	Column     string    `json:"column,omitempty"`
	ValueType  ValueType `json:"value_type,omitempty"`
	RowVersion string    `json:"row_version,omitempty"`
	// KeyValues counts the values of the key the position is after (CT
	// window, cursor tie-break, snapshot progress); never the values.
	KeyValues int `json:"key_values,omitempty"`
	// Resume is a snapshot's incremental position.
	Resume *Summary `json:"resume,omitempty"`
}

// Summarize returns p's Summary; nil for no position.
func Summarize(p Position) *Summary {
	if p == nil {
		return nil
	}
	s := &Summary{Kind: p.Kind(), Text: p.String()}
	switch p := p.(type) {
	case CDC:
		lsn := p.LSN
		s.LSN, s.CommandID, s.Op, s.Instance = &lsn, p.CommandID, p.Op, p.Instance
		if p.InTransaction() {
			seq := p.Seqval
			s.Seqval = &seq
		}
	case CT:
		v := p.Version
		s.Version, s.WindowTo, s.KeyValues = &v, p.To, len(p.LastKey)
	case Cursor:
		s.Column, s.ValueType, s.KeyValues = p.Column, p.Value.Type(), len(p.Key)
		s.RowVersion = rowVersionNumber(p.Value)
	case Snapshot:
		s.KeyValues = len(p.LastKey)
		s.Resume = Summarize(p.Resume)
	}
	return s
}

// rowVersionNumber is a row-version cursor value as a number: SQL Server's
// rowversion as it displays binary(8), a PostgreSQL transaction id in
// decimal; "" for any other value (timestamps are row data).
func rowVersionNumber(v Value) string {
	if b, ok := v.AsRowVersion(); ok {
		return "0x" + strings.ToUpper(hex.EncodeToString(b[:]))
	}
	if n, ok := v.AsInt64(); ok {
		return strconv.FormatInt(n, 10)
	}
	return ""
}
