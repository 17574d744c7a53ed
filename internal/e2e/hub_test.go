package e2e

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"tether.dev/tether/hub"
)

// hubProc is a running `tether hub` with its database, webhook secret and
// agent token in dir.
type hubProc struct {
	*proc
	dir    string
	db     string
	secret []byte
	// apiToken reads the page, the API and /metrics.
	apiToken string
	// url is http://<address it listens on>; addr is that address.
	url, addr string
	argv      []string
}

// hubOptions configure startHub.
type hubOptions struct {
	// listen defaults to 127.0.0.1:0; the address taken is read from the
	// hub's log.
	listen string
	// wrap runs the hub under another command, e.g. ip netns exec NS.
	wrap []string
	// flags are more flags for `tether hub`.
	flags []string
}

// startHub writes a webhook secret and starts `tether hub` on dir's
// database, waiting until /healthz answers.
func startHub(t *testing.T, dir string, o hubOptions) *hubProc {
	t.Helper()
	if o.listen == "" {
		o.listen = "127.0.0.1:0"
	}
	h := &hubProc{dir: dir, db: filepath.Join(dir, "hub.db"), secret: []byte(randomHex(t, 16))}
	writeFile(t, filepath.Join(dir, "webhook-secret"), string(h.secret)+"\n")
	h.argv = append(append([]string{}, o.wrap...), suite.tether, "hub", "--db", h.db,
		"--webhook-secret-file", filepath.Join(dir, "webhook-secret"), "--shutdown-timeout", "5s")
	h.argv = append(h.argv, o.flags...)
	h.apiToken = readFile(t, h.token(t, "api.token", "--api", "--name", "e2e"))
	h.apiToken = strings.TrimSpace(h.apiToken)
	h.start(t, o.listen)
	return h
}

var hubServing = regexp.MustCompile(`msg="hub serving" address=(\S+)`)

// start starts the hub process listening on listen and waits until it
// serves.
func (h *hubProc) start(t *testing.T, listen string) {
	t.Helper()
	before := len(hubServing.FindAllStringSubmatch(readLog(h.proc), -1))
	h.proc = startProc(t, h.dir, "hub", append(append([]string{}, h.argv...), "--listen", listen), nil)
	eventually(t, time.Minute, "the hub to say where it serves", func() (bool, string) {
		if !h.running() {
			t.Fatalf("the hub exited: %v", h.waitErr)
		}
		m := hubServing.FindAllStringSubmatch(h.log(), -1)
		if len(m) <= before {
			return false, "no 'hub serving' line yet"
		}
		h.url = m[len(m)-1][1]
		h.addr = strings.TrimPrefix(h.url, "http://")
		return true, ""
	})
	eventually(t, time.Minute, "the hub's /healthz", func() (bool, string) {
		code, body, _, err := get(h.url + "/healthz")
		return err == nil && code == 200, fmt.Sprint(code, body, err)
	})
}

func readLog(p *proc) string {
	if p == nil {
		return ""
	}
	return p.log()
}

// restart stops the hub and starts it again on the same database and
// address.
func (h *hubProc) restart(t *testing.T) {
	t.Helper()
	if err := h.stop(); err != nil {
		t.Fatalf("hub stopped with %v", err)
	}
	h.start(t, h.addr)
}

// token runs `tether hub token create` and writes the token to a file in
// the hub's dir, returning the file.
func (h *hubProc) token(t *testing.T, file string, args ...string) string {
	t.Helper()
	out := mustRun(t, append([]string{suite.tether, "hub", "token", "create", "--db", h.db}, args...)...)
	tok := strings.TrimSpace(out)
	if tok == "" || strings.ContainsAny(tok, " \n") {
		t.Fatalf("token create printed %q, want one token", out)
	}
	path := filepath.Join(h.dir, file)
	// Written aside and renamed: the agent re-reads the file on every
	// connection and must never see half a token.
	writeFile(t, path+".tmp", tok+"\n")
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	return path
}

// hook posts a push webhook to /hooks/github, signed with the hub's
// secret unless sign is false (then with another one), and returns the
// answer.
func (h *hubProc) hook(t *testing.T, body []byte, sign bool) (int, string) {
	t.Helper()
	key := h.secret
	if !sign {
		key = []byte("not-the-secret")
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, h.url+"/hooks/github", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", randomHex(t, 8))
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST /hooks/github: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// githubPush is the part of GitHub's push event payload that matters, as
// GitHub sends it for a push of sha to branch on repoURL.
func githubPush(repoURL, branch, before, sha string) []byte {
	b, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/" + branch, "before": before, "after": sha, "created": false, "deleted": false, "forced": false,
		"repository": map[string]any{
			"name": "app", "full_name": "acme/app", "clone_url": repoURL, "default_branch": "main",
		},
		"pusher":      map[string]any{"name": "tether-test"},
		"head_commit": map[string]any{"id": sha, "message": "e2e"},
	})
	return b
}

