package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/hub"
	"tether.dev/tether/internal/testenv"
)

// TestBrowser renders the hub's page and both badges in headless Chromium
// after a sync: the page a person opens must name the agent, the GitSync
// and the commit, and the screenshots must show something. Without a
// session the page is the login form and names nothing.
func TestBrowser(t *testing.T) {
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha := commit(t, repo, "one")
	h := startHub(t, dir, hubOptions{})
	startAgent(t, dir, h.url, "browser-agent", h.token(t, "agent.token", "--agent", "browser-agent"))
	ns := newNamespace(t, "browser")
	createGitSync(t, ns, "web-app", repo.URL, "main", time.Hour)
	waitApplied(t, ns, "one")
	badge := h.badgeURL("browser-agent", ns, "web-app")
	waitBadge(t, badge, "synced "+short(sha))
	waitBadge(t, h.commitBadgeURL(sha), "browser-agent/"+ns+"/web-app live")

	anonymous := headless(t, h.url+"/", "--dump-dom")
	if !strings.Contains(anonymous, `name="token"`) || strings.Contains(anonymous, "browser-agent") || strings.Contains(anonymous, short(sha)) {
		t.Errorf("the hub page without a session is not the bare login form:\n%s", anonymous)
	}
	keep(t, screenshot(t, dir, "hub-login", h.url+"/login", 1200, 500), "hub-login.png")

	page := signedIn(t, h)
	dom := headless(t, page+"/", "--dump-dom")
	for _, want := range []string{"browser-agent", "web-app", ns + "/web-app", short(sha), "connected", "Sign out"} {
		if !strings.Contains(dom, want) {
			t.Errorf("the hub page's DOM lacks %q:\n%s", want, dom)
		}
	}
	if !strings.Contains(dom, `src="`+strings.TrimPrefix(badge, h.url+"/")+`"`) {
		t.Errorf("the hub page does not show the GitSync's badge %s", badge)
	}

	keep(t, screenshot(t, dir, "hub-page", page+"/", 1200, 800), "hub-page.png")
	keep(t, screenshot(t, dir, "gitsync-badge", badge, 1200, 800), "gitsync-badge.png")
	keep(t, screenshot(t, dir, "commit-badge", h.commitBadgeURL(sha), 1200, 800), "commit-badge.png")
}

