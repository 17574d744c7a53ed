package hub

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"tether.dev/tether/hub/status"
	"tether.dev/tether/internal/pgtest"
	"tether.dev/tether/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// Two hubs on one PostgreSQL: the first leads and alone posts commit
// statuses, also those of reports the other stores (through the outbox in
// the database); when it closes, the other leads at its next renewal and
// posts.
func TestLeaderOnPostgres(t *testing.T) {
	ctx := context.Background()
	dsn := pgtest.URL(t)
	var mu sync.Mutex
	var posts []string
	gl := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		mu.Lock()
		posts = append(posts, r.PostForm.Get("state"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1}`)
	}))
	host, err := status.NewGitLab(gl, "tok")
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{DB: dsn, GitHosts: []status.Host{host}, LeaseTTL: time.Hour, StatusPoll: 20 * time.Millisecond}
	opt.HubID = "hub-a"
	a, _, _ := newHub(t, opt)
	opt.HubID = "hub-b"
	b, _, _ := newHub(t, opt)
	if !a.Leading() || b.Leading() {
		t.Fatalf("leading: a %v, b %v; want a only", a.Leading(), b.Leading())
	}
	posted := func(s *Server) int {
		var m dto.Metric
		if err := s.metrics.statusPosts.WithLabelValues("gitlab", "posted").Write(&m); err != nil {
			t.Fatal(err)
		}
		return int(m.GetCounter().GetValue())
	}
	src := strings.Replace(gl, "http://127.0.0.1", "https://127.0.0.1", 1) + "/team/app.git"
	report := func(s *Server, v uint64, phase string) {
		r := rep("web", v, phase, shaA, shaA)
		r.SourceUrl = src
		mustReport(t, s, "prod", r)
	}
	report(b, 1, "progressing")
	testenv.Eventually(t, 10*time.Second, func() error {
		if posted(a) != 1 {
			return fmt.Errorf("the leader posted %d statuses, want the one b queued", posted(a))
		}
		return nil
	})
	b.leaderStep(ctx, time.Now())
	if b.Leading() {
		t.Fatal("b took the lease a holds")
	}
	a.Close() // releases the lease
	report(b, 2, "synced")
	b.leaderStep(ctx, time.Now())
	if !b.Leading() {
		t.Fatal("b does not lead after a closed")
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if posted(b) != 1 {
			return fmt.Errorf("the new leader posted %d statuses, want 1", posted(b))
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(posts) != "[running success]" {
		t.Errorf("posts %v, want [running success]", posts)
	}
}

// The leader deletes history older than the retention, and keeps what is
// live.
func TestRetention(t *testing.T) {
	ctx := context.Background()
	s, _, _ := newHub(t, Options{Retention: 30 * 24 * time.Hour})
	old := uint64(time.Now().Add(-60 * 24 * time.Hour).UnixNano())
	mustReport(t, s, "prod", rep("web", old, "synced", shaA, shaA))
	mustReport(t, s, "prod", rep("web", old+1, "synced", shaB, shaB)) // A superseded 60 days ago
	if ds, _ := s.store.History(ctx, "prod", "apps", "web", 10); len(ds) != 2 {
		t.Fatalf("history before retention: %+v", ds)
	}
	s.leaderStep(ctx, time.Now().Add(pruneEvery)) // the next prune is due
	ds, err := s.store.History(ctx, "prod", "apps", "web", 10)
	if err != nil || len(ds) != 1 || ds[0].SHA != shaB {
		t.Fatalf("history after retention: %+v, %v; want only the live commit B", ds, err)
	}
}

// A lone hub on SQLite that stops while a commit status is under way
// (posted, no answer yet) posts it after it starts again: the status
// waited in the database. It asks the host first, which lacks it.
func TestCommitStatusAfterRestart(t *testing.T) {
	var mu sync.Mutex
	var posts []string
	gets, held := 0, false
	arrived, release := make(chan struct{}), make(chan struct{})
	gl := listen(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if r.Method == http.MethodGet {
			gets++
			mu.Unlock()
			io.WriteString(w, `[]`)
			return
		}
		first := !held
		held = true
		mu.Unlock()
		if first { // lost: the hub stops before the answer
			close(arrived)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		r.ParseForm()
		mu.Lock()
		posts = append(posts, r.PostForm.Get("state"))
		mu.Unlock()
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id":1}`)
	}))
	t.Cleanup(func() { close(release) })
	host, err := status.NewGitLab(gl, "tok")
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{DB: filepath.Join(t.TempDir(), "hub.db"), GitHosts: []status.Host{host}, StatusPoll: 20 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a, err := New(context.Background(), opt)
	if err != nil {
		t.Fatal(err)
	}
	r := rep("web", 1, "progressing", "", shaA)
	r.SourceUrl = strings.Replace(gl, "http://127.0.0.1", "https://127.0.0.1", 1) + "/team/app.git"
	mustReport(t, a, "prod", r)
	<-arrived
	a.Close()

	b, _, _ := newHub(t, opt)
	testenv.Eventually(t, 10*time.Second, func() error {
		qs, err := b.store.QueuedStatuses(context.Background())
		if err == nil && len(qs) > 0 {
			err = fmt.Errorf("still queued: %+v", qs)
		}
		return err
	})
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(posts) != "[running]" || gets == 0 {
		t.Errorf("after the restart: posts %v, %d GETs; want [running] posted once, after asking", posts, gets)
	}
}
