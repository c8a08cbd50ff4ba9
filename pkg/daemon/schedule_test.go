package daemon

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/ehrsync/ehrsync/pkg/config"
)

func TestSchedules(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	require.NoError(t, err)
	at := func(s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04:05", s, ny)
		require.NoError(t, err)
		return v
	}
	cases := []struct {
		name  string
		sched config.Schedule
		from  string
		want  []string
	}{
		{"every 4h from 06:30", config.Schedule{Every: 4 * time.Hour, Start: "06:30", Timezone: "America/New_York"},
			"2026-03-01 05:00:00", []string{"2026-03-01 06:30:00", "2026-03-01 10:30:00", "2026-03-01 14:30:00", "2026-03-01 18:30:00", "2026-03-01 22:30:00", "2026-03-02 06:30:00"}},
		{"every 5s", config.Schedule{Every: 5 * time.Second, Timezone: "America/New_York"},
			"2026-03-01 12:00:01", []string{"2026-03-01 12:00:05", "2026-03-01 12:00:10"}},
		{"exactly on a run time moves on", config.Schedule{Every: time.Hour, Start: "00:15", Timezone: "America/New_York"},
			"2026-03-01 23:15:00", []string{"2026-03-02 00:15:00", "2026-03-02 01:15:00"}},
		{"cron in the zone", config.Schedule{Cron: "0 2 * * *", Timezone: "America/New_York"},
			"2026-03-01 03:00:00", []string{"2026-03-02 02:00:00", "2026-03-03 02:00:00"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewSchedule(c.sched)
			require.NoError(t, err)
			now := at(c.from)
			for _, w := range c.want {
				now = s.Next(now)
				require.Equal(t, at(w).UTC(), now.UTC())
			}
		})
	}
}

func TestBadSchedules(t *testing.T) {
	for name, s := range map[string]config.Schedule{
		"no schedule": {},
		"bad cron":    {Cron: "61 * * * *"},
		"bad start":   {Every: time.Hour, Start: "25:00"},
		"bad zone":    {Every: time.Hour, Timezone: "Mars/Olympus"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := NewSchedule(s)
			require.Error(t, err)
		})
	}
}