// signedIn signs in at the hub's login form with its API token, as a
// person does, and returns the address of a proxy to the hub that carries
// that session's cookie: Chromium has no flag to fill in a form or to
// start with a cookie.
func signedIn(t *testing.T, h *hubProc) string {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.PostForm(h.url+"/login", url.Values{"token": {h.apiToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	hub, _ := url.Parse(h.url)
	cookies := jar.Cookies(hub)
	if resp.StatusCode != http.StatusSeeOther || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, cookies)
	}
	proxy := httputil.NewSingleHostReverseProxy(hub)
	direct := proxy.Director
	proxy.Director = func(r *http.Request) {
		direct(r)
		r.AddCookie(cookies[0])
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: proxy}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String()
}

// TestGitSyncPageLiveObjects: the GitSync page shows the GitSync's objects
// now, fetched through the tunnel from the real `tether agent`'s drift
// watch cache: kind, namespace, name, kstatus health and drift (a hand
// edit under drift mode detect shows as Drifted with its path), in
// Chromium. A hub user whom the agent's ConfigMap grants but whose
// identity the cluster's RBAC does not let get the GitSync sees the
// agent's refusal and no object; the hub's proxy does not reach the
// agent's own path at all; with the agent stopped the page says it is
// not connected instead of failing.
func TestGitSyncPageLiveObjects(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/live")
	if err != nil {
		t.Fatal(err)
	}
	// No controller fills in the Deployment's status in this suite, so
	// kstatus finds it InProgress; a ConfigMap has no status: Current.
	files := configMap("one")
	files["app/web.yaml"] = webDeployment
	if _, err := repo.Commit(files, "one"); err != nil {
		t.Fatal(err)
	}
	h := startHub(t, dir, hubOptions{})
	agentNS := "tether-live-" + randomHex(t, 4)
	// The API token's name is "e2e": the page asks as user "e2e".
	access := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tunnel.AccessConfigMap, Namespace: agentNS},
		Data: map[string]string{tunnel.AccessKey: "users:\n- name: e2e\n- name: mallory\n"}}
	agentNamespace := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: agentNS}}
	if err := suite.k8s.Create(ctx, agentNamespace); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.k8s.Delete(context.Background(), agentNamespace) })
	if err := suite.k8s.Create(ctx, access); err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, dir, h.url, "live-agent", h.token(t, "agent.token", "--agent", "live-agent"), "--namespace", agentNS)
	ns := newNamespace(t, "live")
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: "web-app", Namespace: ns},
		Spec: v1alpha1.GitSyncSpec{
			Source: v1alpha1.GitSource{URL: repo.URL, Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:   "./app", Interval: metav1.Duration{Duration: time.Hour},
			Drift: v1alpha1.DriftSpec{Mode: v1alpha1.DriftDetect},
		},
	}
	if err := suite.k8s.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = suite.k8s.Delete(context.Background(), gs) })
	waitApplied(t, ns, "one")
	// Only e2e's identity may get GitSyncs in ns; mallory's may not.
	readGitSyncs(t, ns, tunnel.UserPrefix+"e2e")

	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "settings"}}
	if err := suite.k8s.Patch(ctx, cm, client.RawPatch(types.MergePatchType, []byte(`{"data":{"v":"by-hand"}}`)), client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	page := signedIn(t, h)
	gitsyncPage := page + "/gitsyncs/live-agent/" + ns + "/web-app"
	eventually(t, 2*time.Minute, "the page shows settings drifted at /data/v", func() (bool, string) {
		_, body, _, err := get(gitsyncPage)
		live := liveTable(body)
		return err == nil && strings.Contains(live, "<td>settings</td>") && strings.Contains(live, "Drifted") &&
			strings.Contains(live, "/data/v") && strings.Contains(live, "Current"), live
	})
	dom := headless(t, gitsyncPage, "--dump-dom")
	live := liveTable(dom)
	for _, want := range []string{"ConfigMap", ns, "<td>settings</td>", "Current", "Drifted", "/data/v", "apps/Deployment", "<td>web</td>", "InProgress"} {
		if !strings.Contains(live, want) {
			t.Errorf("Chromium's live objects table lacks %q:\n%s", want, live)
		}
	}
	keep(t, screenshot(t, dir, "gitsync-live", gitsyncPage, 1200, 900), "gitsync-live-objects.png")

	// mallory may read the hub's page, is granted by the agent's
	// ConfigMap, but the cluster's RBAC does not let her get the GitSync.
	mallory := readFile(t, h.token(t, "mallory.token", "--user", "mallory", "--actions", "read"))
	code, body, _, err := getWith(h.url+"/gitsyncs/live-agent/"+ns+"/web-app", strings.TrimSpace(mallory))
	live = liveTable(body)
	if err != nil || code != 200 || !strings.Contains(live, "does not let you read") || strings.Contains(live, "<td>settings</td>") {
		t.Errorf("mallory's page: %d %v, live table:\n%s", code, err, live)
	}
	// The proxy never reaches the agent's own path, whatever the token.
	code, body, _, err = getWith(h.url+"/k8s-proxy/live-agent/tether/v1/gitsyncs/"+ns+"/web-app/objects", h.apiToken)
	if err != nil || code != 404 || strings.Contains(body, "settings") {
		t.Errorf("the agent's path through the proxy: %d %v %s", code, err, body)
	}

	if err := a.stop(); err != nil {
		t.Logf("agent stopped: %v", err)
	}
	h.waitConnected(t, "live-agent", false)
	_, body, _, err = get(gitsyncPage)
	live = liveTable(body)
	if err != nil || !strings.Contains(live, "is not connected") {
		t.Errorf("with the agent stopped the page's live table is:\n%s (%v)", live, err)
	}
	keep(t, screenshot(t, dir, "gitsync-offline", gitsyncPage, 1200, 900), "gitsync-live-offline.png")
}

