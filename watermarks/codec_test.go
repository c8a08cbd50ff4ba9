package watermarks_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

var (
	lsnA = watermarks.LSN{0, 0, 0, 0x2A, 0, 0, 0x01, 0xF0, 0, 0x03}
	lsnB = watermarks.LSN{0, 0, 0, 0x2A, 0, 0, 0x01, 0xF0, 0, 0x02}
	guid = [16]byte{0x6f, 0x96, 0x19, 0xff, 0x8b, 0x86, 0xd0, 0x11, 0xb4, 0x2d, 0x00, 0xc0, 0x4f, 0xc9, 0x64, 0xff}
)

// positionCases is one case per kind and shape, with its canonical JSON.
func positionCases(t *testing.T) []struct {
	name string
	p    watermarks.Position
	json string
} {
	mv := must(t)
	dt := mv(watermarks.ParseValue(watermarks.TypeDateTime, "datetime", "2026-11-01T08:30:00.003"))
	return []struct {
		name string
		p    watermarks.Position
		json string
	}{
		{"cdc at a transaction boundary",
			watermarks.CDC{LSN: lsnA, Instance: "dbo_claims"},
			`{"v":1,"kind":"cdc","instance":"dbo_claims","lsn":"0x0000002A000001F00003"}`},
		{"cdc inside a transaction",
			watermarks.CDC{LSN: lsnA, CommandID: 3, Seqval: lsnB, Op: 4, Instance: "dbo_claims_v2"},
			`{"v":1,"kind":"cdc","instance":"dbo_claims_v2","lsn":"0x0000002A000001F00003","command_id":3,"seqval":"0x0000002A000001F00002","op":4}`},
		// A position saved before command_id was recorded still decodes
		// (command_id is omitted when zero).
		{"cdc inside a transaction without command id",
			watermarks.CDC{LSN: lsnA, Seqval: lsnB, Op: 4, Instance: "dbo_claims_v2"},
			`{"v":1,"kind":"cdc","instance":"dbo_claims_v2","lsn":"0x0000002A000001F00003","seqval":"0x0000002A000001F00002","op":4}`},
		{"cdc without instance",
			watermarks.CDC{LSN: lsnA},
			`{"v":1,"kind":"cdc","lsn":"0x0000002A000001F00003"}`},
		{"ct at a version",
			watermarks.CT{Version: 120},
			`{"v":1,"kind":"ct","version":120}`},
		{"ct at version zero",
			watermarks.CT{},
			`{"v":1,"kind":"ct","version":0}`},
		{"ct in a window",
			watermarks.CT{Version: 120, To: 150, LastKey: watermarks.Key{watermarks.Int64(42).WithSQLType("int"), watermarks.String("varchar(4)", "0001")}},
			`{"v":1,"kind":"ct","version":120,"to":150,"last_key":[{"type":"int","sql":"int","v":"42"},{"type":"string","sql":"varchar(4)","v":"0001"}]}`},
		{"ct window not started",
			watermarks.CT{Version: 9223372036854775806, To: 9223372036854775807},
			`{"v":1,"kind":"ct","version":9223372036854775806,"to":9223372036854775807}`},
		{"cursor on rowversion",
			watermarks.Cursor{Column: "row_version", Value: watermarks.RowVersion([8]byte{6: 0x07, 7: 0xD1})},
			`{"v":1,"kind":"cursor","column":"row_version","value":{"type":"rowversion","v":"0x00000000000007D1"}}`},
		{"cursor with tie key",
			watermarks.Cursor{Column: "modify_timestamp", Value: dt, Key: watermarks.Key{watermarks.UUID(guid).WithSQLType("uniqueidentifier")}},
			`{"v":1,"kind":"cursor","column":"modify_timestamp","value":{"type":"datetime","sql":"datetime","v":"2026-11-01T08:30:00.003"},"key":[{"type":"uuid","sql":"uniqueidentifier","v":"6f9619ff-8b86-d011-b42d-00c04fc964ff"}]}`},
		{"cursor at null",
			watermarks.Cursor{Column: "modify_timestamp", Value: watermarks.Null().WithSQLType("datetime2(3)")},
			`{"v":1,"kind":"cursor","column":"modify_timestamp","value":{"type":"null","sql":"datetime2(3)"}}`},
		{"snapshot not started",
			watermarks.Snapshot{Resume: watermarks.CDC{LSN: lsnA, Instance: "dbo_claims"}},
			`{"v":1,"kind":"snapshot","resume":{"v":1,"kind":"cdc","instance":"dbo_claims","lsn":"0x0000002A000001F00003"}}`},
		{"snapshot in progress",
			watermarks.Snapshot{LastKey: watermarks.Key{watermarks.String("varchar(20)", "A-100")}, Resume: watermarks.CT{Version: 120}},
			`{"v":1,"kind":"snapshot","last_key":[{"type":"string","sql":"varchar(20)","v":"A-100"}],"resume":{"v":1,"kind":"ct","version":120}}`},
		{"snapshot resuming a cursor",
			watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(7)}, Resume: watermarks.Cursor{Column: "rv", Value: watermarks.RowVersion([8]byte{7: 1}), Key: watermarks.Key{watermarks.Int64(3)}}},
			`{"v":1,"kind":"snapshot","last_key":[{"type":"int","v":"7"}],"resume":{"v":1,"kind":"cursor","column":"rv","value":{"type":"rowversion","v":"0x0000000000000001"},"key":[{"type":"int","v":"3"}]}}`},
		{"snapshot every run",
			watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Int64(7)}},
			`{"v":1,"kind":"snapshot","last_key":[{"type":"int","v":"7"}]}`},
		{"snapshot, html characters unescaped",
			watermarks.Snapshot{LastKey: watermarks.Key{watermarks.String("nvarchar(5)", "<&>")}},
			`{"v":1,"kind":"snapshot","last_key":[{"type":"string","sql":"nvarchar(5)","v":"<&>"}]}`},
	}
}

