package hub

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
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
