package sync

import (
	"math/rand/v2"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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

// backoff is the wait before the next attempt of a failing GitSync:
// retryInterval, doubled for as long as the GitSync has been failing
// (Ready=False since its last transition), capped at the interval. It is
// computed from the status alone, so it survives a restart and needs no
// failure counter in memory: attempts at 0, r, 3r, 7r… wait r, 2r, 4r…
func backoff(gs *v1alpha1.GitSync, now time.Time) time.Duration {
	d := retryInterval(gs)
	limit := interval(gs)
	ready := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
	if ready == nil || ready.Status != metav1.ConditionFalse {
		return min(d, limit)
	}
	failing := now.Sub(ready.LastTransitionTime.Time)
	for d < limit && d <= failing {
		d *= 2
	}
	return min(d, limit)
}