func TestPositionRoundTrip(t *testing.T) {
	for _, tc := range positionCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			b, err := watermarks.Encode(tc.p)
			require.NoError(t, err)
			require.Equal(t, tc.json, string(b))
			got, err := watermarks.Decode(b)
			require.NoError(t, err)
			require.Equal(t, tc.p, got)
			require.Equal(t, tc.p.Kind(), got.Kind())
			eq, err := watermarks.EqualPositions(tc.p, got)
			require.NoError(t, err)
			require.True(t, eq)
		})
	}
}

// PostgreSQL's jsonb reorders keys and adds spaces: what comes back from the
// store decodes to the same position and re-encodes canonically.
func TestDecodeIgnoresKeyOrderAndSpace(t *testing.T) {
	in := `{"to": 150, "v": 1, "kind": "ct", "last_key": [{"v": "42", "sql": "int", "type": "int"}], "version": 120}`
	p, err := watermarks.Decode([]byte(in))
	require.NoError(t, err)
	b, err := watermarks.Encode(p)
	require.NoError(t, err)
	require.Equal(t, `{"v":1,"kind":"ct","version":120,"to":150,"last_key":[{"type":"int","sql":"int","v":"42"}]}`, string(b))
}

func TestEncodeIsCanonical(t *testing.T) {
	mv := must(t)
	tests := []struct {
		name string
		a, b watermarks.Position
	}{
		{"nil and empty keys", watermarks.Cursor{Column: "c", Value: watermarks.Int64(1), Key: watermarks.Key{}}, watermarks.Cursor{Column: "c", Value: watermarks.Int64(1)}},
		{"decimal spellings", watermarks.Cursor{Column: "c", Value: mv(watermarks.Decimal("-00120", 1))}, watermarks.Cursor{Column: "c", Value: mv(watermarks.ParseDecimal("-12.0"))}},
		{"empty snapshot key", watermarks.Snapshot{LastKey: watermarks.Key{}}, watermarks.Snapshot{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := watermarks.Encode(tc.a)
			require.NoError(t, err)
			b, err := watermarks.Encode(tc.b)
			require.NoError(t, err)
			require.Equal(t, string(a), string(b))
		})
	}
	eq, err := watermarks.EqualPositions(watermarks.CT{Version: 1}, watermarks.CT{Version: 2})
	require.NoError(t, err)
	require.False(t, eq)
	eq, err = watermarks.EqualPositions(nil, nil)
	require.NoError(t, err)
	require.True(t, eq)
	eq, err = watermarks.EqualPositions(nil, watermarks.CT{})
	require.NoError(t, err)
	require.False(t, eq)
}

