package synth

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestAmountString(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Amount
		want string
	}{
		{"zero", 0, "0.00"},
		{"cents", 5, "0.05"},
		{"dollars", 12345, "123.45"},
		{"negative", -1205, "-12.05"},
		{"negative cents", -7, "-0.07"},
		{"max", Amount(9223372036854775807), "92233720368547758.07"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, tc.a.String())
		})
	}
}

func TestTick(t *testing.T) {
	base := time.Date(2025, 1, 6, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name   string
		offset time.Duration
		wantMs int
	}{
		{"whole second", 0, 0},
		{"one tick", 3400 * time.Microsecond, 3},
		{"two ticks", 6700 * time.Microsecond, 7},
		{"three ticks", 10 * time.Millisecond, 10},
		{"last tick", 999 * time.Millisecond, 997},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tick(base.Add(tc.offset))
			require.Equal(t, tc.wantMs, got.Nanosecond()/int(time.Millisecond))
			require.Zero(t, got.Nanosecond()%int(time.Millisecond))
		})
	}
}

func TestNewID(t *testing.T) {
	a, b := newID(1, 2, 3), newID(1, 2, 4)
	require.NotEqual(t, a, b)
	require.Equal(t, a, newID(1, 2, 3))
	require.NotEqual(t, a, newID(2, 2, 3), "the seed is part of every id")
	s := a.String()
	require.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, s)
}

func TestYMD(t *testing.T) {
	require.Equal(t, "20250106", ymd(DefaultStart))
}
