package watermarks_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/watermarks"
)

// FuzzDecode checks that Decode never panics, and that whatever it accepts
// encodes canonically and decodes back to the same position. Seeds: the
// canonical examples of every kind and value type, and testdata/fuzz.
func FuzzDecode(f *testing.F) {
	t := &testing.T{}
	for _, tc := range positionCases(t) {
		f.Add([]byte(tc.json))
	}
	for _, tc := range valueCases(t) {
		b, err := watermarks.Encode(watermarks.Cursor{Column: "c", Value: tc.v})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := watermarks.Decode(in)
		if err != nil {
			require.ErrorIs(t, err, watermarks.ErrInvalidPosition)
			return
		}
		if p == nil {
			return // null: no position
		}
		b, err := watermarks.Encode(p)
		require.NoError(t, err, "decoded position does not encode")
		again, err := watermarks.Decode(b)
		require.NoError(t, err, "canonical form does not decode: %s", b)
		require.Equal(t, p, again)
		b2, err := watermarks.Encode(again)
		require.NoError(t, err)
		require.Equal(t, string(b), string(b2), "encoding is not canonical")
		_ = p.String()
		_ = p.Detail()
	})
}
