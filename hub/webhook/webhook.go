// Package webhook turns Git hosts' push webhooks (GitLab's, GitHub's and
// Gitea's) into "sync now" for every agent whose GitSyncs follow the pushed
// repository and ref, so a commit deploys in about a second rather than a
// poll interval. It checks every request's secret before reading it, and it
// never writes to the store.
package webhook

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sort"
	"strings"

	"github.com/Masterminds/semver/v3"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/giturl"
	"tether.dev/tether/hub/store"
)

// Finder lists the GitSyncs the hub knows (of every agent for agent "").
type Finder interface {
	GitSyncs(ctx context.Context, agent string) ([]store.GitSync, error)
}

// Dispatcher sends "sync now" to a connected agent.
type Dispatcher interface {
	SyncNow(agent string, msg *channelpb.SyncNow) error
}

// Receiver serves the webhook endpoints.
type Receiver struct {
	// Secret is GitLab's X-Gitlab-Token and the HMAC key of GitHub's and
	// Gitea's signatures. Without one every hook is refused.
	Secret   []byte
	Finder   Finder
	Dispatch Dispatcher
	Log      *slog.Logger
	// Result, when set, counts each request: "dispatched", "unmatched",
	// "ignored", "unauthorized", "malformed", "unconfigured", "error".
	Result func(provider, result string)
}

// maxBody bounds a webhook payload (pushes with many commits are large).
const maxBody = 10 << 20

// Push is what a push event says, whatever the host.
type Push struct {
	// URLs are every spelling of the repository the payload gives.
	URLs []string
	// Ref is the full ref pushed: refs/heads/<branch> or refs/tags/<tag>.
	Ref           string
	DefaultBranch string
	// Deleted is true when the push removed the ref.
	Deleted bool
}

func (rc *Receiver) log() *slog.Logger {
	if rc.Log == nil {
		return slog.Default()
	}
	return rc.Log
}

func (rc *Receiver) count(provider, result string) {
	if rc.Result != nil {
		rc.Result(provider, result)
	}
}

// serve is the shape of both endpoints: read, authenticate, parse,
// dispatch, answer.
func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request, provider string,
	verify func(r *http.Request, body []byte) bool,
	parse func(r *http.Request, body []byte) (*Push, string, error)) {
	fail := func(code int, result, msg string) {
		rc.count(provider, result)
		rc.log().Info("webhook refused", "provider", provider, "result", result, "reason", msg)
		http.Error(w, msg, code)
	}
	if len(rc.Secret) == 0 {
		fail(http.StatusServiceUnavailable, "unconfigured", "webhooks are off: the hub has no --webhook-secret-file")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		fail(http.StatusRequestEntityTooLarge, "malformed", "payload too large or unreadable")
		return
	}
	if !verify(r, body) {
		fail(http.StatusUnauthorized, "unauthorized", "bad or missing webhook secret")
		return
	}
	push, ignored, err := parse(r, body)
	if err != nil {
		fail(http.StatusBadRequest, "malformed", "malformed payload: "+err.Error())
		return
	}
	if push == nil {
		rc.count(provider, "ignored")
		writeJSON(w, http.StatusAccepted, map[string]any{"ignored": ignored})
		return
	}
	matched, sent, err := rc.dispatch(r.Context(), provider, push)
	if err != nil {
		fail(http.StatusInternalServerError, "error", "internal error")
		rc.log().Error("webhook", "provider", provider, "error", err)
		return
	}
	result := "dispatched"
	if matched == 0 {
		result = "unmatched"
	}
	rc.count(provider, result)
	rc.log().Info("push webhook", "provider", provider, "repo", push.URLs[0], "ref", push.Ref,
		"gitsyncs", matched, "agents", sent)
	writeJSON(w, http.StatusAccepted, map[string]any{"gitsyncs": matched, "dispatched": sent})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

// equalSecret compares in constant time, whatever the lengths.
func equalSecret(got string, want []byte) bool {
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256(want)
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// dispatch sends one SyncNow per agent and source URL whose GitSyncs follow
// the pushed repository and ref, and returns how many GitSyncs matched and
// how many messages were delivered.
func (rc *Receiver) dispatch(ctx context.Context, provider string, p *Push) (int, int, error) {
	if p.Deleted {
		return 0, 0, nil
	}
	all, err := rc.Finder.GitSyncs(ctx, "")
	if err != nil {
		return 0, 0, err
	}
	keys := map[string]bool{}
	for _, u := range p.URLs {
		if k := giturl.Key(u); k != "" {
			keys[k] = true
		}
	}
	type target struct{ agent, url string }
	targets := map[target]bool{}
	matched := 0
	for _, g := range all {
		if !keys[giturl.Key(g.SourceURL)] || !Follows(g.Ref, p.Ref, p.DefaultBranch) {
			continue
		}
		matched++
		targets[target{g.Agent, g.SourceURL}] = true
	}
	list := make([]target, 0, len(targets))
	for t := range targets {
		list = append(list, t)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].agent+list[i].url < list[j].agent+list[j].url })
	short := strings.TrimPrefix(strings.TrimPrefix(p.Ref, "refs/heads/"), "refs/tags/")
	sent := 0
	for _, t := range list {
		if rc.Dispatch == nil {
			break
		}
		// repo_url is the GitSync's own spelling of the URL, so the agent
		// matches it without normalising.
		err := rc.Dispatch.SyncNow(t.agent, &channelpb.SyncNow{
			RepoUrl: t.url, BranchOrTag: short,
			Reason: fmt.Sprintf("%s push to %s", provider, p.Ref),
		})
		if err != nil {
			rc.log().Info("sync now not delivered", "agent", t.agent, "repo", t.url, "error", err)
			continue
		}
		sent++
	}
	return matched, sent, nil
}

// Follows reports whether a GitSync whose ref is gitsyncRef ("branch:main",
// "tag:v1", "semver:>=1.0", "commit:<sha>", "" for the default branch)
// follows a push of pushedRef ("refs/heads/main", "refs/tags/v1.2.0").
func Follows(gitsyncRef, pushedRef, defaultBranch string) bool {
	branch, isBranch := strings.CutPrefix(pushedRef, "refs/heads/")
	tag, isTag := strings.CutPrefix(pushedRef, "refs/tags/")
	kind, value, ok := strings.Cut(gitsyncRef, ":")
	if !ok {
		kind, value = "branch", gitsyncRef
	}
	switch kind {
	case "branch":
		if value == "" {
			return isBranch && (defaultBranch == "" || branch == defaultBranch)
		}
		return isBranch && branch == value
	case "tag":
		return isTag && tag == value
	case "semver":
		if !isTag {
			return false
		}
		c, err := semver.NewConstraint(value)
		if err != nil {
			return false
		}
		v, err := semver.NewVersion(tag)
		return err == nil && c.Check(v)
	default: // commit: pinned, a push never moves it
		return false
	}
}

var errNoRepo = errors.New("no repository URL in the payload")
