package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Lease is a named lease in the database: of the hubs that share the
// database, at most one holds it at a time, until it expires. The holder
// renews it by acquiring it again before then; a hub that dies stops
// renewing, and another takes it over once it has expired.
//
// Expiry is judged by the clock of the hub that asks, so the hubs' clocks
// must agree to well within the lease's TTL.
type Lease struct {
	s      *Store
	name   string
	holder string
	ttl    time.Duration
}

// Lease names a lease that holder (unique per hub process) acquires for
// ttl at a time.
func (s *Store) Lease(name, holder string, ttl time.Duration) *Lease {
	return &Lease{s: s, name: name, holder: holder, ttl: ttl}
}

// TryAcquire takes the lease when it is free or expired, or renews it when
// this holder has it, and says whether this holder holds it now (until
// now+ttl). One statement does it, so two hubs asking at once cannot both
// win: the database decides which insert or update lands.
func (l *Lease) TryAcquire(ctx context.Context) (bool, error) {
	now := ms(l.s.now())
	res, err := l.s.db.ExecContext(ctx, `INSERT INTO leases(name, holder, expires) VALUES (?, ?, ?)
		ON CONFLICT(name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
		WHERE leases.holder = excluded.holder OR leases.expires <= ?`,
		l.name, l.holder, now+l.ttl.Milliseconds(), now)
	if err != nil {
		return false, fmt.Errorf("lease %s for %s: %w", l.name, l.holder, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("lease %s for %s: %w", l.name, l.holder, err)
	}
	return n == 1, nil
}

// Release gives the lease up when this holder has it, so another hub need
// not wait for it to expire.
func (l *Lease) Release(ctx context.Context) error {
	if _, err := l.s.db.ExecContext(ctx, `UPDATE leases SET expires = 0 WHERE name = ? AND holder = ?`, l.name, l.holder); err != nil {
		return fmt.Errorf("lease %s for %s: release: %w", l.name, l.holder, err)
	}
	return nil
}

// Holder returns who holds the lease name and until when; "" when no one
// does (never taken, released or expired).
func (s *Store) Holder(ctx context.Context, name string) (string, time.Time, error) {
	var holder string
	var expires int64
	err := s.db.QueryRowContext(ctx, `SELECT holder, expires FROM leases WHERE name = ?`, name).Scan(&holder, &expires)
	if err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", time.Time{}, nil
		}
		return "", time.Time{}, fmt.Errorf("lease %s: %w", name, err)
	}
	if expires <= ms(s.now()) {
		return "", time.Time{}, nil
	}
	return holder, fromMS(expires), nil
}
