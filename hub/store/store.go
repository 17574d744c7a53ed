// Package store is the hub's memory: agents, their tokens (hashes only), the
// latest state of every GitSync they report, the history of revisions each
// GitSync applied, the newest Warning events of each GitSync, the commit
// statuses already posted and those waiting to be (the outbox, outbox.go),
// the hub page's sessions (hashes of their ids), and the lease that elects
// one hub for leader-only work. It runs on embedded SQLite (a
// pure-Go driver, so the hub binary stays static) or on PostgreSQL when
// several hubs share one database; the SQL is written once for both, and
// the differences live in dialect.go. The schema is migrated by goose.
//
// The store never calls out: no network, no Git host, no agent.
package store

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Store is an open hub database. It is safe for concurrent use.
type Store struct {
	db    db
	stmts prepared
	// ingest feeds the writers, one channel each.
	ingest  []chan *ingestReq
	writers sync.WaitGroup
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	now     func() time.Time
	// testBetweenReads, when set, runs inside a snapshot read between
	// its two halves.
	testBetweenReads func()
}

// Open opens the hub database dsn and brings its schema up to date: a
// postgres:// (or postgresql://) URL, or else the path of a SQLite file,
// made when missing and switched to WAL mode.
func Open(ctx context.Context, dsn string) (*Store, error) {
	d, err := openDB(ctx, dsn)
	if err != nil {
		return nil, errDB(dsn, err)
	}
	if err := migrate(ctx, d); err != nil {
		d.Close()
		return nil, errDB(dsn, err)
	}
	stmts, err := prepare(ctx, d, ingestQueries(d.d))
	if err != nil {
		d.Close()
		return nil, errDB(dsn, err)
	}
	s := &Store{
		db:    d,
		stmts: stmts,
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
		now:   time.Now,
	}
	// SQLite has one writer at a time anyway; PostgreSQL takes several,
	// and each statement is a round trip, so writers in parallel ingest
	// more.
	writers := 1
	if d.d == postgresDialect {
		writers = pgWriters
	}
	for range writers {
		in := make(chan *ingestReq, 4096/writers)
		s.ingest = append(s.ingest, in)
		s.writers.Add(1)
		go s.writeLoop(in)
	}
	go func() {
		s.writers.Wait()
		close(s.done)
	}()
	return s, nil
}

// Dialect is "sqlite" or "postgres": which database the store is on.
func (s *Store) Dialect() string { return s.db.d.name }

// pgWriters is how many transactions write reports at once on PostgreSQL.
const pgWriters = 4

// Close stops the report writer and closes the database.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	s.stmts.close()
	return s.db.Close()
}

// ErrNotFound is returned when the agent, token or GitSync asked for does
// not exist.
var ErrNotFound = errors.New("not found")

func ms(t time.Time) int64 { return t.UnixMilli() }

func fromMS(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v).UTC()
}
