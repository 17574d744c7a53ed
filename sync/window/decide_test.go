package window

import (
	"testing"
	"time"
)

func at(t *testing.T, loc, value string) time.Time {
	t.Helper()
	l, err := time.LoadLocation(loc)
	if err != nil {
		t.Fatal(err)
	}
	v, err := time.ParseInLocation("2006-01-02 15:04", value, l)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func allow(schedule string, d time.Duration) Window {
	return Window{Kind: KindAllow, Schedule: schedule, Duration: d}
}

func deny(schedule string, d time.Duration) Window {
	return Window{Kind: KindDeny, Schedule: schedule, Duration: d}
}

func manual(w Window) Window {
	w.ManualSync = true
	return w
}

func TestDecide(t *testing.T) {
	const h = time.Hour
	workHours := allow("0 9 * * 1-5", 8*h) // 2025-01-15 is a Wednesday
	nightly := deny("0 22 * * *", 8*h)
	tests := []struct {
		name     string
		policy   Policy
		now      string // in the policy's zone
		manual   bool
		allowed  bool
		blocking string
		nextOpen string // in the policy's zone; "" for zero
	}{
		{name: "no windows", now: "2025-01-15 03:00", allowed: true},

		{name: "allow window open", policy: Policy{Windows: []Window{workHours}}, now: "2025-01-15 10:00", allowed: true},
		{name: "allow window opens at its match", policy: Policy{Windows: []Window{workHours}}, now: "2025-01-15 09:00", allowed: true},
		{name: "allow window closed in the evening", policy: Policy{Windows: []Window{workHours}}, now: "2025-01-15 18:00",
			blocking: "outside every allow window", nextOpen: "2025-01-16 09:00"},
		{name: "allow window closed at its end", policy: Policy{Windows: []Window{workHours}}, now: "2025-01-15 17:00",
			blocking: "outside every allow window", nextOpen: "2025-01-16 09:00"},
		{name: "allow window closed over the weekend", policy: Policy{Windows: []Window{workHours}}, now: "2025-01-17 20:00",
			blocking: "outside every allow window", nextOpen: "2025-01-20 09:00"},

		{name: "deny window inactive", policy: Policy{Windows: []Window{nightly}}, now: "2025-01-15 12:00", allowed: true},
		{name: "deny window ended", policy: Policy{Windows: []Window{nightly}}, now: "2025-01-16 06:00", allowed: true},
		{name: "deny window active from its match", policy: Policy{Windows: []Window{nightly}}, now: "2025-01-15 22:00",
			blocking: "deny window 0 (0 22 * * *, 8h) until 2025-01-16 06:00 UTC", nextOpen: "2025-01-16 06:00"},
		{name: "deny window active after midnight", policy: Policy{Windows: []Window{nightly}}, now: "2025-01-16 05:59",
			blocking: "deny window 0 (0 22 * * *, 8h) until 06:00 UTC", nextOpen: "2025-01-16 06:00"},

		{name: "deny wins over allow", policy: Policy{Windows: []Window{workHours, deny("0 12 * * *", h)}}, now: "2025-01-15 12:30",
			blocking: "deny window 1 (0 12 * * *, 1h) until 13:00 UTC", nextOpen: "2025-01-15 13:00"},
		{name: "allow window open beside an inactive deny", policy: Policy{Windows: []Window{workHours, deny("0 12 * * *", h)}}, now: "2025-01-15 13:00", allowed: true},
		{name: "deny covering the start of the allow window", policy: Policy{Windows: []Window{workHours, deny("30 8 * * *", 90*time.Minute)}}, now: "2025-01-15 07:00",
			blocking: "outside every allow window", nextOpen: "2025-01-15 10:00"},
		{name: "deny outlasting the allow window", policy: Policy{Windows: []Window{workHours, deny("0 16 * * 3", 2*h)}}, now: "2025-01-15 16:30",
			blocking: "deny window 1 (0 16 * * 3, 2h) until 18:00 UTC", nextOpen: "2025-01-16 09:00"},

		{name: "overlapping deny windows hand over", policy: Policy{Windows: []Window{nightly, deny("0 5 * * *", 3*h)}}, now: "2025-01-15 23:00",
			blocking: "deny window 0 (0 22 * * *, 8h) until 2025-01-16 06:00 UTC", nextOpen: "2025-01-16 08:00"},
		{name: "overlapping deny windows both named", policy: Policy{Windows: []Window{nightly, deny("0 5 * * *", 3*h)}}, now: "2025-01-16 05:30",
			blocking: "deny window 0 (0 22 * * *, 8h) until 06:00 UTC, deny window 1 (0 5 * * *, 3h) until 08:00 UTC", nextOpen: "2025-01-16 08:00"},
		{name: "overlapping allow windows", policy: Policy{Windows: []Window{workHours, allow("0 16 * * *", 4*h)}}, now: "2025-01-15 19:00", allowed: true},
		{name: "after overlapping allow windows", policy: Policy{Windows: []Window{workHours, allow("0 16 * * *", 4*h)}}, now: "2025-01-15 20:00",
			blocking: "outside every allow window", nextOpen: "2025-01-16 09:00"},
		{name: "a window longer than its period", policy: Policy{Windows: []Window{deny("0 * * * *", 150*time.Minute)}}, now: "2025-01-15 10:30",
			blocking: "deny window 0 (0 * * * *, 2h30m) until 12:30 UTC"},

		{name: "manualSync deny lets a manual sync through", policy: Policy{Windows: []Window{manual(nightly)}}, now: "2025-01-15 23:00", manual: true, allowed: true},
		{name: "manualSync deny blocks an automatic sync", policy: Policy{Windows: []Window{manual(nightly)}}, now: "2025-01-15 23:00",
			blocking: "deny window 0 (0 22 * * *, 8h) until 2025-01-16 06:00 UTC", nextOpen: "2025-01-16 06:00"},
		{name: "deny without manualSync blocks a manual sync", policy: Policy{Windows: []Window{nightly}}, now: "2025-01-15 23:00", manual: true,
			blocking: "deny window 0 (0 22 * * *, 8h) until 2025-01-16 06:00 UTC", nextOpen: "2025-01-16 06:00"},
		{name: "manual sync blocked by the deny without manualSync only", policy: Policy{Windows: []Window{manual(nightly), deny("0 23 * * *", h)}}, now: "2025-01-15 23:30", manual: true,
			blocking: "deny window 1 (0 23 * * *, 1h) until 2025-01-16 00:00 UTC", nextOpen: "2025-01-16 00:00"},
		{name: "manual deny passes a manual sync outside the allow windows", policy: Policy{Windows: []Window{workHours, manual(nightly)}}, now: "2025-01-15 23:00", manual: true, allowed: true},
		{name: "manualSync allow lets a manual sync through", policy: Policy{Windows: []Window{workHours, manual(allow("0 0 1 1 *", h))}}, now: "2025-01-15 20:00", manual: true, allowed: true},
		{name: "allow without manualSync blocks a manual sync", policy: Policy{Windows: []Window{workHours}}, now: "2025-01-15 20:00", manual: true,
			blocking: "outside every allow window", nextOpen: "2025-01-16 09:00"},

		{name: "@daily allow window open", policy: Policy{Windows: []Window{allow("@daily", h)}}, now: "2025-01-15 00:59", allowed: true},
		{name: "@daily allow window closed", policy: Policy{Windows: []Window{allow("@daily", h)}}, now: "2025-01-15 01:00",
			blocking: "outside every allow window", nextOpen: "2025-01-16 00:00"},
		{name: "yearly allow window within the horizon", policy: Policy{Windows: []Window{allow("@yearly", h)}}, now: "2025-01-15 01:00",
			blocking: "outside every allow window", nextOpen: "2026-01-01 00:00"},
		{name: "leap-day allow window beyond the horizon", policy: Policy{Windows: []Window{allow("0 0 29 2 *", h)}}, now: "2025-01-15 01:00",
			blocking: "outside every allow window"},
		{name: "deny always active", policy: Policy{Windows: []Window{deny("@hourly", 90*time.Minute)}}, now: "2025-01-15 01:10",
			blocking: "deny window 0 (@hourly, 1h30m) until 02:30 UTC"},

		{name: "Berlin night deny before midnight", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{nightly}}, now: "2025-01-15 23:30",
			blocking: "deny window 0 (0 22 * * *, 8h) until 2025-01-16 06:00 CET", nextOpen: "2025-01-16 06:00"},
		{name: "Berlin night deny after midnight", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{nightly}}, now: "2025-01-16 05:30",
			blocking: "deny window 0 (0 22 * * *, 8h) until 06:00 CET", nextOpen: "2025-01-16 06:00"},
		{name: "Berlin night deny over", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{nightly}}, now: "2025-01-16 06:00", allowed: true},
		{name: "Berlin summer time", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{nightly}}, now: "2025-07-01 21:59", allowed: true},
		{name: "Berlin summer night", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{nightly}}, now: "2025-07-01 22:00",
			blocking: "deny window 0 (0 22 * * *, 8h) until 2025-07-02 06:00 CEST", nextOpen: "2025-07-02 06:00"},
		// Durations are elapsed time: across the night clocks spring
		// forward, 8h from 22:00 CET ends at 07:00 CEST; across the night
		// they fall back, at 05:00 CET.
		{name: "Berlin spring-forward night", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{nightly}}, now: "2025-03-30 06:30",
			blocking: "deny window 0 (0 22 * * *, 8h) until 07:00 CEST", nextOpen: "2025-03-30 07:00"},
		{name: "Berlin fall-back night", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{nightly}}, now: "2025-10-26 05:00", allowed: true},
		// A match in the hour that is skipped does not happen that day.
		{name: "Berlin match in the skipped hour", policy: Policy{TimeZone: "Europe/Berlin", Windows: []Window{allow("30 2 * * *", h)}}, now: "2025-03-30 00:00",
			blocking: "outside every allow window", nextOpen: "2025-03-31 02:30"},
		{name: "New York", policy: Policy{TimeZone: "America/New_York", Windows: []Window{workHours}}, now: "2025-01-15 08:00",
			blocking: "outside every allow window", nextOpen: "2025-01-15 09:00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(tt.policy)
			if err != nil {
				t.Fatal(err)
			}
			zone := tt.policy.TimeZone
			if zone == "" {
				zone = "UTC"
			}
			got := c.Decide(at(t, zone, tt.now), tt.manual)
			want := Decision{Allowed: tt.allowed, Blocking: tt.blocking}
			if tt.nextOpen != "" {
				want.NextOpen = at(t, zone, tt.nextOpen)
			}
			if got.Allowed != want.Allowed || got.Blocking != want.Blocking || !got.NextOpen.Equal(want.NextOpen) {
				t.Errorf("Decide(%s, manual=%v):\n got %+v\nwant %+v", tt.now, tt.manual, got, want)
			}
		})
	}
}

// TestDecideRepeatedHour shows a match in the hour that is repeated when
// clocks fall back: it happens in both passes.
func TestDecideRepeatedHour(t *testing.T) {
	c, err := Compile(Policy{TimeZone: "Europe/Berlin", Windows: []Window{deny("30 2 * * *", 10*time.Minute)}})
	if err != nil {
		t.Fatal(err)
	}
	for _, utc := range []string{"2025-10-26 00:35", "2025-10-26 01:35"} { // 02:35 CEST, 02:35 CET
		now := at(t, "UTC", utc)
		if d := c.Decide(now, false); d.Allowed || !d.NextOpen.Equal(now.Add(5*time.Minute)) {
			t.Errorf("Decide(%s UTC) = %+v, want blocked for 5 more minutes", utc, d)
		}
	}
}
