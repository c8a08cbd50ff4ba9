package extractors_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/extractors"
)

func TestWhy(t *testing.T) {
	cases := []struct {
		name string
		why  extractors.Why
		want string
	}{
		{name: "chosen only", why: extractors.Why{Chose: extractors.Reason{Code: extractors.ReasonRowVersion, Detail: "row_timestamp"}},
			want: "high-water mark on the row-version column row_timestamp"},
		{name: "with notes", why: extractors.Why{Chose: extractors.Reason{Code: extractors.ReasonCDC},
			Notes: []extractors.Reason{{Code: extractors.ReasonComputedNotRead, Detail: "a, b"}}},
			want: "the table is tracked by Change Data Capture and the login can read its capture instance; computed columns a, b are not read (CDC records them as NULL)"},
		{name: "with strategies passed over", why: extractors.Why{Chose: extractors.Reason{Code: extractors.ReasonNoCursor},
			Passed: []extractors.Reason{{Code: extractors.ReasonCDCNotReadable, Detail: "no SELECT on cdc"}, {Code: extractors.ReasonNoChangeTracking}}},
			want: "full keyset snapshot each run: the table has no row-version or modified-at column (CDC not readable (no SELECT on cdc); Change Tracking not readable)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, c.why.String())
			require.True(t, c.why.Has(c.why.Chose.Code))
			require.False(t, c.why.Has(extractors.ReasonRange))
		})
	}
	require.True(t, extractors.Why{Passed: []extractors.Reason{{Code: extractors.ReasonNoCDC}}}.Has(extractors.ReasonNoCDC))
}
