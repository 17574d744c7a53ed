package agent

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBackoffCappedAndJittered(t *testing.T) {
	b := Backoff{Initial: 100 * time.Millisecond, Max: time.Second}
	top := func(n int64) int64 { return n - 1 } // the largest value rand may give
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for attempt, w := range want {
		if got := b.Delay(attempt, top); got != w*time.Millisecond {
			t.Errorf("attempt %d: ceiling %s, want %s", attempt, got, w*time.Millisecond)
		}
	}
	if got := b.Delay(1000, top); got != time.Second {
		t.Errorf("attempt 1000: %s, want the cap", got)
	}
	if got := b.Delay(5, func(int64) int64 { return 0 }); got != 0 {
		t.Errorf("full jitter may wait 0, got %s", got)
	}

	// With a real source the delays spread over [0, ceiling].
	r := rand.New(rand.NewPCG(1, 2))
	seen := map[time.Duration]bool{}
	for range 1000 {
		d := b.Delay(10, r.Int64N)
		if d < 0 || d > time.Second {
			t.Fatalf("delay %s outside [0, 1s]", d)
		}
		seen[d/(100*time.Millisecond)] = true
	}
	if len(seen) < 10 {
		t.Errorf("delays are not spread out: %v", seen)
	}
}

func TestBackoffDefaults(t *testing.T) {
	top := func(n int64) int64 { return n - 1 }
	var b Backoff
	if got := b.Delay(0, top); got != time.Second {
		t.Errorf("default initial %s", got)
	}
	if got := b.Delay(100, top); got != 30*time.Second {
		t.Errorf("default max %s", got)
	}
}
