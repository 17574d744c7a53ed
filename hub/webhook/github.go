package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// githubPush is the part of GitHub's (and Gitea's) push payload the hub
// reads.
type githubPush struct {
	Ref        string `json:"ref"`
	After      string `json:"after"`
	Deleted    bool   `json:"deleted"`
	Repository struct {
		CloneURL      string `json:"clone_url"`
		SSHURL        string `json:"ssh_url"`
		HTMLURL       string `json:"html_url"`
		DefaultBranch string `json:"default_branch"`
	} `json:"repository"`
}

// GitHub serves POST /hooks/github for GitHub and Gitea: the body's
// HMAC-SHA256 under the secret must match X-Hub-Signature-256
// ("sha256=<hex>"), or Gitea's X-Gitea-Signature (bare hex).
func (rc *Receiver) GitHub() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.serve(w, r, hook{
			provider: "github",
			// Without a well-formed signature the body cannot be
			// authentic: refused unread.
			headers: func(r *http.Request) bool { return signature(r) != nil },
			body:    rc.verifyHMAC,
			parse:   parseGitHub,
		})
	})
}

// signature is the request's HMAC-SHA256 signature, nil when missing or
// malformed.
func signature(r *http.Request) []byte {
	sig, ok := strings.CutPrefix(r.Header.Get("X-Hub-Signature-256"), "sha256=")
	if !ok {
		sig = r.Header.Get("X-Gitea-Signature")
	}
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil || len(got) != sha256.Size {
		return nil
	}
	return got
}

func (rc *Receiver) verifyHMAC(r *http.Request, body []byte) bool {
	got := signature(r)
	if got == nil {
		return false
	}
	mac := hmac.New(sha256.New, rc.Secret)
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

func parseGitHub(r *http.Request, body []byte) (*Push, string, error) {
	event := firstNonEmpty(r.Header.Get("X-GitHub-Event"), r.Header.Get("X-Gitea-Event"), r.Header.Get("X-Gogs-Event"))
	if event != "" && event != "push" {
		return nil, "event " + event, nil
	}
	// GitHub can send the payload form-encoded, in the "payload" field.
	if ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); ct == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, "", err
		}
		body = []byte(form.Get("payload"))
	}
	var p githubPush
	if err := json.Unmarshal(body, &p); err != nil {
		return nil, "", err
	}
	urls := nonEmpty(p.Repository.CloneURL, p.Repository.SSHURL, p.Repository.HTMLURL)
	if len(urls) == 0 {
		return nil, "", errNoRepo
	}
	if !strings.HasPrefix(p.Ref, "refs/") {
		return nil, "", errBadRef(p.Ref)
	}
	return &Push{URLs: urls, Ref: p.Ref, DefaultBranch: p.Repository.DefaultBranch,
		Deleted: p.Deleted || zeroSHA(p.After)}, "", nil
}

func firstNonEmpty(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
