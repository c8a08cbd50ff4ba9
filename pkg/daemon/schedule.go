package daemon

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/ehrsync/ehrsync/pkg/config"
)

// NewSchedule is an organization's schedule: a cron expression (standard
// five fields or a descriptor) in the schedule's time zone, or runs every
// Every anchored at Start ("HH:MM", default 00:00) each day in the zone.
func NewSchedule(s config.Schedule) (cron.Schedule, error) {
	loc, err := s.Location()
	if err != nil {
		return nil, fmt.Errorf("schedule.timezone: %w", err)
	}
	if s.Cron != "" {
		sched, err := cron.ParseStandard(strings.TrimSpace(s.Cron))
		if err != nil {
			return nil, fmt.Errorf("schedule.cron: %w", err)
		}
		if spec, ok := sched.(*cron.SpecSchedule); ok {
			spec.Location = loc
		}
		return sched, nil
	}
	if s.Every <= 0 {
		return nil, fmt.Errorf("schedule: set one of cron or every")
	}
	start := s.Start
	if start == "" {
		start = config.DefaultStart
	}
	var h, m int
	if _, err := fmt.Sscanf(start, "%d:%d", &h, &m); err != nil || h < 0 || h > 23 || m < 0 || m > 59 {
		return nil, fmt.Errorf("schedule.start: %q is not a time of day HH:MM", s.Start)
	}
	return every{every: s.Every, start: time.Duration(h)*time.Hour + time.Duration(m)*time.Minute, loc: loc}, nil
}

// every runs at start + k*every for whole k >= 0 within each day (local
// midnight to midnight in loc), like the console's "Transfer Frequency"
// and "Start Time". An interval that does not divide the day restarts at
// start the next day.
type every struct {
	every, start time.Duration
	loc          *time.Location
}

// Next returns the first run time strictly after t.
func (e every) Next(t time.Time) time.Time {
	t = t.In(e.loc)
	for day := -1; day <= 2; day++ {
		y, mo, d := t.Date()
		midnight := time.Date(y, mo, d+day, 0, 0, 0, 0, e.loc)
		first := midnight.Add(e.start)
		nextMidnight := time.Date(y, mo, d+day+1, 0, 0, 0, 0, e.loc)
		if !t.Before(nextMidnight) {
			continue
		}
		var k int64
		if t.After(first) || t.Equal(first) {
			k = int64(t.Sub(first)/e.every) + 1
		}
		next := first.Add(time.Duration(k) * e.every)
		if next.After(t) && next.Before(nextMidnight) {
			return next
		}
	}
	return time.Time{}
}
