package devenv

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/internal/testenv"
)

// push is what the hub's GitLab receiver reads from a hook's request.
type push struct {
	Token, ObjectKind, Ref, After, URL string
}

// receiver is a loopback stand-in for the hub's /hooks/gitlab that hands
// every request it gets to the test.
func receiver(t *testing.T) (string, <-chan push) {
	t.Helper()
	got := make(chan push, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/hooks/gitlab" || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("hook request %s %s (Content-Type %q)", r.Method, r.URL.Path, r.Header.Get("Content-Type"))
		}
		var body struct {
			ObjectKind string `json:"object_kind"`
			Ref        string `json:"ref"`
			After      string `json:"after"`
			Project    struct {
				GitHTTPURL string `json:"git_http_url"`
			} `json:"project"`
		}
		b, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(b, &body); err != nil {
			t.Errorf("hook body %q: %v", b, err)
		}
		got <- push{r.Header.Get("X-Gitlab-Token"), body.ObjectKind, body.Ref, body.After, body.Project.GitHTTPURL}
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, got
}

// check compares a request with want, and its token with the secret
// without printing either.
func check(t *testing.T, hook string, p, want push, secret []byte) {
	t.Helper()
	if p.Token != string(secret) {
		t.Errorf("%s sent a token that is not the webhook secret", hook)
	}
	p.Token = ""
	if p != want {
		t.Errorf("%s sent %+v, want %+v", hook, p, want)
	}
}

// next returns the next request the receiver got. The hooks run before
// git returns, so it is there already; the limit only keeps a broken hook
// from hanging the test.
func next(t *testing.T, got <-chan push) push {
	t.Helper()
	select {
	case p := <-got:
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("the hook sent no request")
		return push{}
	}
}

func needCurl(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatal("the demo's Git hooks call the hub with curl: install it (apt-get install curl)")
	}
}

// TestHooksCallTheWebhook commits in the demo repository and pushes to it,
// and checks that each time the hooks send the hub a GitLab push event for
// the repository's URL with the secret, that the secret is in no hook file,
// and that only the user may read the hooks and the secret.
func TestHooksCallTheWebhook(t *testing.T) {
	needCurl(t)
	dir := t.TempDir()
	repo, err := testenv.InitRepo(filepath.Join(dir, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	e := &Env{RepoDir: repo.Dir, RepoURL: "http://127.0.0.1:9/demo/.git"}
	hubURL, got := receiver(t)
	secretFile := filepath.Join(dir, "webhook.secret")
	if err := WriteWebhookSecret(secretFile); err != nil {
		t.Fatal(err)
	}
	if err := e.InstallHooks(hubURL, secretFile); err != nil {
		t.Fatal(err)
	}
	secret, err := os.ReadFile(secretFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(secret) < 32 {
		t.Fatalf("webhook secret of %d bytes", len(secret))
	}
	testenv.CheckMode(t, secretFile, 0o600)
	for _, name := range HookNames {
		p := filepath.Join(repo.Dir, ".git", "hooks", name)
		testenv.CheckMode(t, p, 0o700)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, secret) {
			t.Errorf("%s holds the secret", name)
		}
	}

	// A commit in the work tree: post-commit.
	sha, err := repo.Commit(map[string]string{"a.yaml": "a: 1\n"}, "first")
	if err != nil {
		t.Fatal(err)
	}
	want := push{"", "push", "refs/heads/main", sha, e.RepoURL}
	check(t, "post-commit", next(t, got), want, secret)

	// A push to the repository (as to the URL the agent fetches):
	// post-receive, with the pushed commit.
	clone := filepath.Join(dir, "clone")
	git(t, dir, "clone", "--quiet", repo.Dir, clone)
	if err := os.WriteFile(filepath.Join(clone, "b.yaml"), []byte("b: 2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, clone, "add", "-A")
	git(t, clone, "commit", "--quiet", "-m", "second")
	pushed := strings.TrimSpace(git(t, clone, "rev-parse", "HEAD"))
	git(t, clone, "push", "--quiet", "origin", "main")
	want.After = pushed
	check(t, "post-receive", next(t, got), want, secret)
	select {
	case p := <-got:
		p.Token = ""
		t.Errorf("one push sent a second request: %+v", p)
	default:
	}
}

// TestHooksNeverFailACommit points the hooks at a hub that is not there:
// the commit is made all the same, and the hook says the poll will pick
// it up.
func TestHooksNeverFailACommit(t *testing.T) {
	needCurl(t)
	dir := t.TempDir()
	repo, err := testenv.InitRepo(filepath.Join(dir, "demo"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := "http://" + l.Addr().String()
	l.Close()
	e := &Env{RepoDir: repo.Dir, RepoURL: "http://127.0.0.1:9/demo/.git"}
	secretFile := filepath.Join(dir, "webhook.secret")
	if err := WriteWebhookSecret(secretFile); err != nil {
		t.Fatal(err)
	}
	if err := e.InstallHooks(gone, secretFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(repo.Dir, "a.yaml"), []byte("a: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, repo.Dir, "add", "-A")
	out := git(t, repo.Dir, "commit", "-m", "while the hub is away")
	if !strings.Contains(out, "the agent's poll picks up") {
		t.Errorf("the hook did not say that the poll takes over:\n%s", out)
	}
	if secret, _ := os.ReadFile(secretFile); bytes.Contains([]byte(out), secret) {
		t.Error("the hook printed the secret")
	}
}

// git runs git in dir with a fixed identity and returns its combined
// output (hooks write to stderr).
func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Demo", "GIT_AUTHOR_EMAIL=demo@tether.dev",
		"GIT_COMMITTER_NAME=Demo", "GIT_COMMITTER_EMAIL=demo@tether.dev", "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