// gitsyncs is GET /api/v1/gitsyncs?agent=...
func (h *hubProc) gitsyncs(agent string) ([]hub.GitSyncJSON, error) {
	var out struct {
		GitSyncs []hub.GitSyncJSON `json:"gitsyncs"`
	}
	return out.GitSyncs, h.getJSON("/api/v1/gitsyncs?agent="+agent, &out)
}

// agents is GET /api/v1/agents.
func (h *hubProc) agents() ([]hub.AgentJSON, error) {
	var out struct {
		Agents []hub.AgentJSON `json:"agents"`
	}
	return out.Agents, h.getJSON("/api/v1/agents", &out)
}

// commit is GET /api/v1/commits/{sha}.
func (h *hubProc) commit(sha string) (hub.CommitJSON, error) {
	var out hub.CommitJSON
	return out, h.getJSON("/api/v1/commits/"+sha, &out)
}

func (h *hubProc) getJSON(path string, v any) error {
	code, body, _, err := h.read(path)
	if err != nil {
		return err
	}
	if code != http.StatusOK {
		return fmt.Errorf("GET %s: %d %s", path, code, body)
	}
	return json.Unmarshal([]byte(body), v)
}

// connected reports whether the hub lists agent as connected.
func (h *hubProc) connected(agent string) (bool, string) {
	as, err := h.agents()
	if err != nil {
		return false, err.Error()
	}
	for _, a := range as {
		if a.Name == agent {
			return a.Connected, fmt.Sprintf("%+v", a)
		}
	}
	return false, fmt.Sprintf("agent %s not listed: %+v", agent, as)
}

// waitConnected waits until the hub lists agent as connected (want) or
// not.
func (h *hubProc) waitConnected(t *testing.T, agent string, want bool) {
	t.Helper()
	eventually(t, 2*time.Minute, fmt.Sprintf("agent %s connected=%v at the hub", agent, want), func() (bool, string) {
		c, detail := h.connected(agent)
		return c == want, detail
	})
}

// badgeTexts fetches an SVG badge and returns the texts it shows (the
// drop shadows, marked aria-hidden, left out).
func badgeTexts(url string) ([]string, error) {
	code, body, hdr, err := get(url)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %d", url, code)
	}
	if ct := hdr.Get("Content-Type"); ct != "image/svg+xml" {
		return nil, fmt.Errorf("GET %s: Content-Type %q", url, ct)
	}
	if cc := hdr.Get("Cache-Control"); cc != "no-store" {
		return nil, fmt.Errorf("GET %s: Cache-Control %q", url, cc)
	}
	var texts []string
	dec := xml.NewDecoder(strings.NewReader(body))
	var in bool
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return texts, nil
		}
		if err != nil {
			return nil, fmt.Errorf("badge %s is not XML: %w", url, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			if el.Name.Local == "text" {
				in = true
				for _, a := range el.Attr {
					if a.Name.Local == "aria-hidden" {
						in = false
					}
				}
				if in {
					texts = append(texts, "")
				}
			}
		case xml.CharData:
			if in {
				texts[len(texts)-1] += string(el)
			}
		case xml.EndElement:
			if el.Name.Local == "text" {
				in = false
			}
		}
	}
}

// waitBadge waits until the badge at url shows exactly want as one of its
// texts, and returns the texts.
func waitBadge(t *testing.T, url, want string) []string {
	t.Helper()
	var texts []string
	eventually(t, 2*time.Minute, fmt.Sprintf("badge %s to show %q", url, want), func() (bool, string) {
		var err error
		texts, err = badgeTexts(url)
		if err != nil {
			return false, err.Error()
		}
		for _, s := range texts {
			if s == want {
				return true, ""
			}
		}
		return false, fmt.Sprintf("%q", texts)
	})
	return texts
}

func (h *hubProc) badgeURL(agent, ns, name string) string {
	return h.url + "/badge/" + agent + "/" + ns + "/" + name + ".svg"
}

func (h *hubProc) commitBadgeURL(sha string) string {
	return h.url + "/badge/commit/" + sha + ".svg"
}

// metric returns the value of one sample of the hub's /metrics, e.g.
// `tether_hub_webhooks_total{provider="github",result="unauthorized"}`,
// and 0 when it is absent.
func (h *hubProc) metric(t *testing.T, sample string) float64 {
	t.Helper()
	code, body, _, err := h.read("/metrics")
	if err != nil || code != 200 {
		t.Fatalf("GET /metrics: %d %v", code, err)
	}
	for _, l := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(l, sample+" "); ok {
			var v float64
			fmt.Sscan(rest, &v)
			return v
		}
	}
	return 0
}

// read is a GET of the hub's path with its API token.
func (h *hubProc) read(path string) (int, string, http.Header, error) {
	return getWith(h.url+path, h.apiToken)
}

// getWith is a GET with a bearer token.
func getWith(url, token string) (int, string, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(b), resp.Header, err
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// hubGitSync is a GitSync in the hub's JSON API.
type hubGitSync = hub.GitSyncJSON

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
