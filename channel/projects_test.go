package channel_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"tether.dev/tether/hub/store"
)

// TestTunnelScopedTokens: the hub's own project and user tokens on one
// agent. The hub lets a token with the proxy action through and names its
// project or user; the agent's tether-access ConfigMap decides: a granted
// project acts as itself, a project or user the owner did not list is
// refused by the agent.
func TestTunnelScopedTokens(t *testing.T) {
	r := newTunnelRig(t, rigOptions{})
	ctx := context.Background()
	st := r.hub.Store()
	for _, p := range []string{"shop", "billing"} {
		if err := st.CreateProject(ctx, p, []string{"https://git.example.com/" + p + "/app"}); err != nil {
			t.Fatal(err)
		}
	}
	scoped := func(kind, name string, actions ...string) string {
		tok, err := st.CreateScopedToken(ctx, kind, name, actions)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	shop := scoped(store.KindProject, "shop", "proxy")
	billing := scoped(store.KindProject, "billing", "proxy", "read")
	alice := scoped(store.KindUser, "alice", "proxy")
	bob := scoped(store.KindUser, "bob", "proxy")
	shopReader := scoped(store.KindProject, "shop", "read")
	r.setAccess("projects:\n- name: shop\nusers:\n- name: alice\n")

	kc := r.kubeconfig(shop)
	eventuallyRun(t, r, kc, "the agent read its access ConfigMap", "auth", "whoami")
	out := r.mustRun(t, kc, "auth", "whoami", "-o", `jsonpath={.status.userInfo.username} {.status.userInfo.groups}`)
	if !strings.HasPrefix(out, "tether:project:shop ") || !strings.Contains(out, "tether:projects") {
		t.Errorf("shop acts as %q", out)
	}
	out = r.mustRun(t, r.kubeconfig(alice), "auth", "whoami", "-o", `jsonpath={.status.userInfo.username}`)
	if out != "tether:user:alice" {
		t.Errorf("alice acts as %q", out)
	}
	for name, tok := range map[string]string{"billing (not granted)": billing, "bob (not granted)": bob} {
		code, body := r.proxyGet(tok, "/api/v1/namespaces", nil)
		if code != http.StatusForbidden || !strings.Contains(body, `"kind":"Status"`) {
			t.Errorf("%s: %d %s", name, code, body)
		}
	}
	if code, body := r.proxyGet(shopReader, "/api", nil); code != http.StatusForbidden || !strings.Contains(body, "lacks the proxy action") {
		t.Errorf("a shop token without proxy: %d %s", code, body)
	}
	// Revoked: refused by the hub.
	if _, err := st.RevokeTokens(ctx, store.KindProject, "shop"); err != nil {
		t.Fatal(err)
	}
	if code, _ := r.proxyGet(shop, "/api", nil); code != http.StatusUnauthorized {
		t.Errorf("a revoked project token: %d", code)
	}
}
