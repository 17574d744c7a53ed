package window

import (
	"fmt"
	"strings"
	"time"
)

// Decision is whether a GitSync may apply at one instant, and if not, why
// and until when.
type Decision struct {
	// Allowed is true when applying is allowed now.
	Allowed bool
	// Blocking says what blocks, e.g. "deny window 0 (0 22 * * *, 8h) until
	// 06:00 UTC" or "outside every allow window"; empty when Allowed.
	Blocking string
	// NextOpen is the earliest later time at which applying is allowed;
	// zero when Allowed, or when there is none within Horizon. (A window
	// that stays active for weeks one short activation after another, such
	// as a deny window matching every minute, may exhaust the search first
	// and also give zero.)
	NextOpen time.Time
}

// Decide says whether applying is allowed at now. manual is true for a
// sync that the resync annotation asked for: windows with manualSync let it
// through.
func (c *Compiled) Decide(now time.Time, manual bool) Decision {
	st := c.stateAt(now)
	if c.allowed(st, manual) {
		return Decision{Allowed: true}
	}
	return Decision{
		Blocking: c.describe(now, st, manual),
		NextOpen: c.nextOpen(now, st, manual),
	}
}

// state is which windows are active at one instant.
type state struct {
	denies      []active // active deny windows
	activeAllow bool
}

// active is an active window and the start of its earliest activation that
// still covers the instant.
type active struct {
	w     *compiledWindow
	start time.Time
}

func (c *Compiled) stateAt(t time.Time) state {
	var st state
	for i := range c.windows {
		w := &c.windows[i]
		start, ok := w.activeAt(t)
		if !ok {
			continue
		}
		if w.Kind == KindDeny {
			st.denies = append(st.denies, active{w, start})
		} else {
			st.activeAllow = true
		}
	}
	return st
}

// activeAt reports whether the window is active at t, and the start of the
// earliest activation covering t: the first match after t-Duration, if it
// is not after t.
func (w *compiledWindow) activeAt(t time.Time) (time.Time, bool) {
	start := w.sched.Next(t.Add(-w.Duration))
	if start.IsZero() || start.After(t) {
		return time.Time{}, false
	}
	return start, true
}

// allowed applies the rules in Argo CD's order: an active deny blocks
// unless the sync is manual and every active deny allows manual syncs; an
// active allow lets the sync through; with allow windows but none active,
// only a manual sync passes, and only if some allow window has manualSync.
func (c *Compiled) allowed(st state, manual bool) bool {
	if len(st.denies) > 0 {
		return manual && len(blockers(st, manual)) == 0
	}
	if st.activeAllow || !c.anyAllow {
		return true
	}
	return manual && c.allowManual
}

// blockers are the active deny windows that block: all of them, or for a
// manual sync those without manualSync.
func blockers(st state, manual bool) []active {
	if !manual {
		return st.denies
	}
	var out []active
	for _, d := range st.denies {
		if !d.w.ManualSync {
			out = append(out, d)
		}
	}
	return out
}

// maxActivations bounds the walk to the last activation covering an
// instant, for windows longer than the gap between their matches.
const maxActivations = 1000

// end returns when the active window stops covering t: the end of its last
// activation that starts at or before t.
func (a active) end(t time.Time) time.Time {
	start := a.start
	for range maxActivations {
		next := a.w.sched.Next(start)
		if next.IsZero() || next.After(t) {
			break
		}
		start = next
	}
	return start.Add(a.w.Duration)
}

func (c *Compiled) describe(now time.Time, st state, manual bool) string {
	if len(st.denies) == 0 {
		return "outside every allow window"
	}
	bs := blockers(st, manual)
	parts := make([]string, len(bs))
	for i, b := range bs {
		parts[i] = fmt.Sprintf("deny window %d (%s, %s) until %s",
			b.w.index, strings.TrimSpace(b.w.Schedule), formatDuration(b.w.Duration), c.formatUntil(now, b.end(now)))
	}
	return strings.Join(parts, ", ")
}

// searchBudget bounds the cron evaluations of one NextOpen search (a
// fraction of a second), for windows that stay active for most of Horizon,
// such as a deny window matching every minute.
const searchBudget = 100_000

// nextOpen searches forward from now, where applying is blocked, for the
// earliest instant at which it is allowed. The answer can only change to
// allowed where a blocking deny window ends or a window starts, so the
// search jumps between those instants. It returns zero when it finds none
// within Horizon or within searchBudget.
func (c *Compiled) nextOpen(now time.Time, st state, manual bool) time.Time {
	limit := now.Add(Horizon)
	budget := searchBudget
	t := now
	for budget > 0 {
		next := c.nextChance(t, st, manual, limit, &budget)
		if next.IsZero() || next.After(limit) {
			return time.Time{}
		}
		budget -= len(c.windows)
		t, st = next, c.stateAt(next)
		if c.allowed(st, manual) {
			return t
		}
	}
	return time.Time{}
}

// nextChance returns the first instant after t, where applying is blocked,
// at which it may be allowed.
//
// While deny windows block, that is when the last of them stops being
// active: each blocks on its own until then.
//
// Otherwise applying is blocked for lack of an active allow window, and
// only the start of one can change that; for a manual sync, so can the
// start of a deny window with manualSync.
func (c *Compiled) nextChance(t time.Time, st state, manual bool, limit time.Time, budget *int) time.Time {
	if bs := blockers(st, manual); len(bs) > 0 {
		var last time.Time
		for _, b := range bs {
			if e := b.activeUntil(limit, budget); e.After(last) {
				last = e
			}
		}
		return last
	}
	var first time.Time
	for _, w := range c.windows {
		if w.Kind == KindDeny && !(manual && w.ManualSync) {
			continue
		}
		*budget--
		if s := w.sched.Next(t); !s.IsZero() && (first.IsZero() || s.Before(first)) {
			first = s
		}
	}
	return first
}

// activeUntil returns when the window next stops being active: the end of
// the run of its activations that overlap or touch, from a.start on. It
// stops walking at limit or when the budget is spent.
func (a active) activeUntil(limit time.Time, budget *int) time.Time {
	start, end := a.start, a.start.Add(a.w.Duration)
	for *budget > 0 && !end.After(limit) {
		*budget--
		next := a.w.sched.Next(start)
		if next.IsZero() || next.After(end) {
			break
		}
		start, end = next, next.Add(a.w.Duration)
	}
	return end
}

// formatUntil shows the clock time in the policy's zone, with the date when
// it is not today there.
func (c *Compiled) formatUntil(now, t time.Time) string {
	t, now = t.In(c.loc), now.In(c.loc)
	if y, m, d := t.Date(); y == now.Year() && m == now.Month() && d == now.Day() {
		return t.Format("15:04 MST")
	}
	return t.Format("2006-01-02 15:04 MST")
}

// formatDuration prints 8h rather than 8h0m0s.
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
