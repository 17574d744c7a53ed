package window

import (
	"math/rand/v2"
	"testing"
	"time"
)

// windowPool is what random policies are drawn from: short and long,
// overlapping, daily and weekly windows, some longer than their period.
var windowPool = []Window{
	allow("0 9 * * 1-5", 8*time.Hour),
	allow("30 */4 * * *", 45*time.Minute),
	allow("@daily", 2*time.Hour),
	manual(allow("15 13 * * *", 20*time.Minute)),
	allow("0 0 * * 6", 48*time.Hour),
	deny("0 22 * * *", 8*time.Hour),
	deny("0 12 * * *", time.Hour),
	manual(deny("*/20 * * * *", 7*time.Minute)),
	deny("0 */6 * * *", 7*time.Hour), // longer than its period: always active
	manual(deny("0 3 * * 0", 26*time.Hour)),
	deny("45 8 * * *", 30*time.Second),
}

var zonePool = []string{"", "Europe/Berlin", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"}

// checkNextOpen checks Decide's NextOpen against the rules evaluated minute
// by minute for a day: NextOpen is allowed, nothing between now and it is,
// and a zero NextOpen means nothing is allowed for the day.
func checkNextOpen(t *testing.T, c *Compiled, now time.Time, manual bool) {
	t.Helper()
	d := c.Decide(now, manual)
	if d.Allowed {
		if !d.NextOpen.IsZero() || d.Blocking != "" {
			t.Fatalf("Decide(%s) = %+v: allowed with NextOpen or Blocking", now, d)
		}
		return
	}
	if d.Blocking == "" {
		t.Fatalf("Decide(%s) = %+v: blocked without saying why", now, d)
	}
	if !d.NextOpen.IsZero() {
		if !d.NextOpen.After(now) {
			t.Fatalf("Decide(%s) = %+v: NextOpen not after now", now, d)
		}
		if !c.Decide(d.NextOpen, manual).Allowed {
			t.Fatalf("Decide(%s) = %+v: not allowed at NextOpen", now, d)
		}
	}
	end := now.Add(24 * time.Hour)
	if !d.NextOpen.IsZero() && d.NextOpen.Before(end) {
		end = d.NextOpen
	}
	for s := now.Add(time.Minute); s.Before(end); s = s.Add(time.Minute) {
		if c.allowed(c.stateAt(s), manual) {
			t.Fatalf("Decide(%s) = %+v, but allowed at %s", now, d, s)
		}
	}
	// A later blocked instant agrees on when applying opens.
	if mid := now.Add(end.Sub(now) / 2); end.Sub(now) > time.Minute {
		if d2 := c.Decide(mid, manual); !d2.NextOpen.Equal(d.NextOpen) {
			t.Fatalf("Decide(%s).NextOpen = %s, Decide(%s).NextOpen = %s", now, d.NextOpen, mid, d2.NextOpen)
		}
	}
}

func randomPolicy(r *rand.Rand) Policy {
	p := Policy{TimeZone: zonePool[r.IntN(len(zonePool))]}
	for _, i := range r.Perm(len(windowPool))[:1+r.IntN(4)] {
		p.Windows = append(p.Windows, windowPool[i])
	}
	return p
}

var epoch = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func TestNextOpenProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 2025))
	for range 300 {
		p := randomPolicy(r)
		c, err := Compile(p)
		if err != nil {
			t.Fatal(err)
		}
		// Any second of 2025, DST changes included.
		now := epoch.Add(time.Duration(r.Int64N(365*24*3600)) * time.Second)
		checkNextOpen(t, c, now, r.IntN(3) == 0)
	}
}

func FuzzNextOpen(f *testing.F) {
	f.Add(uint64(0), int64(0), false)
	f.Add(uint64(1)<<32, int64(7_500_000), true)   // late March
	f.Add(uint64(99)<<8, int64(25_830_000), false) // late October
	f.Fuzz(func(t *testing.T, seed uint64, offset int64, manual bool) {
		c, err := Compile(randomPolicy(rand.New(rand.NewPCG(seed, 0))))
		if err != nil {
			t.Fatal(err)
		}
		now := epoch.Add(time.Duration(offset%(2*365*24*3600)) * time.Second)
		checkNextOpen(t, c, now, manual)
	})
}

// BenchmarkDecideAlwaysDenied is the worst case: a deny window that never
// ends makes the search walk the whole horizon.
func BenchmarkDecideAlwaysDenied(b *testing.B) {
	c, err := Compile(Policy{Windows: []Window{deny("* * * * *", time.Minute)}})
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if d := c.Decide(epoch, false); d.Allowed || !d.NextOpen.IsZero() {
			b.Fatal(d)
		}
	}
}

func BenchmarkDecideNightly(b *testing.B) {
	c, err := Compile(Policy{TimeZone: "Europe/Berlin", Windows: []Window{allow("0 9 * * 1-5", 8*time.Hour), deny("0 22 * * *", 8*time.Hour)}})
	if err != nil {
		b.Fatal(err)
	}
	now := epoch.Add(23 * time.Hour)
	for b.Loop() {
		c.Decide(now, false)
	}
}
