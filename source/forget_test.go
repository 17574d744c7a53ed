package source

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"tether.dev/tether/internal/testenv"
)

// TestForgetDuringListing: a listing is under way (its answer already
// made, holding the old commit) when a push arrives and Forget is called.
// The Resolve after the Forget must list again and see the new commit, not
// share the listing that began before the push; the old listing, when it
// ends, must not be remembered either.
func TestForgetDuringListing(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	c1 := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})

	// A proxy that holds the first listing's answer until release.
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	proxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := false
		if strings.HasSuffix(r.URL.Path, "/info/refs") {
			once.Do(func() { first = true })
		}
		if !first {
			srv.ServeHTTP(w, r)
			return
		}
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, r)
		close(arrived)
		<-release
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	hs := &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { hs.Close() })
	url := "http://" + ln.Addr().String() + strings.TrimPrefix(repo.URL, srv.URL())

	f := newFetcher(t, Options{ResolveTTL: time.Hour})
	ctx := context.Background()
	old := make(chan Revision)
	go func() {
		rev, err := f.Resolve(ctx, url, Ref{Branch: "main"}, nil)
		if err != nil {
			t.Error(err)
		}
		old <- rev
	}()
	<-arrived // the old listing is made, and held

	c2 := commit(t, repo, map[string]string{"a.yaml": "a: 2\n"})
	f.Forget(url)
	// Without a fix this call joins the held listing and waits for it;
	// the deadline only keeps a failing test from hanging.
	waitCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rev, err := f.Resolve(waitCtx, url, Ref{Branch: "main"}, nil)
	if err != nil {
		close(release)
		t.Fatalf("Resolve after Forget: %v (it waited for the listing that began before the Forget)", err)
	}
	if rev.SHA != c2 {
		t.Errorf("Resolve after Forget = %s, want the pushed %s", rev.SHA, c2)
	}
	close(release)
	if rev := <-old; rev.SHA != c1 {
		t.Errorf("the held listing gave %s, want %s", rev.SHA, c1)
	}
	// The old listing, ending after the Forget, is not what the cache holds.
	if rev, err := f.Resolve(ctx, url, Ref{Branch: "main"}, nil); err != nil || rev.SHA != c2 {
		t.Errorf("Resolve from the cache = %v, %v; want %s", rev, err, c2)
	}
}
