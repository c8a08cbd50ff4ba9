package extractors

import (
	"fmt"
	"strings"
)

// Why is the planner's reason for a plan's strategy: the fact it chose on,
// the notes that qualify that choice, and what auto found missing in the
// stronger strategies it passed over. Callers decide by the reasons' codes;
// String is the sentence an operator reads.
type Why struct {
	Chose  Reason   // the deciding fact
	Notes  []Reason // qualifications of the choice, in order
	Passed []Reason // why auto passed over stronger strategies, in the order it tried them
}

// String reads "<chose>; <note>; … (<passed>; …)".
func (w Why) String() string {
	var b strings.Builder
	b.WriteString(w.Chose.String())
	for _, n := range w.Notes {
		b.WriteString("; ")
		b.WriteString(n.String())
	}
	if len(w.Passed) > 0 {
		b.WriteString(" (")
		for i, p := range w.Passed {
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p.String())
		}
		b.WriteString(")")
	}
	return b.String()
}

// Has reports whether code is among w's reasons.
func (w Why) Has(code ReasonCode) bool {
	for _, rs := range [][]Reason{{w.Chose}, w.Notes, w.Passed} {
		for _, r := range rs {
			if r.Code == code {
				return true
			}
		}
	}
	return false
}

// Reason is one fact a plan rests on: a code to decide by, and the detail
// its text names (a column, a capture instance, the error that ruled a
// strategy out). It never holds row values.
type Reason struct {
	Code   ReasonCode
	Detail string
}

// ReasonCode is the kind of a Reason.
type ReasonCode int

// The reasons. Each one's text is in reasonText; %s is the Detail.
const (
	// Chosen strategies.
	ReasonCDC                ReasonCode = iota + 1 // CDC tracks the table and the login can read it
	ReasonChangeTracking                           // Change Tracking is on and readable
	ReasonConfiguredCursor                         // Detail: the configured cursor column
	ReasonRowVersion                               // Detail: the row-version column
	ReasonModifiedAt                               // Detail: the modified-at column
	ReasonNoCursor                                 // no row-version or modified-at column: snapshot each run
	ReasonConfigured                               // the configured strategy
	ReasonConfiguredSnapshot                       // the configured snapshot strategy
	ReasonRange                                    // an operator's ranged backfill

	// Notes on a CDC choice.
	ReasonComputedNotRead // Detail: the computed columns left out
	ReasonNoCommandID     // Detail: the capture instance without __$command_id

	// Strategies auto passed over.
	ReasonCDCNotReadable // Detail: the permission error
	ReasonCDCNotUsable   // Detail: why CDC cannot carry the table
	ReasonNoCDC
	ReasonNoChangeTracking
)

var reasonText = map[ReasonCode]string{
	ReasonCDC:                "the table is tracked by Change Data Capture and the login can read its capture instance",
	ReasonChangeTracking:     "Change Tracking is enabled and VIEW CHANGE TRACKING is granted",
	ReasonConfiguredCursor:   "high-water mark on the configured cursor %s",
	ReasonRowVersion:         "high-water mark on the row-version column %s",
	ReasonModifiedAt:         "high-water mark on %s with look-back: the table has no row-version column",
	ReasonNoCursor:           "full keyset snapshot each run: the table has no row-version or modified-at column",
	ReasonConfigured:         "configured",
	ReasonConfiguredSnapshot: "configured: full keyset snapshot each run",
	ReasonRange:              "an operator's ranged backfill: a keyset snapshot of the key range",
	ReasonComputedNotRead:    "computed columns %s are not read (CDC records them as NULL)",
	ReasonNoCommandID: "capture instance %s has no __$command_id, so changes inside a transaction are read in " +
		"(__$start_lsn, __$seqval, __$operation) order (install the SQL Server cumulative update of KB 3030352, then re-create the capture instance)",
	ReasonCDCNotReadable:   "CDC not readable (%s)",
	ReasonCDCNotUsable:     "CDC not usable (%s)",
	ReasonNoCDC:            "no readable CDC capture instance",
	ReasonNoChangeTracking: "Change Tracking not readable",
}

// String is the reason as an operator reads it.
func (r Reason) String() string {
	text, ok := reasonText[r.Code]
	if !ok {
		return fmt.Sprintf("reason %d", int(r.Code))
	}
	if strings.Contains(text, "%s") {
		return fmt.Sprintf(text, r.Detail)
	}
	return text
}
