package source

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"tether.dev/tether/internal/testenv"
)

// A fetch that fails after the listing succeeded: go-git's error carries
// the request URL with its user name (a token, for many hosts). Neither the
// log line nor the returned error may show it.
func TestFetchErrorLogIsRedacted(t *testing.T) {
	srv := startServer(t, testenv.GitServerOptions{})
	repo := createRepo(t, srv, "app")
	sha := commit(t, repo, map[string]string{"a.yaml": "a: 1\n"})
	backend, err := url.Parse(srv.URL())
	must(t, err)
	proxy := httputil.NewSingleHostReverseProxy(backend)
	// Listings pass; every fetch of objects loses its connection.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				conn.Close()
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()

	const token = "glpat-secret-in-url"
	rawURL := strings.Replace(front.URL, "http://", "http://"+token+"@", 1) + "/app/.git"
	f := newFetcher(t, Options{})
	var logs bytes.Buffer
	f.log = slog.New(slog.NewTextHandler(&logs, nil))
	_, err = f.Checkout(context.Background(), rawURL, Revision{Ref: "main", SHA: sha}, nil)
	if err == nil {
		t.Fatal("checkout through a server that drops fetches succeeded")
	}
	if !strings.Contains(logs.String(), "git fetch") {
		t.Fatalf("no fetch was logged:\n%s", logs.String())
	}
	for what, s := range map[string]string{"log": logs.String(), "error": err.Error()} {
		if strings.Contains(s, token) {
			t.Errorf("%s shows the token: %s", what, s)
		}
	}
}
