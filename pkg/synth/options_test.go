package synth

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/schemas"
)

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "defaults", opts: Options{}},
		{name: "large", opts: Options{Preset: Large, Seed: 9}},
		{name: "explicit practices", opts: Options{Practices: []string{"0007", "0042"}}},
		{name: "unknown preset", opts: Options{Preset: "huge"}, wantErr: `preset "huge"`},
		{name: "short practice id", opts: Options{Practices: []string{"1"}}, wantErr: `practice id "1" is not 4 characters`},
		{name: "duplicate practice", opts: Options{Practices: []string{"0001", "0001"}}, wantErr: "listed twice"},
		{name: "too many encounters", opts: Options{EncountersPerDay: 2_000_000}, wantErr: "at most 1000000"},
		{name: "catalog without claims", opts: Options{Catalog: catalogWithout(t, "claims")}, wantErr: "catalog has no table claims"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Validate()
			if tc.wantErr == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestOptionsDefaults(t *testing.T) {
	for _, tc := range []struct {
		preset    Preset
		practices []string
		perDay    int
	}{
		{Small, []string{"0001"}, 150},
		{Medium, []string{"0001", "0002", "0003"}, 1500},
		{Large, []string{"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008", "0009", "0010"}, 15000},
	} {
		t.Run(string(tc.preset), func(t *testing.T) {
			o := Options{Preset: tc.preset}.withDefaults()
			require.Equal(t, tc.practices, o.Practices)
			require.Equal(t, tc.perDay, o.EncountersPerDay)
			require.Equal(t, DefaultStart, o.Start)
		})
	}
}

func catalogWithout(t *testing.T, name string) *schemas.Catalog {
	t.Helper()
	var keep []*schemas.Table
	for _, tb := range schemas.NextGen().Tables() {
		if tb.Name != name {
			keep = append(keep, tb)
		}
	}
	c, err := schemas.NewCatalog(keep...)
	require.NoError(t, err)
	return c
}
