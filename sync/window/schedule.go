package window

import "time"

// HasSchedule reports whether the policy has a spec.schedule, so that the
// sync applies at its times instead of every interval.
func (c *Compiled) HasSchedule() bool { return c.schedule != nil }

// NextScheduled returns the first time of spec.schedule after after; zero
// without a schedule.
func (c *Compiled) NextScheduled(after time.Time) time.Time {
	if c.schedule == nil {
		return time.Time{}
	}
	return c.schedule.Next(after)
}

// Due reports whether a scheduled run is due at now: whether a time of
// spec.schedule lies in (lastScheduledRun, now]. Runs missed while the agent
// was away collapse into one. A zero lastScheduledRun means no scheduled run
// has happened yet, so one is due; a caller that wants the first run to
// wait for the schedule passes the GitSync's creation time instead.
// Without a schedule nothing is ever due.
func (c *Compiled) Due(lastScheduledRun, now time.Time) bool {
	if c.schedule == nil {
		return false
	}
	if lastScheduledRun.IsZero() {
		return true
	}
	next := c.schedule.Next(lastScheduledRun)
	return !next.IsZero() && !next.After(now)
}
