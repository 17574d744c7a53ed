package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// benchWebhook measures the webhook path under a steady load: GitSyncs
// with one repository each (10 per namespace), commits at a fixed rate
// spread round-robin over them, each announced by GitHub's signed push
// webhook to `tether hub`, which sends "sync now" down the channel to
// `tether agent`. Commits are sent on schedule whether or not the previous
// one has landed (open loop), and each is timed from after `git commit`
// (before the webhook POST) until the API server's watch shows its value.
// The GitSyncs poll once an hour, so only the webhook moves them.
func (e *env) benchWebhook(ctx context.Context, o options) ([]row, error) {
	h, err := e.ensureHub(ctx)
	if err != nil {
		return nil, err
	}
	g := o.hookSyncs
	step("webhook: %d repositories and GitSyncs", g)
	repos := make([]*testenv.GitRepo, g)
	var syncs []*v1alpha1.GitSync
	for i := range repos {
		if repos[i], err = e.git.CreateRepo(fmt.Sprintf("hook/app-%03d", i)); err != nil {
			return nil, err
		}
		if _, err := repos[i].Commit(hookConfigMap(i, 0), "v 0"); err != nil {
			return nil, err
		}
		ns := fmt.Sprintf("hook-%d", i/10)
		if i%10 == 0 {
			if err := e.k.tenant(ctx, ns, false); err != nil {
				return nil, err
			}
		}
		gs := gitSync(fmt.Sprintf("app-%03d", i), ns, repos[i].URL, "./app", time.Hour)
		gs.Labels = map[string]string{setLabel: "webhook"}
		syncs = append(syncs, gs)
	}
	agent, err := e.startAgent(ctx, "webhook", h.agentArgs()...)
	if err != nil {
		return nil, err
	}
	defer agent.stop()
	if _, err := e.k.createAllReady(ctx, syncs, "webhook"); err != nil {
		return nil, err
	}
	if err := h.knows(syncs); err != nil {
		return nil, err
	}

	n := o.hookCommits
	every := time.Minute / time.Duration(o.hookRate)
	step("webhook: %d commits, one every %s, over %d GitSyncs", n, every, g)
	var (
		mu      sync.Mutex
		started = make([]time.Time, n)
		took    = make([]time.Duration, n)
		landed  int
		done    = make(chan error, 2)
	)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		done <- e.k.observe(wctx, &corev1.ConfigMapList{}, func(obj client.Object) bool {
			cm := obj.(*corev1.ConfigMap)
			repo, err1 := strconv.Atoi(strings.TrimPrefix(cm.Name, "settings-"))
			v, err2 := strconv.Atoi(cm.Data["v"])
			if err1 != nil || err2 != nil {
				return false
			}
			now := time.Now()
			mu.Lock()
			defer mu.Unlock()
			// Commit i carries value i+1 to repository i mod g; a value
			// also lands every older commit of its repository that a
			// newer one overtook.
			for i := repo; i < v && i < n; i += g {
				if !started[i].IsZero() && took[i] == 0 {
					took[i] = now.Sub(started[i])
					landed++
				}
			}
			return landed == n
		}, client.MatchingLabels{"bench.tether.dev/webhook": "1"})
	}()
	t0 := time.Now()
	go func() {
		for i := 0; i < n; i++ {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * every)))
			r := i % g
			sha, err := repos[r].Commit(hookConfigMap(r, i+1), fmt.Sprintf("v %d", i+1))
			if err != nil {
				done <- err
				return
			}
			mu.Lock()
			started[i] = time.Now()
			mu.Unlock()
			if _, err := postPush(h, repos[r].URL, sha); err != nil {
				done <- err
				return
			}
		}
	}()
	if err := <-done; err != nil {
		return nil, err
	}
	took = took[:landed]
	return []row{{
		what:   fmt.Sprintf("commit → webhook → applied, p99, %d commits/min over %d GitSyncs", o.hookRate, g),
		tether: round(p(took, 99)),
		target: targetAt("p99 < 1 s", g, 100, p(took, 99) < time.Second),
		note: fmt.Sprintf("%d commits: p50 %s, p95 %s, max %s; hub and agent are separate processes; timed from after `git commit`, before the webhook POST",
			len(took), round(median(took)), round(p(took, 95)), round(p(took, 100))),
	}}, e.dropAll(ctx, agent, synced{})
}

// setLabel marks the GitSyncs of one part, so a watch sees only those.
const setLabel = "bench.tether.dev/set"

func hookConfigMap(repo, v int) map[string]string {
	return map[string]string{"app/cm.yaml": fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: settings-%03d
  labels:
    bench.tether.dev/webhook: "1"
data:
  v: "%d"
`, repo, v)}
}

func (e *env) ensureHub(ctx context.Context) (*hub, error) {
	if e.hub != nil {
		return e.hub, nil
	}
	h, err := e.startHub(ctx)
	e.hub = h
	return h, err
}

// postPush sends GitHub's push event for sha on main, signed as GitHub
// signs it, and returns how many GitSyncs the hub matched (an error if
// none).
func postPush(h *hub, repoURL, sha string) (int, error) {
	body, _ := json.Marshal(map[string]any{
		"ref": "refs/heads/main", "after": sha,
		"repository": map[string]any{"clone_url": repoURL, "default_branch": "main"},
	})
	mac := hmac.New(sha256.New, []byte(h.secret))
	mac.Write(body)
	req, err := http.NewRequest(http.MethodPost, h.url+"/hooks/github", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var got struct {
		GitSyncs int `json:"gitsyncs"`
	}
	if resp.StatusCode != http.StatusAccepted || json.Unmarshal(b, &got) != nil || got.GitSyncs == 0 {
		return 0, fmt.Errorf("webhook for %s: %s %s", repoURL, resp.Status, b)
	}
	return got.GitSyncs, nil
}

// knows waits until the hub shows every GitSync synced: it dispatches a
// push only to the GitSyncs its agents have reported.
func (h *hub) knows(syncs []*v1alpha1.GitSync) error {
	for _, gs := range syncs {
		badge := h.url + "/badge/bench/" + gs.Namespace + "/" + gs.Name + ".svg"
		if err := pollEvery10ms(time.Minute, func() bool { return badgeShows(badge, "synced") }); err != nil {
			return fmt.Errorf("hub badge of %s/%s: %w", gs.Namespace, gs.Name, err)
		}
	}
	return nil
}

func badgeShows(url, text string) bool {
	resp, err := http.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return bytes.Contains(b, []byte(">"+text))
}

// pollEvery10ms checks cond every 10 ms until it holds or limit passes.
func pollEvery10ms(limit time.Duration, cond func() bool) error {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
