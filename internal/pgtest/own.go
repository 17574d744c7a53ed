package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Server is a PostgreSQL server of one test's own, for a test that
// restarts it under load: the binary's shared server (URL) stays up for
// the others.
type Server struct {
	s *server
}

// Start starts a server for t alone, stopped when t ends. Like URL, it
// skips t without the server binaries, unless CI=true.
func Start(t testing.TB) *Server {
	t.Helper()
	s, skip, err := start()
	if skip != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: %s (CI=true: PostgreSQL is required; run make deps)", skip)
		}
		t.Skipf("pgtest: %s; run make deps to test against PostgreSQL", skip)
	}
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return &Server{s: s}
}

// StartServer starts a server outside a test (a benchmark's), stopped by
// Stop. It fails, saying why, without the server binaries.
func StartServer() (*Server, error) {
	s, skip, err := start()
	if skip != "" {
		return nil, fmt.Errorf("pgtest: %s", skip)
	}
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return &Server{s: s}, nil
}

// Stop stops a server of StartServer and removes its data.
func (p *Server) Stop() error { return p.s.stop() }

// URL returns the address of a new, empty database on the server.
func (p *Server) URL(t testing.TB) string {
	t.Helper()
	u, err := p.NewDatabase()
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// NewDatabase makes a new, empty database on the server and returns its
// address.
func (p *Server) NewDatabase() (string, error) {
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	db, err := sql.Open("pgx", p.s.url("postgres"))
	if err != nil {
		return "", err
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return p.s.url(name), nil
}

// Restart restarts the server as an operator's `pg_ctl restart -m fast`
// does: every connection is cut, the server is away for a moment, then
// back on the same port with the same data.
func (p *Server) Restart(t testing.TB) {
	t.Helper()
	if err := p.s.shutdown(); err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
	if err := p.s.serve(filepath.Join(p.s.dir, "data")); err != nil {
		t.Fatalf("pgtest: restart: %v", err)
	}
}
