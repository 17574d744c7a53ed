package sync

import (
	"math/rand/v2"
	"time"

	"tether.dev/tether/api/v1alpha1"
)

// Defaults for the spec's optional durations.
const (
	DefaultInterval      = 5 * time.Minute
	DefaultRetryInterval = 10 * time.Second
	DefaultTimeout       = 5 * time.Minute
)

// jitterFraction spreads polls of GitSyncs that share an interval so that
// they don't hit the Git host in lock step.
const jitterFraction = 0.1

func interval(gs *v1alpha1.GitSync) time.Duration {
	if d := gs.Spec.Interval.Duration; d > 0 {
		return d
	}
	return DefaultInterval
}

func retryInterval(gs *v1alpha1.GitSync) time.Duration {
	if gs.Spec.RetryInterval != nil && gs.Spec.RetryInterval.Duration > 0 {
		return gs.Spec.RetryInterval.Duration
	}
	return min(DefaultRetryInterval, interval(gs))
}

func timeout(gs *v1alpha1.GitSync) time.Duration {
	if gs.Spec.Timeout != nil && gs.Spec.Timeout.Duration > 0 {
		return gs.Spec.Timeout.Duration
	}
	return DefaultTimeout
}

// withJitter returns d plus up to 10% of d, drawn by rnd (in [0,1)).
func withJitter(d time.Duration, rnd float64) time.Duration {
	return d + time.Duration(float64(d)*jitterFraction*rnd)
}

// nextPoll is when to look at the source again after a healthy reconcile.
func nextPoll(gs *v1alpha1.GitSync) time.Duration {
	return withJitter(interval(gs), rand.Float64())
}

// backoff is the wait before retry number failures (1 for the first
// failure): retryInterval doubled per failure, capped at the interval.
func backoff(gs *v1alpha1.GitSync, failures int) time.Duration {
	d := retryInterval(gs)
	limit := interval(gs)
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}
