// Package pgtest starts a real PostgreSQL for tests: Debian's server
// binaries (package postgresql), one server per test binary in a temporary
// folder on a free 127.0.0.1 port, and a fresh database per test. It never
// touches a server it did not start.
//
// A package that uses it calls Main from its TestMain, so the server is
// stopped when the tests end, and URL from each test that needs a database.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
)

// BinEnv names an environment variable that, when set, is the folder of
// initdb and postgres; otherwise the newest
// /usr/lib/postgresql/<major>/bin is used.
const BinEnv = "TETHER_PG_BIN"

// serverUser is who runs the server when the tests run as root: PostgreSQL
// refuses to run as root, and Debian's package creates this user.
const serverUser = "postgres"

var (
	once    sync.Once
	srv     *server
	srvErr  error
	skipMsg string
	dbSeq   atomic.Int64
)

type server struct {
	dir    string // owns data/, the socket and the log
	port   int
	cred   *syscall.Credential
	bin    string
	proc   *exec.Cmd
	exited chan error // postgres's exit, once
}

// Main runs the tests and then stops the server, if one was started. Call
// it from TestMain: os.Exit(pgtest.Main(m)).
func Main(m *testing.M) int {
	code := m.Run()
	if srv != nil {
		if err := srv.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		}
	}
	return code
}

// URL returns the address of a new, empty database on the test binary's
// server, starting the server on first use. Without the server binaries
// the test is skipped, unless CI=true, where it fails: CI must test both
// databases.
func URL(t testing.TB) string {
	t.Helper()
	once.Do(func() { srv, skipMsg, srvErr = start() })
	if skipMsg != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("pgtest: %s (CI=true: PostgreSQL is required; run make deps)", skipMsg)
		}
		t.Skipf("pgtest: %s; run make deps to test against PostgreSQL", skipMsg)
	}
	if srvErr != nil {
		t.Fatalf("pgtest: %v", srvErr)
	}
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbSeq.Add(1))
	db, err := sql.Open("pgx", srv.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(context.Background(), "CREATE DATABASE "+name); err != nil {
		t.Fatalf("pgtest: create database %s: %v", name, err)
	}
	return srv.url(name)
}

func (s *server) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// binDir finds the server binaries; "" when there are none.
func binDir() string {
	if d := os.Getenv(BinEnv); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	// Newest major first: 15 before 9.6 needs a numeric sort.
	slices.SortFunc(dirs, func(a, b string) int { return major(b) - major(a) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

func major(binDir string) int {
	n, _ := strconv.Atoi(strings.SplitN(filepath.Base(filepath.Dir(binDir)), ".", 2)[0])
	return n
}

// start makes and starts a server. A non-empty skip says why none can be.
func start() (s *server, skip string, err error) {
	bin := binDir()
	if bin == "" {
		return nil, "no PostgreSQL server binaries (initdb) under /usr/lib/postgresql/*/bin or $" + BinEnv, nil
	}
	for _, b := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return nil, fmt.Sprintf("%s missing from %s", b, bin), nil
		}
	}
	dir, err := os.MkdirTemp("", "tether-pg-")
	if err != nil {
		return nil, "", err
	}
	s = &server{dir: dir, bin: bin}
	if os.Geteuid() == 0 {
		u, err := user.Lookup(serverUser)
		if err != nil {
			os.RemoveAll(dir)
			return nil, "", fmt.Errorf("running as root needs the %s user (Debian's postgresql package makes it): %w", serverUser, err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, "", err
		}
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	data := filepath.Join(dir, "data")
	// No fsync: the data dies with the test binary. Text sorts as in
	// en-US (ICU), as on many production servers, not bytewise: code that
	// needs an order must ask for it.
	if err := s.run("initdb", "-D", data, "--auth=trust", "-U", "postgres", "--encoding=UTF8", "--no-sync",
		"--locale=C", "--locale-provider=icu", "--icu-locale=en-US"); err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	if s.port, err = freePort(); err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	if err := s.serve(data); err != nil {
		os.RemoveAll(dir)
		return nil, "", err
	}
	return s, "", nil
}

// serve starts postgres itself, as a child of the test binary rather than
// a daemon of pg_ctl, so that it dies with the binary (the parent-death
// signal asks for a fast shutdown) even when the binary is killed on a
// timeout; then it waits until the server takes connections.
func (s *server) serve(data string) error {
	log, err := os.Create(filepath.Join(s.dir, "log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(filepath.Join(s.bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port), "-k", s.dir,
		"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "max_connections=200")
	cmd.Dir, cmd.Env = s.dir, s.env()
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGINT}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	s.proc = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.exited = exited
	db, err := sql.Open("pgx", s.url("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	deadline := time.After(time.Minute)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := db.PingContext(ctx)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-exited:
			out, _ := os.ReadFile(filepath.Join(s.dir, "log"))
			return fmt.Errorf("postgres exited (%v) before it took connections:\n%s", werr, out)
		case <-deadline:
			cmd.Process.Kill()
			<-exited
			return fmt.Errorf("postgres took no connection within a minute: %w", err)
		case <-tick.C:
		}
	}
}

// stop asks for a fast shutdown, waits for it and removes the server's
// folder.
func (s *server) stop() error {
	defer os.RemoveAll(s.dir)
	return s.shutdown()
}

// shutdown asks for a fast shutdown (SIGINT, what `pg_ctl stop -m fast`
// sends) and waits for it; the data stays.
func (s *server) shutdown() error {
	if err := s.proc.Process.Signal(syscall.SIGINT); err != nil {
		return fmt.Errorf("stop postgres: %w", err)
	}
	<-s.exited
	return nil
}

// run runs one of the server's binaries as the server's user.
func (s *server) run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir // the postgres user may not enter the caller's folder
	cmd.Env = s.env()
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (s *server) env() []string {
	return []string{"PATH=/usr/bin:/bin", "LC_ALL=C", "HOME=" + s.dir}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
