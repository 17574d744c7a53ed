package window

import (
	"errors"
	"testing"
	"time"
)

func TestCompileRejects(t *testing.T) {
	deny := func(schedule string) Policy {
		return Policy{Windows: []Window{{Kind: KindDeny, Schedule: "0 22 * * *", Duration: time.Hour}, {Kind: KindDeny, Schedule: schedule, Duration: time.Hour}}}
	}
	tests := []struct {
		name   string
		policy Policy
		want   string
	}{
		{"four fields", deny("* * * *"), `spec.windows[1].schedule: expected exactly 5 fields, found 4: "* * * *"`},
		{"six fields (seconds)", deny("0 0 22 * * *"), `spec.windows[1].schedule: expected exactly 5 fields, found 6: "0 0 22 * * *"`},
		{"empty schedule", deny(""), `spec.windows[1].schedule: required`},
		{"minute out of range", deny("61 * * * *"), `spec.windows[1].schedule: invalid cron expression "61 * * * *": end of range (61) above maximum (59): 61`},
		{"not a number", deny("a * * * *"), `spec.windows[1].schedule: invalid cron expression "a * * * *": failed to parse int from a: strconv.Atoi: parsing "a": invalid syntax`},
		{"zero step", deny("*/0 * * * *"), `spec.windows[1].schedule: invalid cron expression "*/0 * * * *": step of range should be a positive number: */0`},
		{"unknown descriptor", deny("@fortnightly"), `spec.windows[1].schedule: invalid cron expression "@fortnightly": unrecognized descriptor: @fortnightly`},
		{"@every", deny("@every 1h"), `spec.windows[1].schedule: @every is not a calendar schedule, use a 5-field cron expression or @hourly, @daily, @weekly, @monthly, @yearly: "@every 1h"`},
		{"time zone prefix", deny("CRON_TZ=Europe/Berlin 0 22 * * *"), `spec.windows[1].schedule: time zone prefixes are not supported, set spec.timeZone instead: "CRON_TZ=Europe/Berlin 0 22 * * *"`},
		{"never matches", deny("0 0 30 2 *"), `spec.windows[1].schedule: "0 0 30 2 *" never matches`},
		{"zero duration", Policy{Windows: []Window{{Kind: KindAllow, Schedule: "@daily"}}}, `spec.windows[0].duration: must be positive, got 0s`},
		{"negative duration", Policy{Windows: []Window{{Kind: KindAllow, Schedule: "@daily", Duration: -time.Hour}}}, `spec.windows[0].duration: must be positive, got -1h0m0s`},
		{"unknown kind", Policy{Windows: []Window{{Kind: "permit", Schedule: "@daily", Duration: time.Hour}}}, `spec.windows[0].kind: must be "allow" or "deny", got "permit"`},
		{"empty kind", Policy{Windows: []Window{{Schedule: "@daily", Duration: time.Hour}}}, `spec.windows[0].kind: must be "allow" or "deny", got ""`},
		{"unknown time zone", Policy{TimeZone: "Mars/Olympus_Mons"}, `spec.timeZone: unknown time zone "Mars/Olympus_Mons"`},
		{"local time zone", Policy{TimeZone: "Local"}, `spec.timeZone: "Local" is not allowed: name an IANA time zone such as "Europe/Berlin"`},
		{"bad spec.schedule", Policy{Schedule: "0 25 * * *"}, `spec.schedule: invalid cron expression "0 25 * * *": end of range (25) above maximum (23): 25`},
		{"every error at once", Policy{
			TimeZone: "Nowhere",
			Schedule: "* *",
			Windows:  []Window{{Kind: "maybe", Schedule: "0 9 * * 1-5", Duration: 0}},
		}, "spec.timeZone: unknown time zone \"Nowhere\"\n" +
			"spec.schedule: expected exactly 5 fields, found 2: \"* *\"\n" +
			"spec.windows[0].kind: must be \"allow\" or \"deny\", got \"maybe\"\n" +
			"spec.windows[0].duration: must be positive, got 0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Compile(tt.policy)
			if err == nil {
				t.Fatalf("Compile = %v, want error %q", c, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Errorf("error %v is no *FieldError", err)
			}
		})
	}
}

func TestCompileAccepts(t *testing.T) {
	for _, p := range []Policy{
		{},
		{TimeZone: "Europe/Berlin", Schedule: "0 2 * * *"},
		{Schedule: " @hourly "},
		{Windows: []Window{
			{Kind: KindAllow, Schedule: "0 9 * * MON-FRI", Duration: 8 * time.Hour},
			{Kind: KindDeny, Schedule: "@yearly", Duration: 24 * time.Hour, ManualSync: true},
			{Kind: KindDeny, Schedule: "0 0 29 2 *", Duration: time.Hour}, // leap days only
			{Kind: KindAllow, Schedule: "*/15 * * jan,dec *", Duration: time.Minute},
		}},
	} {
		if _, err := Compile(p); err != nil {
			t.Errorf("Compile(%+v): %v", p, err)
		}
	}
}

// FuzzCompile checks that no input makes the cron parser or Decide panic.
func FuzzCompile(f *testing.F) {
	for _, s := range []string{"* * * * *", "0 22 * * *", "@daily", "*/0 * * * *", "1-0 * * * *", "CRON_TZ=", "0 0 30 2 *", "@every 1s", "5/ * * * *"} {
		f.Add(s, int64(time.Hour))
	}
	now := time.Date(2025, 1, 15, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, schedule string, d int64) {
		c, err := Compile(Policy{Schedule: schedule, Windows: []Window{{Kind: KindDeny, Schedule: schedule, Duration: time.Duration(d)}}})
		if err != nil {
			return
		}
		c.Decide(now, false)
		c.Due(now.Add(-time.Hour), now)
	})
}
