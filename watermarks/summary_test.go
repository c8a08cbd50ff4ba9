package watermarks_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// TestSummaryHasNoRowValues: a position's summary (what the audit, the
// admin API and NOTIFY show) keeps the kind, LSNs, versions and row-version
// numbers, and of key and cursor values only their type and count: the
// sentinel in each key, and a timestamp cursor's value, are in the full
// position (Encode, Detail) and never in the summary.
func TestSummaryHasNoRowValues(t *testing.T) {
	const sentinel = "SENTINEL-Q7731Z"
	mv := must(t)
	key := watermarks.Key{watermarks.String("varchar(40)", sentinel), watermarks.Int64(424242)}
	dt := mv(watermarks.ParseValue(watermarks.TypeDateTime, "datetime", "2026-11-01T08:30:00.003"))
	rv := watermarks.RowVersion([8]byte{0, 0, 0, 0, 0, 0, 0x07, 0xD1})
	tests := []struct {
		name string
		p    watermarks.Position
		want string // the summary's JSON
	}{
		{"cdc", watermarks.CDC{LSN: lsnA, CommandID: 3, Seqval: lsnB, Op: 4, Instance: "dbo_claims"},
			`{"kind":"cdc","summary":"cdc 0x0000002A000001F00003 after command 3 seqval 0x0000002A000001F00002 op 4 (dbo_claims)","lsn":"0x0000002A000001F00003","command_id":3,"seqval":"0x0000002A000001F00002","op":4,"instance":"dbo_claims"}`},
		{"ct in a window", watermarks.CT{Version: 120, To: 150, LastKey: key},
			`{"kind":"ct","summary":"ct version 120, window to 150 after <key of 2 values>","version":120,"window_to":150,"key_values":2}`},
		{"ct at version 0", watermarks.CT{},
			`{"kind":"ct","summary":"ct version 0","version":0}`},
		{"rowversion cursor", watermarks.Cursor{Column: "row_timestamp", Value: rv, Key: key},
			`{"kind":"cursor","summary":"cursor row_timestamp 0x00000000000007D1, after <key of 2 values>","column":"row_timestamp","value_type":"rowversion","row_version":"0x00000000000007D1","key_values":2}`},
		{"transaction id cursor", watermarks.Cursor{Column: "row_timestamp", Value: watermarks.Int64(9001)},
			`{"kind":"cursor","summary":"cursor row_timestamp 9001","column":"row_timestamp","value_type":"int","row_version":"9001"}`},
		{"timestamp cursor", watermarks.Cursor{Column: "modify_timestamp", Value: dt, Key: key},
			`{"kind":"cursor","summary":"cursor modify_timestamp <datetime datetime>, after <key of 2 values>","column":"modify_timestamp","value_type":"datetime","key_values":2}`},
		{"snapshot", watermarks.Snapshot{LastKey: key, Resume: watermarks.CT{Version: 7}},
			`{"kind":"snapshot","summary":"snapshot after <key of 2 values>, then ct version 7","key_values":2,"resume":{"kind":"ct","summary":"ct version 7","version":7}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(watermarks.Summarize(tc.p))
			require.NoError(t, err)
			require.JSONEq(t, tc.want, string(b))
			for _, secret := range []string{sentinel, "424242", "2026-11-01", "08:30"} {
				require.NotContains(t, string(b), secret)
			}
		})
	}
	full, err := watermarks.Encode(watermarks.Snapshot{LastKey: key})
	require.NoError(t, err)
	require.Contains(t, string(full), sentinel, "the sentinel is in the full position: the test can see it")
	require.Nil(t, watermarks.Summarize(nil))
	b, err := json.Marshal(watermarks.Summarize(nil))
	require.NoError(t, err)
	require.Equal(t, "null", string(b))
}
