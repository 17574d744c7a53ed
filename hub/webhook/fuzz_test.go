package webhook

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// checkPush holds a parsed push to what dispatch relies on, and runs it
// through Follows as dispatch would.
func checkPush(t *testing.T, p *Push, ignored string, err error) {
	if err != nil || p == nil {
		if p != nil {
			t.Fatalf("a push and an error: %v", err)
		}
		return
	}
	if len(p.URLs) == 0 || !strings.HasPrefix(p.Ref, "refs/") {
		t.Fatalf("accepted push without a URL or a full ref: %+v", p)
	}
	for _, ref := range []string{"", "branch:main", "tag:v1", "semver:>=1.0 <2", "semver:" + p.Ref, "commit:abc"} {
		Follows(ref, p.Ref, p.DefaultBranch)
	}
}

func seeds(f *testing.F, names ...string) [][]byte {
	var out [][]byte
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("testdata", n))
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzGitLabPush: any body, parsed as GitLab's push payload, gives a push
// dispatch can use, an "ignored" event, or an error; never a panic.
func FuzzGitLabPush(f *testing.F) {
	for _, b := range seeds(f, "gitlab-push.json") {
		f.Add(b)
	}
	f.Add([]byte(`{"object_kind":"tag_push","ref":"refs/tags/v1.2.3","project":{"git_http_url":"https://h/a.git"}}`))
	f.Add([]byte(`{"object_kind":"push","ref":"main","project":{"git_http_url":"https://h/a.git"}}`))
	f.Add([]byte(`{"object_kind":"note"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		p, ignored, err := parseGitLab(nil, body)
		checkPush(t, p, ignored, err)
	})
}

// FuzzGitHubPush: any body, content type and event header, parsed as
// GitHub's (or Gitea's) push payload; never a panic.
func FuzzGitHubPush(f *testing.F) {
	for _, b := range seeds(f, "github-push.json", "gitea-push.json") {
		f.Add(b, "application/json", "push")
	}
	f.Add([]byte("payload=%7B%22ref%22%3A%22refs%2Fheads%2Fmain%22%7D"), "application/x-www-form-urlencoded", "push")
	f.Add([]byte(`{"zen":"x"}`), "application/json", "ping")
	f.Add([]byte(`{"ref":"refs/tags/v2","deleted":true,"repository":{"clone_url":"https://h/a"}}`), "application/json; charset=utf-8", "")
	f.Fuzz(func(t *testing.T, body []byte, contentType, event string) {
		r := httptest.NewRequest(http.MethodPost, "/hooks/github", nil)
		r.Header.Set("Content-Type", contentType)
		r.Header.Set("X-GitHub-Event", event)
		p, ignored, err := parseGitHub(r, body)
		checkPush(t, p, ignored, err)
	})
}
