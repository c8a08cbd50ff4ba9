package watermarks_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

func TestLSNText(t *testing.T) {
	want := watermarks.LSN{0, 0, 0, 0x2A, 0, 0, 0x01, 0xF0, 0, 0x03}
	require.Equal(t, "0x0000002A000001F00003", want.String())
	for _, s := range []string{
		"0x0000002A000001F00003",
		"0X0000002a000001f00003",
		"0000002A000001F00003",
		"0000002A:000001F0:0003",
	} {
		t.Run(s, func(t *testing.T) {
			got, err := watermarks.ParseLSN(s)
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

func TestParseLSNErrors(t *testing.T) {
	for name, s := range map[string]string{
		"empty":      "",
		"short":      "0x0000002A000001F000",
		"long":       "0x0000002A000001F0000300",
		"not hex":    "0x0000002A000001F0000G",
		"bad colons": "0000002A:000001F00:003",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := watermarks.ParseLSN(s)
			require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
		})
	}
}

func TestLSNCompareIsBytewise(t *testing.T) {
	a := watermarks.LSN{0, 0, 0, 0x2A, 0, 0, 0x01, 0xF0, 0, 0x03}
	b := watermarks.LSN{0, 0, 0, 0x2A, 0, 0, 0x01, 0xF0, 0, 0x04}
	c := watermarks.LSN{0x80}
	require.Equal(t, -1, a.Compare(b))
	require.Equal(t, 1, c.Compare(b), "a high first byte is later (bytewise, not signed)")
	require.Zero(t, a.Compare(a))
	require.True(t, watermarks.LSN{}.IsZero())
	require.False(t, a.IsZero())
}

func TestLSNJSON(t *testing.T) {
	in := struct{ L watermarks.LSN }{watermarks.LSN{9: 1}}
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.JSONEq(t, `{"L":"0x00000000000000000001"}`, string(b))
	var out struct{ L watermarks.LSN }
	require.NoError(t, json.Unmarshal(b, &out))
	require.Equal(t, in, out)
}
