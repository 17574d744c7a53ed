package window

import (
	"errors"
	"fmt"
	"strings"
	"time"
	// Embedded so that time zones resolve in minimal container images that
	// ship no /usr/share/zoneinfo.
	_ "time/tzdata"

	"github.com/robfig/cron/v3"
)

// Kinds of Window.
const (
	KindAllow = "allow"
	KindDeny  = "deny"
)

// Horizon bounds how far ahead Decide looks for the next time applying is
// allowed; a Decision with a zero NextOpen means none within it.
const Horizon = 366 * 24 * time.Hour

// Window is one sync window, spec.windows[i].
type Window struct {
	// Kind is KindAllow or KindDeny.
	Kind string
	// Schedule is a 5-field cron expression or a descriptor such as @daily;
	// each match opens the window.
	Schedule string
	// Duration is how long the window stays active after each match.
	Duration time.Duration
	// ManualSync lets a manual sync through while this window blocks.
	ManualSync bool
}

// Policy is the part of a GitSync spec that says when it may apply.
type Policy struct {
	// Schedule is an optional cron expression: sync at those times instead
	// of every interval.
	Schedule string
	// TimeZone is the IANA time zone the cron expressions are evaluated in;
	// empty means UTC.
	TimeZone string
	// Windows are the allow and deny windows.
	Windows []Window
}

// FieldError is a user error in a Policy: a retry will not fix it. Field is
// the path of the offending spec field, e.g. "spec.windows[1].schedule".
type FieldError struct {
	Field  string
	Reason string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Reason }

// Compiled is a validated Policy, ready to answer Decide, NextScheduled and
// Due. It is immutable and safe for concurrent use.
type Compiled struct {
	loc      *time.Location
	schedule cron.Schedule // nil without spec.schedule
	windows  []compiledWindow
	// anyAllow and allowManual summarise the allow windows: whether one
	// exists and whether one has manualSync.
	anyAllow, allowManual bool
}

type compiledWindow struct {
	Window
	index int
	sched cron.Schedule
}

// Compile validates every field of p and returns it compiled. The error
// joins one *FieldError per invalid field, so a status can show them all.
func Compile(p Policy) (*Compiled, error) {
	var errs []error
	loc, err := loadLocation(p.TimeZone)
	if err != nil {
		errs = append(errs, err)
		loc = time.UTC // keep validating the rest
	}
	c := &Compiled{loc: loc}
	if p.Schedule != "" {
		if c.schedule, err = parseCron("spec.schedule", p.Schedule, loc); err != nil {
			errs = append(errs, err)
		}
	}
	for i, w := range p.Windows {
		field := fmt.Sprintf("spec.windows[%d]", i)
		cw := compiledWindow{Window: w, index: i}
		switch w.Kind {
		case KindAllow:
			c.anyAllow = true
			c.allowManual = c.allowManual || w.ManualSync
		case KindDeny:
		default:
			errs = append(errs, &FieldError{field + ".kind", fmt.Sprintf("must be %q or %q, got %q", KindAllow, KindDeny, w.Kind)})
		}
		if cw.sched, err = parseCron(field+".schedule", w.Schedule, loc); err != nil {
			errs = append(errs, err)
		}
		if w.Duration <= 0 {
			errs = append(errs, &FieldError{field + ".duration", fmt.Sprintf("must be positive, got %s", w.Duration)})
		}
		c.windows = append(c.windows, cw)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return c, nil
}

func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	// "Local" would depend on the machine the agent happens to run on.
	if name == "Local" {
		return nil, &FieldError{"spec.timeZone", `"Local" is not allowed: name an IANA time zone such as "Europe/Berlin"`}
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, &FieldError{"spec.timeZone", fmt.Sprintf("unknown time zone %q", name)}
	}
	return loc, nil
}

// neverBefore is a reference time for the "never matches" check: a cron
// expression has no year field, so one that matches nothing in the five
// years robfig/cron searches (a leap year among them) matches nothing ever.
var neverBefore = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// parseCron parses a standard 5-field cron expression or a descriptor and
// binds it to loc.
func parseCron(field, expr string, loc *time.Location) (cron.Schedule, error) {
	fail := func(format string, a ...any) error {
		return &FieldError{field, fmt.Sprintf(format, a...)}
	}
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "":
		return nil, fail("required")
	case strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ="):
		return nil, fail("time zone prefixes are not supported, set spec.timeZone instead: %q", expr)
	case strings.HasPrefix(expr, "@every"):
		return nil, fail("@every is not a calendar schedule, use a 5-field cron expression or @hourly, @daily, @weekly, @monthly, @yearly: %q", expr)
	case !strings.HasPrefix(expr, "@"):
		if n := len(strings.Fields(expr)); n != 5 {
			return nil, fail("expected exactly 5 fields, found %d: %q", n, expr)
		}
	}
	s, err := cron.ParseStandard(expr)
	if err != nil {
		return nil, fail("invalid cron expression %q: %v", expr, err)
	}
	spec, ok := s.(*cron.SpecSchedule)
	if !ok { // only @every yields another type, and it is rejected above
		return nil, fail("unsupported cron expression %q", expr)
	}
	spec.Location = loc
	if spec.Next(neverBefore).IsZero() {
		return nil, fail("%q never matches", expr)
	}
	return spec, nil
}
