package hub

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/server"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/testenv"
	tsync "tether.dev/tether/sync"
)

// TestNoCredentialsAtTheHub: a GitSync whose source URL and error carry a
// token, reported by a real agent over the channel, and the same reported
// by a client that does not redact (an old or hostile agent): the hub's
// page, API and database files hold no token.
func TestNoCredentialsAtTheHub(t *testing.T) {
	s, _, _ := newHub(t, Options{})
	addr := serveLikeTetherHub(t, s, server.ServerOptions{})
	base := "http://" + addr
	ctx := context.Background()
	agentTok, _ := s.Store().CreateToken(ctx, store.KindAgent, "prod")
	const secretURL = "https://oauth2:glpat-SECRET-1@git.example.com/team/app.git"

	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		Spec:       v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: secretURL, Ref: v1alpha1.GitRef{Branch: "main"}}},
	}
	gs.Status.LastAppliedRevision = "main@sha1:" + shaA
	gs.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: "FetchFailed",
		Message: "git " + secretURL + ": fetch: authentication failed"}}
	c, err := agent.New(agent.Options{HubURL: base, AgentName: "prod", Token: agentTok, Logger: s.log})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	tsync.ReportTo(c).Report(gs) // as the agent wires it: sync builds, the channel sends

	// An agent of its own that sends the token as is.
	legacyTok, _ := s.Store().CreateToken(ctx, store.KindAgent, "legacy")
	raw := rep("raw", 1, "failed", shaA, shaB)
	raw.SourceUrl = "https://glpat-SECRET-2@git.example.com/team/app.git"
	raw.Message = `Get "https://bot:SECRET-3@git.example.com/team/app.git/info/refs": 401`
	raw.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "False", Reason: "FetchFailed", Message: "ssh://git:SECRET-4@git.example.com/x"}}
	sendRaw(t, addr, legacyTok, "legacy", raw)

	waitUntil(t, "both reports are stored", func() bool {
		gs, err := s.Store().GitSyncs(ctx, "")
		return err == nil && len(gs) == 2
	})
	tok := apiToken(t, s)
	_, page := getAs(t, base+"/", tok)
	_, list := getAs(t, base+"/api/v1/gitsyncs", tok)
	_, commit := getAs(t, base+"/api/v1/commits/"+shaA, tok)
	shown := map[string]string{"page": page, "API gitsyncs": list, "API commit": commit}
	files, _ := filepath.Glob(filepath.Join(filepath.Dir(s.opt.DB), "*"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		shown["database file "+filepath.Base(f)] = string(b)
	}
	for where, text := range shown {
		for _, secret := range []string{"SECRET-1", "SECRET-2", "SECRET-3", "SECRET-4", "oauth2:"} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s holds %q", where, secret)
			}
		}
	}
	if !strings.Contains(list, "https://redacted@git.example.com/team/app.git") || !strings.Contains(page, "https://redacted@git.example.com/team/app.git") {
		t.Errorf("the redacted URL is not shown:\n%s", list)
	}
}

// sendRaw sends hello and one report on a channel stream of its own and
// waits for the Ack.
func sendRaw(t *testing.T, addr, token, agentName string, r *channelpb.SyncReport) {
	t.Helper()
	st := rawStream(t, addr, token)
	for _, m := range []*channelpb.AgentMessage{
		{Msg: &channelpb.AgentMessage_Hello{Hello: &channelpb.Hello{AgentName: agentName}}},
		{Msg: &channelpb.AgentMessage_Report{Report: r}},
	} {
		if err := st.Send(m); err != nil {
			t.Fatal(err)
		}
	}
	for {
		m, err := st.Recv()
		if err != nil {
			t.Fatalf("no ack: %v", err)
		}
		if m.GetAck() != nil {
			return
		}
	}
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	testenv.Eventually(t, 10*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("timed out waiting until %s", what)
		}
		return nil
	})
}

// TestCommitStatusSaysLittle: a commit status is public to whoever reads
// the repository: a failure says where and a short reason, never the
// error's text, object names or credentials.
func TestCommitStatusSaysLittle(t *testing.T) {
	s, _, _ := newHub(t, Options{})
	for _, tc := range []struct {
		name  string
		conds []*channelpb.Condition
		want  string
	}{
		{"ready reason", []*channelpb.Condition{{Type: "Ready", Status: "False", Reason: "ApplyFailed",
			Message: "Secret apps/db-password: admission webhook denied"}}, "failed on prod: ApplyFailed"},
		{"stalled wins", []*channelpb.Condition{{Type: "Ready", Status: "False", Reason: "Progressing"},
			{Type: "Stalled", Status: "True", Reason: "RenderFailed", Message: "kustomize: apps/x"}}, "failed on prod: RenderFailed"},
		{"reason that is not a word", []*channelpb.Condition{{Type: "Ready", Status: "False", Reason: "see https://u:p@h/x"}}, "failed on prod"},
		{"no conditions", nil, "failed on prod"},
	} {
		r := rep("web", 1, "failed", shaA, shaB)
		r.Message = "apply ConfigMap apps/cm-private: https://oauth2:TOKEN@h/x denied"
		r.Conditions = tc.conds
		st, ok := s.commitStatus("prod", r)
		if !ok || st.Description != tc.want {
			t.Errorf("%s: %q, %v; want %q", tc.name, st.Description, ok, tc.want)
		}
	}
}