// webDeployment is a Deployment of one pod whose image does not exist
// (no kubelet here pulls it anyway).
const webDeployment = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.invalid/web:does-not-exist
`

// liveTable is the page's live objects table, or "".
func liveTable(page string) string {
	_, rest, ok := strings.Cut(page, `id="live"`)
	if !ok {
		return ""
	}
	table, _, _ := strings.Cut(rest, "</table>")
	return table
}

// readGitSyncs lets user get GitSyncs in ns, and nothing else.
func readGitSyncs(t *testing.T, ns, user string) {
	t.Helper()
	ctx := context.Background()
	role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-gitsyncs", Namespace: ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{v1alpha1.GroupVersion.Group}, Resources: []string{"gitsyncs"}, Verbs: []string{"get"}}}}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "read-gitsyncs", Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: role.Name},
		Subjects: []rbacv1.Subject{{APIGroup: rbacv1.GroupName, Kind: rbacv1.UserKind, Name: user}}}
	for _, o := range []client.Object{role, rb} {
		if err := suite.k8s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
}

// TestWarningEventReachesPage: a Warning that a real controller records
// for a Deployment a GitSync manages reaches the hub's GitSync page. Its
// own control plane runs kube-controller-manager (the suite's has none):
// the ReplicaSet controller tries to create the Deployment's pod, the
// namespace's ResourceQuota (pods: 0, as a platform team sets for a
// tenant) makes the API server refuse it, and the controller records
// Warning FailedCreate on the ReplicaSet. The real `tether agent` sees
// that event, traces the ReplicaSet to the Deployment and the Deployment
// to the GitSync, and sends it up the channel; the hub's events API and
// the page (in Chromium) show it. There is no kubelet, so an image pull
// failure (ImagePullBackOff) cannot happen here: the Deployment's image
// does not exist, but it is the quota that fails it.
func TestWarningEventReachesPage(t *testing.T) {
	ctx := context.Background()
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{ControllerManager: true, KubeconfigDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			t.Logf("stop control plane: %v", err)
		}
	})
	c, err := client.New(cp.Config, client.Options{Scheme: suite.k8s.Scheme()})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/quota")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Commit(map[string]string{"app/web.yaml": webDeployment}, "web"); err != nil {
		t.Fatal(err)
	}
	h := startHub(t, dir, hubOptions{})
	a := &agentProc{dir: dir, name: "agent", argv: []string{suite.tether, "agent", "--kubeconfig", cp.KubeconfigPath,
		"--cache-dir", filepath.Join(dir, "agent-cache"), "--leader-elect=false",
		"--default-service-account", testenv.DeployerAccount,
		"--hub-url", h.url, "--agent-name", "quota-agent", "--token-file", h.token(t, "agent.token", "--agent", "quota-agent")}}
	a.start(t)
	ns := testenv.NewDeployerNamespace(t, c, "quota", "cluster-admin", false)
	quota := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "no-pods", Namespace: ns},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("0")}}}
	if err := c.Create(ctx, quota); err != nil {
		t.Fatal(err)
	}
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: "web-app", Namespace: ns},
		Spec: v1alpha1.GitSyncSpec{
			Source: v1alpha1.GitSource{URL: repo.URL, Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:   "./app", Interval: metav1.Duration{Duration: time.Hour},
		},
	}
	created := time.Now()
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}

	api := h.url + "/api/v1/agents/quota-agent/gitsyncs/" + ns + "/web-app/events"
	var seen string
	eventually(t, 2*time.Minute, "the hub has Warning FailedCreate of web's ReplicaSet", func() (bool, string) {
		code, body, _, err := getWith(api, h.apiToken)
		if err != nil || code != http.StatusOK {
			return false, fmt.Sprint(code, body, err)
		}
		var got struct{ Events []hub.EventJSON }
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			return false, err.Error()
		}
		for _, e := range got.Events {
			if e.Reason == "FailedCreate" && e.Kind == "ReplicaSet" && strings.HasPrefix(e.Name, "web-") && strings.Contains(e.Message, "exceeded quota: no-pods") {
				seen = e.Message
				return true, ""
			}
		}
		return false, body
	})
	t.Logf("FailedCreate at the hub %s after the GitSync was created: %s", time.Since(created).Round(time.Millisecond), seen)

	page := signedIn(t, h) + "/gitsyncs/quota-agent/" + ns + "/web-app"
	dom := headless(t, page, "--dump-dom")
	_, events, _ := strings.Cut(dom, `id="events"`)
	events, _, _ = strings.Cut(events, "</table>")
	for _, want := range []string{"ReplicaSet", "FailedCreate", "exceeded quota: no-pods"} {
		if !strings.Contains(events, want) {
			t.Errorf("the page's events table lacks %q:\n%s", want, events)
		}
	}
	keep(t, screenshot(t, dir, "gitsync-events", page, 1200, 1400), "gitsync-warning-event.png")
}
