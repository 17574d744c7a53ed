package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestHubAccess runs `tether hub` as a user does: its page, API and
// metrics answer an API token only, not an agent token or no token; badges
// and /healthz answer anyone; with --public-read reads are open and
// resync still needs a token.
func TestHubAccess(t *testing.T) {
	h := startHub(t, t.TempDir(), hubOptions{})
	agentTok := strings.TrimSpace(readFile(t, h.token(t, "agent.token", "--agent", "a1")))
	for _, path := range []string{"/", "/api/v1/agents", "/api/v1/gitsyncs", "/api/v1/commits/0123456", "/metrics"} {
		for name, tok := range map[string]string{"no token": "", "an agent token": agentTok, "a wrong token": "x" + h.apiToken} {
			code, body, _, err := getWith(h.url+path, tok)
			if err != nil {
				t.Fatal(err)
			}
			if code != http.StatusUnauthorized || strings.Contains(body, "a1") {
				t.Errorf("GET %s with %s: %d %q", path, name, code, body)
			}
		}
		if code, _, _, err := h.read(path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s with the API token: %d %v", path, code, err)
		}
	}
	for _, path := range []string{"/healthz", "/badge/a1/ns/app.svg", "/badge/commit/0123456.svg", "/login"} {
		if code, _, _, err := get(h.url + path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s without a token: %d %v", path, code, err)
		}
	}

	open := startHub(t, t.TempDir(), hubOptions{flags: []string{"--public-read"}})
	if code, _, _, err := get(open.url + "/api/v1/agents"); err != nil || code != http.StatusOK {
		t.Errorf("--public-read: GET /api/v1/agents without a token: %d %v", code, err)
	}
	resp, err := httpClient.Post(open.url+"/api/v1/agents/a1/gitsyncs/ns/app/resync", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("--public-read: resync without a token: %d", resp.StatusCode)
	}
}
