package agent

import "time"

// Backoff bounds the delay between connection attempts: attempt n waits a
// random duration in [0, min(Max, Initial·2ⁿ)] ("full jitter"), so a fleet
// of agents that lost the hub at the same moment does not come back at the
// same moment.
type Backoff struct {
	// Initial is the ceiling of the first delay. Defaults to 1s.
	Initial time.Duration
	// Max caps every delay. Defaults to 30s.
	Max time.Duration
}

// withDefaults fills unset fields.
func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = time.Second
	}
	if b.Max <= 0 {
		b.Max = 30 * time.Second
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	return b
}

// Delay returns how long to wait before attempt number attempt (0 for the
// first retry). int63n returns a uniform random number in [0, n), like
// math/rand/v2.Int64N; tests inject their own.
func (b Backoff) Delay(attempt int, int63n func(n int64) int64) time.Duration {
	b = b.withDefaults()
	ceiling := b.Initial
	for i := 0; i < attempt && ceiling < b.Max; i++ {
		ceiling *= 2
	}
	if ceiling > b.Max || ceiling <= 0 {
		ceiling = b.Max
	}
	return time.Duration(int63n(int64(ceiling) + 1))
}
