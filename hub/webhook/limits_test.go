package webhook

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// watchedBody counts the reads of a request body.
type watchedBody struct {
	r     io.Reader
	reads atomic.Int64
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.reads.Add(1)
	return b.r.Read(p)
}

// TestRefusedUnread: a request whose headers cannot be authentic (a wrong
// GitLab token, no or a malformed GitHub/Gitea signature) is refused with
// 401 before a byte of its body is read.
func TestRefusedUnread(t *testing.T) {
	rc := &Receiver{Secret: []byte(secret)}
	for _, tc := range []struct {
		name    string
		h       http.Handler
		headers map[string]string
	}{
		{"gitlab wrong token", rc.GitLab(), map[string]string{"X-Gitlab-Token": "wrong"}},
		{"gitlab no token", rc.GitLab(), nil},
		{"github no signature", rc.GitHub(), map[string]string{"X-GitHub-Event": "push"}},
		{"github malformed signature", rc.GitHub(), map[string]string{"X-Hub-Signature-256": "sha256=zz"}},
		{"github short signature", rc.GitHub(), map[string]string{"X-Hub-Signature-256": "sha256=abcd"}},
		{"gitea malformed signature", rc.GitHub(), map[string]string{"X-Gitea-Signature": "not hex"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &watchedBody{r: strings.NewReader(`{"object_kind":"push"}`)}
			req := httptest.NewRequest(http.MethodPost, "/hooks/x", body)
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			tc.h.ServeHTTP(rec, req)
			if rec.Code != http.StatusUnauthorized {
				t.Errorf("status %d, want 401", rec.Code)
			}
			if n := body.reads.Load(); n != 0 {
				t.Errorf("the body was read %d times before the secret was checked", n)
			}
		})
	}
}

// TestBodyLimit: a payload over MaxBody is refused with 413, by its
// Content-Length before it is read, or once the limit is passed.
func TestBodyLimit(t *testing.T) {
	rc := &Receiver{Secret: []byte(secret), MaxBody: 1000}
	if (&Receiver{}).MaxBody != 0 || DefaultMaxBody != 1<<20 {
		t.Fatalf("default limit %d, want 1 MiB", DefaultMaxBody)
	}
	big := bytes.Repeat([]byte(" "), 1001)
	for _, tc := range []struct {
		name          string
		contentLength int64
	}{{"declared", int64(len(big))}, {"chunked", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			body := &watchedBody{r: bytes.NewReader(big)}
			req := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", body)
			req.ContentLength = tc.contentLength
			req.Header.Set("X-Gitlab-Token", secret)
			rec := httptest.NewRecorder()
			rc.GitLab().ServeHTTP(rec, req)
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("status %d, want 413", rec.Code)
			}
			if tc.contentLength > 0 && body.reads.Load() != 0 {
				t.Error("a payload declared too large was read")
			}
		})
	}
	// At the limit it is read and parsed.
	ok := append([]byte(`{"object_kind":"note"}`), bytes.Repeat([]byte(" "), 1000-22)...)
	req := httptest.NewRequest(http.MethodPost, "/hooks/gitlab", bytes.NewReader(ok))
	req.Header.Set("X-Gitlab-Token", secret)
	rec := httptest.NewRecorder()
	rc.GitLab().ServeHTTP(rec, req)
	if rec.Code != http.StatusAccepted {
		t.Errorf("payload at the limit: %d %s", rec.Code, rec.Body)
	}
}