func TestNoPosition(t *testing.T) {
	b, err := watermarks.Encode(nil)
	require.NoError(t, err)
	require.Equal(t, "null", string(b))
	for _, in := range []string{"null", " null\n"} {
		p, err := watermarks.Decode([]byte(in))
		require.NoError(t, err)
		require.Nil(t, p)
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // in the error message
	}{
		{"empty", ``, "empty document"},
		{"not JSON", `{"v":1,`, "not JSON"},
		{"an array", `[1]`, "want an object"},
		{"a string", `"cdc"`, "want an object"},
		{"trailing data", `{"v":1,"kind":"ct","version":1} {}`, "not JSON"},
		{"no version", `{"kind":"ct","version":1}`, "v: missing"},
		{"newer version", `{"v":2,"kind":"ct","version":1}`, "format version 2 is newer than this binary reads (1)"},
		{"version zero", `{"v":0,"kind":"ct","version":1}`, "unknown format version 0"},
		{"version not a number", `{"v":"1","kind":"ct","version":1}`, "v: is a JSON string, want a number"},
		{"no kind", `{"v":1,"version":1}`, "kind: missing"},
		{"unknown kind", `{"v":1,"kind":"binlog","pos":1}`, `unknown kind "binlog"`},
		{"unknown field", `{"v":1,"kind":"ct","version":1,"extra":true}`, "extra: unknown field"},
		{"field of another kind", `{"v":1,"kind":"ct","version":1,"lsn":"0x0000002A000001F00003"}`, "lsn: unknown field"},
		{"unknown value field", `{"v":1,"kind":"cursor","column":"c","value":{"type":"int","v":"1","scale":2}}`, "scale: unknown field"},
		{"cdc without lsn", `{"v":1,"kind":"cdc"}`, "lsn: missing"},
		{"cdc lsn not hex", `{"v":1,"kind":"cdc","lsn":"0x0000002A000001F0000Z"}`, "lsn: not hexadecimal"},
		{"cdc lsn short", `{"v":1,"kind":"cdc","lsn":"0x0000002A000001F000"}`, "lsn: want 0x and 20 hex digits, got 20 characters"},
		{"cdc lsn without 0x", `{"v":1,"kind":"cdc","lsn":"0000002A000001F00003"}`, "lsn: want 0x and 20 hex digits"},
		{"cdc lsn zero", `{"v":1,"kind":"cdc","lsn":"0x00000000000000000000"}`, "lsn: is zero"},
		{"cdc lsn number", `{"v":1,"kind":"cdc","lsn":42}`, "lsn: is a JSON number, want a string"},
		{"cdc seqval bad", `{"v":1,"kind":"cdc","lsn":"0x0000002A000001F00003","seqval":"0x01","op":2}`, "seqval: want 0x and 20 hex digits"},
		{"cdc seqval zero", `{"v":1,"kind":"cdc","lsn":"0x0000002A000001F00003","seqval":"0x00000000000000000000","op":2}`, "seqval: is zero"},
		{"cdc op without seqval", `{"v":1,"kind":"cdc","lsn":"0x0000002A000001F00003","op":2}`, "op: set without seqval"},
		{"cdc op out of range", `{"v":1,"kind":"cdc","lsn":"0x0000002A000001F00003","seqval":"0x0000002A000001F00002","op":5}`, "op: 5 is not 1"},
		{"cdc op overflow", `{"v":1,"kind":"cdc","lsn":"0x0000002A000001F00003","seqval":"0x0000002A000001F00002","op":300}`, "op: is a JSON number 300, want a number"},
		{"ct without version", `{"v":1,"kind":"ct"}`, "version: missing"},
		{"ct negative version", `{"v":1,"kind":"ct","version":-1}`, "version: is negative"},
		{"ct fractional version", `{"v":1,"kind":"ct","version":1.5}`, "version: is a JSON number 1.5"},
		{"ct window backwards", `{"v":1,"kind":"ct","version":10,"to":5}`, "to: 5 is not after version 10"},
		{"ct key outside a window", `{"v":1,"kind":"ct","version":10,"last_key":[{"type":"int","v":"1"}]}`, "last_key: set outside a window"},
		{"ct null key value", `{"v":1,"kind":"ct","version":10,"to":11,"last_key":[{"type":"int","v":"1"},{"type":"null"}]}`, "last_key[1]: key value is null"},
		{"cursor without column", `{"v":1,"kind":"cursor","value":{"type":"int","v":"1"}}`, "column: missing"},
		{"cursor without value", `{"v":1,"kind":"cursor","column":"c"}`, "value: missing"},
		{"value without type", `{"v":1,"kind":"cursor","column":"c","value":{"v":"1"}}`, "value.type: missing"},
		{"value without v", `{"v":1,"kind":"cursor","column":"c","value":{"type":"int"}}`, "value.v: missing"},
		{"null with v", `{"v":1,"kind":"cursor","column":"c","value":{"type":"null","v":""}}`, "value.v: set on a null value"},
		{"unknown value type", `{"v":1,"kind":"cursor","column":"c","value":{"type":"float","v":"1.5"}}`, `value: unknown value type "float"`},
		{"int as number", `{"v":1,"kind":"cursor","column":"c","value":{"type":"int","v":1}}`, "value.v: is a JSON number, want a string"},
		{"rowversion 7 bytes", `{"v":1,"kind":"cursor","column":"c","value":{"type":"rowversion","v":"0x00000000000001"}}`, "value: rowversion has 7 bytes, want 8"},
		{"uuid short", `{"v":1,"kind":"cursor","column":"c","value":{"type":"uuid","v":"6f9619ff-8b86-d011-b42d-00c04fc964f"}}`, "value: uuid is not"},
		{"datetime not a tick", `{"v":1,"kind":"cursor","column":"c","value":{"type":"datetime","v":"2026-11-01T08:30:00.004"}}`, "value: datetime milliseconds .004 are not a 1/300 s tick"},
		{"string without sql type", `{"v":1,"kind":"cursor","column":"c","value":{"type":"string","v":"x"}}`, "value: string has no sql type"},
		{"bad key value", `{"v":1,"kind":"cursor","column":"c","value":{"type":"int","v":"1"},"key":[{"type":"int","v":"1"},{"type":"decimal","v":"1e5"}]}`, "key[1]: decimal is not a base-10 number"},
		{"snapshot resuming a snapshot", `{"v":1,"kind":"snapshot","resume":{"v":1,"kind":"snapshot"}}`, "resume: is a snapshot"},
		{"snapshot resume invalid", `{"v":1,"kind":"snapshot","resume":{"v":1,"kind":"cdc","lsn":"0x1"}}`, "resume.lsn: want 0x and 20 hex digits"},
		{"snapshot resume newer", `{"v":1,"kind":"snapshot","resume":{"v":3,"kind":"cdc"}}`, "resume.v: format version 3 is newer"},
		{"snapshot resume not an object", `{"v":1,"kind":"snapshot","resume":[]}`, "resume: document is a JSON array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := watermarks.Decode([]byte(tc.in))
			require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
			require.Nil(t, p)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// Errors name the field, never the values around it (they may be PHI).
func TestDecodeErrorsDoNotQuoteValues(t *testing.T) {
	in := `{"v":1,"kind":"cursor","column":"c","value":{"type":"string","sql":"varchar(20)","v":"MRN-SECRET"},"key":[{"type":"uuid","v":"SECRET-NOT-A-UUID"}]}`
	_, err := watermarks.Decode([]byte(in))
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
	require.NotContains(t, err.Error(), "SECRET")
	var ie *watermarks.InvalidError
	require.ErrorAs(t, err, &ie)
	require.Equal(t, "key[0]", ie.Path)
}

func TestEncodeRefusesInvalidPositions(t *testing.T) {
	tests := []struct {
		name string
		p    watermarks.Position
		want string
	}{
		{"zero lsn", watermarks.CDC{}, "lsn: is zero"},
		{"op without seqval", watermarks.CDC{LSN: lsnA, Op: 2}, "op: set without seqval"},
		{"seqval without op", watermarks.CDC{LSN: lsnA, Seqval: lsnB}, "op: 0 is not 1"},
		{"command id without seqval", watermarks.CDC{LSN: lsnA, CommandID: 2}, "command_id: set without seqval"},
		{"negative command id", watermarks.CDC{LSN: lsnA, CommandID: -1, Seqval: lsnB, Op: 2}, "command_id: is negative"},
		{"ct window backwards", watermarks.CT{Version: 5, To: 5}, "to: 5 is not after version 5"},
		{"cursor without column", watermarks.Cursor{Value: watermarks.Int64(1)}, "column: is empty"},
		{"cursor without value", watermarks.Cursor{Column: "c"}, "value: value has no type"},
		{"string without sql type", watermarks.Cursor{Column: "c", Value: watermarks.String("", "x")}, "value: string has no sql type"},
		{"NUL in a key", watermarks.Cursor{Column: "c", Value: watermarks.Int64(1), Key: watermarks.Key{watermarks.String("varchar(2)", "a\x00")}}, "key[0]: string has a NUL character"},
		{"null key", watermarks.Snapshot{LastKey: watermarks.Key{watermarks.Null()}}, "last_key[0]: key value is null"},
		{"nested snapshot", watermarks.Snapshot{Resume: watermarks.Snapshot{}}, "resume: is a snapshot"},
		{"invalid resume", watermarks.Snapshot{Resume: watermarks.CT{Version: -1}}, "resume.version: is negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := watermarks.Encode(tc.p)
			require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestStringIsSafeToLog: String (what logs, errors and the admin API's
// summaries show) has the LSNs, versions and row-version numbers, never a
// key value nor a timestamp cursor's value; Display (an operator's
// positions list, the sync report) adds the cursor's value of any type,
// never a key value; Detail (positions show) has every value.
func TestStringIsSafeToLog(t *testing.T) {
	secret := watermarks.String("varchar(20)", "MRN-SECRET")
	mv := must(t)
	when := mv(watermarks.ParseValue(watermarks.TypeDateTime2, "datetime2(3)", "2026-11-01T08:30:00.5"))
	rv := watermarks.RowVersion([8]byte{0, 0, 0, 0, 0, 0, 0x07, 0xD1})
	tests := []struct {
		name    string
		p       watermarks.Position
		str     string
		display string // "": str
		detail  string
	}{
		{"cdc", watermarks.CDC{LSN: lsnA, Instance: "dbo_claims"},
			"cdc 0x0000002A000001F00003 (dbo_claims)", "",
			"cdc 0x0000002A000001F00003 (dbo_claims)"},
		{"cdc inside a transaction", watermarks.CDC{LSN: lsnA, Seqval: lsnB, Op: 2},
			"cdc 0x0000002A000001F00003 after seqval 0x0000002A000001F00002 op 2", "",
			"cdc 0x0000002A000001F00003 after seqval 0x0000002A000001F00002 op 2"},
		{"cdc inside a transaction with command id", watermarks.CDC{LSN: lsnA, CommandID: 3, Seqval: lsnB, Op: 2},
			"cdc 0x0000002A000001F00003 after command 3 seqval 0x0000002A000001F00002 op 2", "",
			"cdc 0x0000002A000001F00003 after command 3 seqval 0x0000002A000001F00002 op 2"},
		{"ct", watermarks.CT{Version: 7}, "ct version 7", "", "ct version 7"},
		{"ct window", watermarks.CT{Version: 7, To: 9, LastKey: watermarks.Key{secret}},
			"ct version 7, window to 9 after <key of 1 value>", "",
			`ct version 7, window to 9 after ("MRN-SECRET")`},
		{"ct window not started", watermarks.CT{Version: 7, To: 9},
			"ct version 7, window to 9 not started", "", "ct version 7, window to 9 not started"},
		{"timestamp cursor", watermarks.Cursor{Column: "modified", Value: when, Key: watermarks.Key{secret, watermarks.Int64(4)}},
			"cursor modified <datetime2 datetime2(3)>, after <key of 2 values>",
			"cursor modified 2026-11-01T08:30:00.5, after <key of 2 values>",
			`cursor modified 2026-11-01T08:30:00.5, after key ("MRN-SECRET", 4)`},
		{"timestamp cursor before any row", watermarks.Cursor{Column: "modified", Value: watermarks.Null().WithSQLType("datetime2(3)")},
			"cursor modified <null datetime2(3)>", "cursor modified NULL", "cursor modified NULL"},
		{"rowversion cursor", watermarks.Cursor{Column: "row_timestamp", Value: rv, Key: watermarks.Key{secret}},
			"cursor row_timestamp 0x00000000000007D1, after <key of 1 value>", "",
			`cursor row_timestamp 0x00000000000007D1, after key ("MRN-SECRET")`},
		{"transaction id cursor", watermarks.Cursor{Column: "xmin", Value: watermarks.Int64(9001)},
			"cursor xmin 9001", "", "cursor xmin 9001"},
		{"snapshot", watermarks.Snapshot{LastKey: watermarks.Key{secret}, Resume: watermarks.Cursor{Column: "modified", Value: when}},
			"snapshot after <key of 1 value>, then cursor modified <datetime2 datetime2(3)>",
			"snapshot after <key of 1 value>, then cursor modified 2026-11-01T08:30:00.5",
			`snapshot after key ("MRN-SECRET"), then cursor modified 2026-11-01T08:30:00.5`},
		{"snapshot not started", watermarks.Snapshot{Resume: watermarks.CT{Version: 3}},
			"snapshot not started, then ct version 3", "", "snapshot not started, then ct version 3"},
		{"snapshot every run, in progress", watermarks.Snapshot{LastKey: watermarks.Key{secret}},
			"snapshot after <key of 1 value>", "", `snapshot after key ("MRN-SECRET")`},
		{"snapshot every run, between passes", watermarks.Snapshot{},
			"snapshot complete, next pass from the start", "", "snapshot complete, next pass from the start"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			display := tc.display
			if display == "" {
				display = tc.str
			}
			require.Equal(t, tc.str, tc.p.String())
			require.Equal(t, display, tc.p.Display())
			require.Equal(t, tc.detail, tc.p.Detail())
			require.NotContains(t, display, "SECRET")
			var buf bytes.Buffer
			slog.New(slog.NewJSONHandler(&buf, nil)).Info("moved", "position", tc.p)
			slog.New(slog.NewTextHandler(&buf, nil)).Info("moved", "position", tc.p)
			fmt.Fprintf(&buf, "%v %+v %s", tc.p, tc.p, tc.p)
			require.NotContains(t, buf.String(), "SECRET")
			require.NotContains(t, buf.String(), "08:30:00.5")
		})
	}
}

func TestPositionsMarshalAsJSON(t *testing.T) {
	type notice struct {
		Position watermarks.Position `json:"position"`
	}
	b, err := json.Marshal(notice{watermarks.CT{Version: 3}})
	require.NoError(t, err)
	require.Equal(t, `{"position":{"v":1,"kind":"ct","version":3}}`, string(b))

	var c watermarks.CT
	require.NoError(t, json.Unmarshal([]byte(`{"v":1,"kind":"ct","version":3}`), &c))
	require.Equal(t, watermarks.CT{Version: 3}, c)
	var cur watermarks.Cursor
	err = json.Unmarshal([]byte(`{"v":1,"kind":"ct","version":3}`), &cur)
	require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
	require.Contains(t, err.Error(), "kind: is ct, want cursor")
}
