package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// GiteaEnv names the variable that points at the folder `make test-gitea`
// builds: the gitea binary next to Gitea's options/, templates/ and
// public/.
const GiteaEnv = "TETHER_TEST_GITEA"

// giteaUser is the unprivileged account Gitea runs as: it refuses root.
const giteaUser = "tether-gitea"

// gitea is a running Gitea on loopback with one admin user.
type gitea struct {
	url      string // http://127.0.0.1:PORT (no trailing slash)
	user     string
	password string
	token    string // the admin's API token
	work     string
}

// startGitea starts a fresh Gitea (its own work dir and SQLite database)
// as giteaUser and returns it once its API answers, with an admin user and
// an API token.
func startGitea(t *testing.T, logDir string) *gitea {
	t.Helper()
	built := os.Getenv(GiteaEnv)
	if built == "" {
		t.Fatalf("%s is not set: run `make test` (or `make test-gitea`) to build Gitea", GiteaEnv)
	}
	if _, err := os.Stat(filepath.Join(built, "gitea")); err != nil {
		t.Fatalf("%s=%s has no gitea binary: run `make test-gitea`: %v", GiteaEnv, built, err)
	}
	if _, err := exec.LookPath("runuser"); err != nil {
		t.Fatal("runuser (util-linux) is needed to run Gitea as an unprivileged user")
	}
	if _, err := run("id", "-u", giteaUser); err != nil {
		mustRun(t, "useradd", "--system", "--user-group", "--no-create-home", "--shell", "/usr/sbin/nologin", giteaUser)
	}

	// Not under t.TempDir(): its parents are private to root, and Gitea
	// runs as another user.
	work, err := os.MkdirTemp("", "tether-e2e-gitea-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	if err := os.Chmod(work, 0o755); err != nil {
		t.Fatal(err)
	}
	// The build lives under /root, which giteaUser cannot read: link (or
	// copy) the binary, options/ and templates/ into the work dir.
	for _, name := range []string{"gitea", "options", "templates", "public"} {
		if _, err := run("cp", "-al", filepath.Join(built, name), work); err != nil {
			mustRun(t, "cp", "-a", filepath.Join(built, name), work)
		}
	}
	// Gitea's frontend (its JavaScript and CSS bundles) is built with
	// Node.js and is not part of the Go module. Its pages load the bundles
	// with onerror="alert(...)", and an alert blocks headless Chromium
	// forever: stand-ins keep the pages plain HTML, which is what the tests
	// read. The stylesheet hides what Gitea's own hides (modals, popups;
	// an autofocused field in a visible modal would scroll the page away)
	// and frames the commit statuses for the screenshot.
	for f, content := range map[string]string{
		"js/iife.js":               "",
		"js/index.js":              "",
		"css/theme-gitea-auto.css": "",
		"css/index.css": `.tw-hidden, .ui.modal, .tippy-target, [hidden] { display: none !important; }
body { font-family: sans-serif; margin: 1rem 2rem; }
.commit-status-panel { border: 2px solid #21ba45; border-radius: 4px; padding: .5rem 1rem; margin: .5rem 0; }
`,
	} {
		path := filepath.Join(work, "public", "assets", f)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	g := &gitea{url: "http://127.0.0.1:" + strconv.Itoa(port), user: "tether", password: "e2e-" + randomHex(t, 8), work: work}
	conf := filepath.Join(work, "custom", "conf", "app.ini")
	for _, d := range []string{"custom", "custom/conf", "data", "log", "repos"} {
		if err := os.MkdirAll(filepath.Join(work, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, conf, giteaINI(work, port))
	mustRun(t, "chown", giteaUser+":"+giteaUser, work,
		filepath.Join(work, "custom"), filepath.Join(work, "custom", "conf"), conf,
		filepath.Join(work, "data"), filepath.Join(work, "log"), filepath.Join(work, "repos"))

	giteaCmd := func(args ...string) []string {
		argv := []string{"runuser", "-u", giteaUser, "--", filepath.Join(work, "gitea")}
		argv = append(argv, args...)
		return append(argv, "--config", conf, "--work-path", work)
	}
	mustRun(t, giteaCmd("migrate")...)
	mustRun(t, giteaCmd("admin", "user", "create", "--admin", "--username", g.user, "--password", g.password,
		"--email", "tether@example.com", "--must-change-password=false")...)
	p := startProc(t, logDir, "gitea", giteaCmd("web"), func(c *exec.Cmd) { c.Dir = work })
	eventually(t, 2*time.Minute, "Gitea's API", func() (bool, string) {
		if !p.running() {
			t.Fatalf("gitea exited: %v", p.waitErr)
		}
		code, body, _, err := get(g.url + "/api/v1/version")
		return err == nil && code == 200, fmt.Sprint(code, body, err)
	})
	var tok struct {
		SHA1 string `json:"sha1"`
	}
	g.api(t, http.MethodPost, "/api/v1/users/"+g.user+"/tokens", map[string]any{
		"name": "e2e", "scopes": []string{"write:repository", "write:user"},
	}, &tok, true)
	if tok.SHA1 == "" {
		t.Fatal("Gitea returned no token")
	}
	g.token = tok.SHA1
	return g
}

// giteaINI is a minimal app.ini: installed, SQLite, loopback only, no SSH,
// no outside requests, webhooks allowed to loopback (where the hub is).
func giteaINI(work string, port int) string {
	return fmt.Sprintf(`APP_NAME = Tether e2e
RUN_USER = %[3]s
RUN_MODE = prod
WORK_PATH = %[1]s

[server]
PROTOCOL = http
HTTP_ADDR = 127.0.0.1
HTTP_PORT = %[2]d
ROOT_URL = http://127.0.0.1:%[2]d/
APP_DATA_PATH = %[1]s/data
DISABLE_SSH = true
START_SSH_SERVER = false
SSH_CREATE_AUTHORIZED_KEYS_FILE = false
SSH_ROOT_PATH = %[1]s/data/ssh
OFFLINE_MODE = true
LFS_START_SERVER = false

[database]
DB_TYPE = sqlite3
PATH = %[1]s/data/gitea.db

[repository]
ROOT = %[1]s/repos
DEFAULT_BRANCH = main

[security]
INSTALL_LOCK = true

[service]
DISABLE_REGISTRATION = true

[webhook]
ALLOWED_HOST_LIST = loopback
DELIVER_TIMEOUT = 10

[mailer]
ENABLED = false

[actions]
ENABLED = false

[cron.update_checker]
ENABLED = false

[log]
MODE = console
LEVEL = info
ROOT_PATH = %[1]s/log
`, work, port, giteaUser)
}

// api calls Gitea's API with the admin's token (or basic auth) and decodes
// the JSON answer into out.
func (g *gitea) api(t *testing.T, method, path string, body, out any, basic bool) {
	t.Helper()
	code, b := g.call(t, method, path, body, basic)
	if code/100 != 2 {
		t.Fatalf("Gitea %s %s: %d %s", method, path, code, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("Gitea %s %s: %v: %s", method, path, err, b)
		}
	}
}

func (g *gitea) call(t *testing.T, method, path string, body any, basic bool) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if basic {
		req.SetBasicAuth(g.user, g.password)
	} else {
		req.Header.Set("Authorization", "token "+g.token)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("Gitea %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// pushURL is the repository's URL with the admin's credentials, for git
// push.
func (g *gitea) pushURL(repo string) string {
	return strings.Replace(g.url, "http://", "http://"+g.user+":"+g.password+"@", 1) + "/" + g.user + "/" + repo + ".git"
}

// freePort returns a loopback TCP port that was free a moment ago, for
// servers that must be told their port up front.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
