// Package store is the hub's memory: agents, their tokens (hashes only), the
// latest state of every GitSync they report, the history of revisions each
// GitSync applied, and the commit statuses already posted. It is embedded
// SQLite through a pure-Go driver, so the hub binary stays static.
//
// The store never calls out: no network, no Git host, no agent.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// Store is an open hub database. It is safe for concurrent use.
type Store struct {
	db     *sql.DB
	stmts  batchStmts
	ingest chan *ingestReq
	stop   chan struct{}
	done   chan struct{}
	once   sync.Once
	now    func() time.Time
}

// Open opens (creating when missing) the database at path, switches it to
// WAL mode and brings its schema up to date.
func Open(ctx context.Context, path string) (*Store, error) {
	q := url.Values{}
	q.Set("_busy_timeout", "10000")
	q.Set("_journal_mode", "WAL")
	q.Set("_synchronous", "NORMAL")
	q.Set("_foreign_keys", "1")
	// Write transactions take the write lock at BEGIN, so two writers wait
	// on the busy timeout instead of failing on a lock upgrade.
	q.Set("_txlock", "immediate")
	dsn := "file:" + path + "?" + q.Encode()
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("hub database %s: %w", path, err)
	}
	db.SetMaxOpenConns(8)
	db.SetConnMaxIdleTime(time.Minute)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("hub database %s: %w", path, err)
	}
	if err := migrate(ctx, db); err != nil {
		db.Close()
		return nil, fmt.Errorf("hub database %s: %w", path, err)
	}
	stmts, err := prepareBatch(ctx, db)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("hub database %s: %w", path, err)
	}
	s := &Store{
		db:     db,
		stmts:  stmts,
		ingest: make(chan *ingestReq, 4096),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
		now:    time.Now,
	}
	go s.writeLoop()
	return s, nil
}

// Close stops the report writer and closes the database.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.done
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
