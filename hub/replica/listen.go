package replica

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
)

// Listen LISTENs on Channel over a connection of its own to dsn and
// calls handle with each payload, in order, until ctx ends. It
// reconnects with backoff (up to maxBackoff, with jitter) whenever the
// connection drops, as it does when PostgreSQL restarts; onListen is
// called each time the LISTEN is in place, the first time and after every
// reconnection, before the first payload of that connection. NOTIFYs sent
// while no LISTEN was in place are lost: onListen is where the caller
// catches up on what they carried (a "sync now" waits in the database
// until delivered).
func Listen(ctx context.Context, dsn string, log *slog.Logger, onListen func(), handle func(payload string)) {
	const first, maxBackoff = 100 * time.Millisecond, 5 * time.Second
	backoff := first
	for ctx.Err() == nil {
		err := listenOnce(ctx, dsn, func() { backoff = first; onListen() }, handle)
		if ctx.Err() != nil {
			return
		}
		log.Warn("hub replicas: LISTEN connection lost; reconnecting", "error", err, "in", backoff)
		t := time.NewTimer(backoff/2 + rand.N(backoff/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

func listenOnce(ctx context.Context, dsn string, onListen func(), handle func(string)) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	conn, err := pgx.Connect(cctx, dsn)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	onListen()
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		handle(n.Payload)
	}
}
