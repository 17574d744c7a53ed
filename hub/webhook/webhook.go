// Package webhook turns Git hosts' push webhooks (GitLab's, GitHub's and
// Gitea's) into "sync now" for every agent whose GitSyncs follow the pushed
// repository and ref, so a commit deploys in about a second rather than a
// poll interval. It never writes to the store.
//
// A request costs the hub little before it is known to be authentic: a
// secret that travels in a header is checked before the body is read, and
// a body is read (for its HMAC) within a size limit and a cap on how many
// are read at once.
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
	"net"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/Masterminds/semver/v3"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/giturl"
	"tether.dev/tether/hub/store"
)

// Finder lists the GitSyncs that follow the repositories named by keys
// (giturl.Key of their URLs); the hub's store implements it from an
// index, so a push costs one look-up however many GitSyncs there are.
type Finder interface {
	Followers(ctx context.Context, keys []string) ([]store.Follower, error)
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
	// "ignored", "unauthorized", "malformed", "toolarge", "busy",
	// "unconfigured", "error".
	Result func(provider, result string)
	// MaxBody bounds a payload; a larger one gets 413 (the next poll
	// deploys the push all the same). Defaults to DefaultMaxBody.
	MaxBody int64
	// MaxReading caps the bodies read at once, so that unauthenticated
	// requests hold at most MaxReading*MaxBody bytes. Defaults to 16.
	MaxReading int

	once    sync.Once
	reading chan struct{}
}

// DefaultMaxBody is 1 MiB. Real push payloads are a few kilobytes to some
// hundred: GitLab lists at most 20 commits in one, GitHub and Gitea at most
// 20 too (GitHub's 25 MB cap on payloads is for every event, releases and
// all). A body is read, and held, before its HMAC can be checked, so the
// cap is what an unauthenticated request may cost.
const DefaultMaxBody = 1 << 20

// readWait bounds how long a request waits for one of MaxReading slots.
const readWait = 5 * time.Second

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

// hook is what one endpoint checks: the headers before the body is read
// (a request that cannot be authentic is refused unread), then the body.
type hook struct {
	provider string
	headers  func(r *http.Request) bool
	body     func(r *http.Request, body []byte) bool
	parse    func(r *http.Request, body []byte) (*Push, string, error)
}

// serve is the shape of both endpoints: check the headers, read within
// limits, authenticate, parse, dispatch, answer.
func (rc *Receiver) serve(w http.ResponseWriter, r *http.Request, h hook) {
	fail := func(code int, result, msg string) {
		rc.count(h.provider, result)
		rc.log().Info("webhook refused", "provider", h.provider, "result", result, "reason", msg)
		if code == http.StatusUnauthorized || code == http.StatusRequestEntityTooLarge {
			// The body stays unread: don't wait for it.
			w.Header().Set("Connection", "close")
		}
		http.Error(w, msg, code)
	}
	if len(rc.Secret) == 0 {
		fail(http.StatusServiceUnavailable, "unconfigured", "webhooks are off: the hub has no --webhook-secret-file")
		return
	}
	if !h.headers(r) {
		fail(http.StatusUnauthorized, "unauthorized", "bad or missing webhook secret")
		return
	}
	body, code, err := rc.read(r)
	if err != nil {
		result := "malformed"
		switch code {
		case http.StatusRequestEntityTooLarge:
			result = "toolarge"
		case http.StatusServiceUnavailable:
			result = "busy"
		}
		fail(code, result, err.Error())
		return
	}
	if !h.body(r, body) {
		fail(http.StatusUnauthorized, "unauthorized", "bad or missing webhook secret")
		return
	}
	rc.handle(w, r, h, body, fail)
}

// read reads the body within MaxBody, holding one of MaxReading slots
// while it does; on failure it returns the status to answer with.
func (rc *Receiver) read(r *http.Request) ([]byte, int, error) {
	rc.once.Do(func() {
		n := rc.MaxReading
		if n <= 0 {
			n = 16
		}
		rc.reading = make(chan struct{}, n)
	})
	limit := rc.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	if r.ContentLength > limit {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("payload of %d bytes, over the hub's limit of %d", r.ContentLength, limit)
	}
	wait := time.NewTimer(readWait)
	defer wait.Stop()
	select {
	case rc.reading <- struct{}{}:
		defer func() { <-rc.reading }()
	case <-wait.C:
		return nil, http.StatusServiceUnavailable, errors.New("too many webhooks at once; retry later")
	case <-r.Context().Done():
		return nil, http.StatusServiceUnavailable, errors.New("request cancelled")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return nil, http.StatusRequestTimeout, errors.New("payload not received in time")
	case err != nil:
		return nil, http.StatusBadRequest, errors.New("payload unreadable")
	case int64(len(body)) > limit:
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("payload over the hub's limit of %d bytes", limit)
	}
	return body, 0, nil
}

// handle parses an authentic payload and dispatches the push.
func (rc *Receiver) handle(w http.ResponseWriter, r *http.Request, h hook, body []byte, fail func(code int, result, msg string)) {
	provider, parse := h.provider, h.parse
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
	keys := make([]string, 0, len(p.URLs))
	for _, u := range p.URLs {
		keys = append(keys, giturl.Key(u))
	}
	all, err := rc.Finder.Followers(ctx, keys)
	if err != nil {
		return 0, 0, err
	}
	type target struct{ agent, url string }
	targets := map[target]bool{}
	matched := 0
	for _, g := range all {
		if !Follows(g.Ref, p.Ref, p.DefaultBranch) {
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
