package store

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a clock a test moves by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// Two hubs on one database: exactly one holds the lease, asking at once
// or in turn; the holder renews it; when it expires (the holder died) the
// other takes it over, and the old holder no longer has it; a release
// hands it over at once.
func TestLease(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		clock := &fakeClock{t: time.Now()}
		a, b := open(t, dsn), open(t, dsn)
		a.now, b.now = clock.now, clock.now
		const ttl = 30 * time.Second
		la, lb := a.Lease("leader", "hub-a", ttl), b.Lease("leader", "hub-b", ttl)

		got := make([]bool, 2)
		var wg sync.WaitGroup
		for i, l := range []*Lease{la, lb} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				held, err := l.TryAcquire(ctx)
				if err != nil {
					t.Error(err)
				}
				got[i] = held
			}()
		}
		wg.Wait()
		if got[0] == got[1] {
			t.Fatalf("hub-a holds %v, hub-b holds %v: want exactly one", got[0], got[1])
		}
		holder, other := la, lb
		if got[1] {
			holder, other = lb, la
		}
		held := func(l *Lease, want bool) {
			t.Helper()
			ok, err := l.TryAcquire(ctx)
			if err != nil || ok != want {
				t.Fatalf("%s TryAcquire = %v, %v; want %v", l.holder, ok, err, want)
			}
		}
		clock.add(ttl / 2)
		held(holder, true) // renewed: now valid until ttl/2 + ttl
		held(other, false)
		clock.add(ttl - time.Second)
		held(other, false) // the renewal still runs
		if h, _, err := a.Holder(ctx, "leader"); err != nil || h != holder.holder {
			t.Fatalf("Holder = %q, %v; want %s", h, err, holder.holder)
		}
		clock.add(time.Second) // the holder stopped renewing: expired
		if h, _, _ := a.Holder(ctx, "leader"); h != "" {
			t.Fatalf("expired lease held by %q", h)
		}
		held(other, true)
		held(holder, false)
		if err := other.Release(ctx); err != nil {
			t.Fatal(err)
		}
		held(holder, true) // released: no wait for expiry
		held(other, false)
	})
}
