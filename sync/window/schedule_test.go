package window

import (
	"testing"
	"time"
)

func TestNextScheduled(t *testing.T) {
	tests := []struct {
		policy      Policy
		after, want string // in the policy's zone; want "" for zero
	}{
		{Policy{}, "2025-01-15 10:00", ""},
		{Policy{Schedule: "0 2 * * *"}, "2025-01-15 10:00", "2025-01-16 02:00"},
		{Policy{Schedule: "0 2 * * *"}, "2025-01-16 01:59", "2025-01-16 02:00"},
		{Policy{Schedule: "0 2 * * *"}, "2025-01-16 02:00", "2025-01-17 02:00"},
		{Policy{Schedule: "@hourly"}, "2025-01-15 10:17", "2025-01-15 11:00"},
		{Policy{Schedule: "*/15 9-17 * * 1-5"}, "2025-01-17 17:50", "2025-01-20 09:00"},
		{Policy{Schedule: "0 2 * * *", TimeZone: "Europe/Berlin"}, "2025-01-15 10:00", "2025-01-16 02:00"},
		{Policy{Schedule: "0 2 * * *", TimeZone: "Europe/Berlin"}, "2025-03-29 10:00", "2025-03-31 02:00"}, // 02:00 does not exist on 03-30
	}
	for _, tt := range tests {
		c, err := Compile(tt.policy)
		if err != nil {
			t.Fatal(err)
		}
		zone := tt.policy.TimeZone
		if zone == "" {
			zone = "UTC"
		}
		var want time.Time
		if tt.want != "" {
			want = at(t, zone, tt.want)
		}
		if got := c.NextScheduled(at(t, zone, tt.after)); !got.Equal(want) {
			t.Errorf("%+v: NextScheduled(%s) = %s, want %s", tt.policy, tt.after, got, want)
		}
		if got := c.HasSchedule(); got != (tt.policy.Schedule != "") {
			t.Errorf("%+v: HasSchedule = %v", tt.policy, got)
		}
	}
}

func TestDue(t *testing.T) {
	tests := []struct {
		name      string
		schedule  string
		last, now string // "" for zero last
		want      bool
	}{
		{"no schedule", "", "2025-01-15 02:00", "2025-01-20 02:00", false},
		{"never ran", "0 2 * * *", "", "2025-01-15 10:00", true},
		{"before the next time", "0 2 * * *", "2025-01-15 02:00", "2025-01-16 01:59", false},
		{"at the next time", "0 2 * * *", "2025-01-15 02:00", "2025-01-16 02:00", true},
		{"after the next time", "0 2 * * *", "2025-01-15 02:00", "2025-01-16 02:01", true},
		{"several times missed", "0 2 * * *", "2025-01-10 02:00", "2025-01-16 03:00", true},
		{"ran just now", "0 2 * * *", "2025-01-16 02:00", "2025-01-16 02:00", false},
		{"ran late", "0 2 * * *", "2025-01-16 02:07", "2025-01-16 23:00", false},
		{"@weekly due on Sunday", "@weekly", "2025-01-12 00:00", "2025-01-19 00:00", true},
		{"@weekly not yet", "@weekly", "2025-01-12 00:00", "2025-01-18 23:59", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(Policy{Schedule: tt.schedule})
			if err != nil {
				t.Fatal(err)
			}
			var last time.Time
			if tt.last != "" {
				last = at(t, "UTC", tt.last)
			}
			if got := c.Due(last, at(t, "UTC", tt.now)); got != tt.want {
				t.Errorf("Due(%q, %q) = %v, want %v", tt.last, tt.now, got, tt.want)
			}
		})
	}
}
