package e2e

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/channel/tunnel"
	"tether.dev/tether/internal/pgtest"
)

// replicaSet is three `tether hub` processes on one PostgreSQL behind a
// round-robin front, an agent reporting through the front, and a Git
// host that takes commit statuses.
type replicaSet struct {
	pg       *pgtest.Server
	db       string
	hubs     []*hubProc
	front    *front
	statuses *statusServer
	agent    *agentProc
	repo     string
	ns       string
	agentNS  string
	// url is the front's: the one address agents and people use.
	url                       string
	certFile, keyFile, caFile string
}

// startReplicaSet starts the hubs (the first one started takes the
// leader's lease), the front, whose first connection goes to hubs[first],
// and the agent "prod" through the front; its GitSync follows repo's main
// and polls once an hour, so only a webhook or a resync makes it sync.
func startReplicaSet(t *testing.T, repoURL string, first int) *replicaSet {
	t.Helper()
	rs := &replicaSet{pg: pgtest.Start(t), repo: repoURL}
	rs.db = rs.pg.URL(t)
	rs.statuses = newStatusServer(t, "gh-status-token")
	shared := t.TempDir()
	writeFile(t, filepath.Join(shared, "github-token"), "gh-status-token\n")
	secret := randomHex(t, 16)
	writeFile(t, filepath.Join(shared, "webhook-secret"), secret+"\n")
	var addrs []string
	for i := range 3 {
		h := &hubProc{dir: t.TempDir(), db: rs.db, secret: []byte(secret)}
		addr := freeAddr(t)
		h.argv = []string{suite.tether, "hub", "--db", rs.db, "--shutdown-timeout", "5s",
			"--webhook-secret-file", filepath.Join(shared, "webhook-secret"),
			"--github-api-url", rs.statuses.URL, "--github-token-file", filepath.Join(shared, "github-token"),
			"--peer-url", "http://" + addr, "--log-level", "debug"}
		if i == 0 {
			h.apiToken = strings.TrimSpace(readFile(t, h.token(t, "api.token", "--api", "--name", "e2e")))
		} else {
			h.apiToken = rs.hubs[0].apiToken
		}
		h.start(t, addr)
		rs.hubs = append(rs.hubs, h)
		addrs = append(addrs, addr)
	}
	rs.certFile, rs.keyFile, rs.caFile = tunnelCert(t, shared, "127.0.0.1")
	rs.front = newFront(t, rs.certFile, rs.keyFile, first, addrs...)
	rs.url = "https://" + rs.front.addr
	rs.agentNS = newNamespace(t, "replicas-agent")
	rs.ns = newNamespace(t, "replicas")
	tok := rs.hubs[0].token(t, "prod.token", "--agent", "prod")
	rs.agent = startAgent(t, t.TempDir(), rs.url, "prod", tok, "--namespace", rs.agentNS, "--ca-file", rs.caFile)
	createGitSync(t, rs.ns, "app", repoURL, "main", time.Hour)
	return rs
}

// freeAddr is a free 127.0.0.1 port, for a hub that must know its own
// address (its --peer-url) before it listens.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// holder waits until the database names a live replica as holding
// agent prod's stream, other than not (-1: any), and returns its index.
func (rs *replicaSet) holder(t *testing.T, not int) int {
	t.Helper()
	return rs.named(t, not, "a replica to hold agent prod", func(db *sql.DB) (string, error) {
		var id string
		err := db.QueryRowContext(context.Background(),
			`SELECT replica FROM agents WHERE name = 'prod' AND connected = 1`).Scan(&id)
		return id, err
	})
}

// named waits until the replica id that read finds is a live hub's other
// than not (-1: any), and returns its index. A replica's id is
// host/pid/random.
func (rs *replicaSet) named(t *testing.T, not int, what string, read func(db *sql.DB) (string, error)) int {
	t.Helper()
	db, err := sql.Open("pgx", rs.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := -1
	eventually(t, 2*time.Minute, what, func() (bool, string) {
		id, err := read(db)
		if err != nil {
			return false, err.Error()
		}
		parts := strings.Split(id, "/")
		if len(parts) != 3 {
			return false, "replica id " + id
		}
		pid, _ := strconv.Atoi(parts[1])
		for i, h := range rs.hubs {
			if h.running() && h.cmd.Process.Pid == pid && i != not {
				got = i
				return true, ""
			}
		}
		return false, "held by " + id
	})
	return got
}

// grantReads lets the hub's API client user read ConfigMaps in the
// app's namespace through the tunnel, as the cluster owner would.
func (rs *replicaSet) grantReads(t *testing.T, user string) {
	t.Helper()
	mustCreate(t, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: tunnel.AccessConfigMap, Namespace: rs.agentNS},
		Data: map[string]string{tunnel.AccessKey: "users:\n- name: " + user + "\n"}})
	mustCreate(t, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "read-configmaps", Namespace: rs.ns},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}})
	mustCreate(t, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user + "-reads", Namespace: rs.ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "read-configmaps"},
		Subjects: []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: "tether:user:" + user}}})
}

// kubectl runs the pinned kubectl against the front's
// /k8s-proxy/prod/, the front pinned to replica i.
func (rs *replicaSet) kubectl(t *testing.T, i int, args ...string) (string, error) {
	t.Helper()
	h := rs.hubs[i]
	kubeconfig := filepath.Join(h.dir, "e2e.kubeconfig")
	writeFile(t, filepath.Join(h.dir, "e2e.token"), h.apiToken+"\n")
	writeFile(t, kubeconfig, mustRun(t, suite.tether, "hub", "kubeconfig", "--hub-url", rs.url, "--agent", "prod",
		"--token-file", filepath.Join(h.dir, "e2e.token"), "--ca-file", rs.caFile))
	rs.front.pin(i)
	defer rs.front.pin(-1)
	return run(append([]string{kubectlBin(t), "--kubeconfig", kubeconfig, "--request-timeout", "60s"}, args...)...)
}

// webhook posts a signed push of sha to hub h and checks that it was
// dispatched to the one GitSync.
func (rs *replicaSet) webhook(t *testing.T, h *hubProc, before, sha string) {
	t.Helper()
	code, body := h.hook(t, githubPush(rs.repo, "main", before, sha), true)
	if code != http.StatusAccepted || !strings.Contains(body, `"dispatched":1`) {
		t.Fatalf("webhook at %s: %d %s, want 202 with one GitSync dispatched", h.url, code, body)
	}
}

// TestHubReplicas runs three hubs on one PostgreSQL. The agent's stream
// lands on one of them (C); a webhook arrives at another (A) and the
// agent applies the commit, though it polls only hourly; kubectl reaches
// the cluster through the third (B); every replica shows the same agent,
// badge and commit; each commit status is posted once.
func TestHubReplicas(t *testing.T) {
	git := newGitServer(t)
	repo, err := git.CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha1 := commit(t, repo, "one")
	rs := startReplicaSet(t, repo.URL, 1)
	waitApplied(t, rs.ns, "one")
	c := rs.holder(t, -1)
	a, b := rs.hubs[(c+1)%3], (c+2)%3
	t.Logf("agent on replica %d, webhook to %d, kubectl through %d", c, (c+1)%3, (c+2)%3)
	statusCtx := "tether/prod/" + rs.ns + "/app"
	rs.statuses.waitState(t, sha1, statusCtx, "success")

	sha2 := commit(t, repo, "two")
	rs.webhook(t, a, sha1, sha2)
	waitApplied(t, rs.ns, "two")
	rs.statuses.waitState(t, sha2, statusCtx, "success")

	for i, h := range rs.hubs {
		h.waitConnected(t, "prod", true)
		waitBadge(t, h.badgeURL("prod", rs.ns, "app"), "synced "+short(sha2))
		if st, err := h.commit(sha2); err != nil || len(st.Environments) != 1 {
			t.Errorf("replica %d: GET /api/v1/commits/%s: %+v, %v", i, short(sha2), st, err)
		}
	}

	// The API's resync, at A too: the agent logs the "sync now".
	syncNows := rs.agent.count("sync now from the hub")
	code, body := a.post(t, "/api/v1/agents/prod/gitsyncs/"+rs.ns+"/app/resync")
	if code != http.StatusAccepted {
		t.Fatalf("resync at replica A: %d %s", code, body)
	}
	rs.agent.waitLog(t, "sync now from the hub", syncNows+1, time.Minute)

	rs.grantReads(t, "e2e")
	eventually(t, time.Minute, "kubectl get through replica B", func() (bool, string) {
		out, err := rs.kubectl(t, b, "get", "configmap", "settings", "-n", rs.ns, "-o", "jsonpath={.data.v}")
		if err == nil && out == "two" {
			return true, ""
		}
		return false, fmt.Sprint(out, err)
	})
	if out, err := rs.kubectl(t, b, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"); err != nil || out != "tether:user:e2e" {
		t.Errorf("whoami through replica B: %v %q", err, out)
	}
	if out, err := rs.kubectl(t, b, "get", "secrets", "-n", rs.ns); err == nil || !strings.Contains(out, "Forbidden") && !strings.Contains(out, "cannot list") {
		t.Errorf("through replica B, a read RBAC does not grant: %v %s", err, out)
	}
	// The resync ran the commit again: running, then success again, but
	// never one state twice in a row, as two replicas posting would.
	for _, sha := range []string{sha1, sha2} {
		var states []string
		for _, st := range rs.statuses.find(sha, statusCtx) {
			if len(states) > 0 && states[len(states)-1] == st.State {
				t.Errorf("commit %s: status %s posted twice in a row: %+v", short(sha), st.State, rs.statuses.find(sha, statusCtx))
			}
			states = append(states, st.State)
		}
	}
}

// post is an authenticated POST to hub h with the API token.
func (h *hubProc) post(t *testing.T, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, h.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+h.apiToken)
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// countState is how many statuses with state were accepted for sha and
// context.
func countState(s *statusServer, sha, context, state string) int {
	n := 0
	for _, st := range s.find(sha, context) {
		if st.State == state {
			n++
		}
	}
	return n
}

// TestHubReplicaKilled kills the replica that holds the agent's stream
// (SIGKILL: no goodbye) while the agent applies a commit a webhook asked
// for. The agent reconnects through the front to another replica within
// its backoff and sends the report the dead one never acknowledged; every
// live replica shows the commit, its commit status is posted once, and
// the next webhook reaches the agent on its new replica.
func TestHubReplicaKilled(t *testing.T) { testReplicaKilled(t, 1) }

// TestHubLeaderReplicaKilled is TestHubReplicaKilled with the agent on
// the leader: the statuses queued while the lease has not expired yet
// wait in the database's outbox, and the new leader posts them.
func TestHubLeaderReplicaKilled(t *testing.T) { testReplicaKilled(t, 0) }

// testReplicaKilled kills the replica the agent lands on first.
func testReplicaKilled(t *testing.T, first int) {
	git := newGitServer(t)
	repo, err := git.CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha1 := commit(t, repo, "one")
	rs := startReplicaSet(t, repo.URL, first)
	statusCtx := "tether/prod/" + rs.ns + "/app"
	waitApplied(t, rs.ns, "one")
	c := rs.holder(t, -1)
	rs.statuses.waitState(t, sha1, statusCtx, "success")
	if c != first {
		t.Fatalf("the agent landed on replica %d, not on %d where the front sent it first", c, first)
	}
	other := rs.hubs[(c+1)%3]

	sha2 := commit(t, repo, "two")
	syncNows := rs.agent.count("sync now from the hub")
	rs.webhook(t, other, sha1, sha2)
	rs.agent.waitLog(t, "sync now from the hub", syncNows+1, time.Minute)
	rs.hubs[c].kill()
	t.Logf("replica %d (holding the agent) killed", c)

	n := rs.holder(t, c)
	t.Logf("the agent reconnected to replica %d", n)
	waitApplied(t, rs.ns, "two")
	for i, h := range rs.hubs {
		if i == c {
			continue
		}
		h.waitConnected(t, "prod", true)
		waitBadge(t, h.badgeURL("prod", rs.ns, "app"), "synced "+short(sha2))
	}
	rs.statuses.waitState(t, sha2, statusCtx, "success")

	sha3 := commit(t, repo, "three")
	rs.webhook(t, rs.hubs[3-c-n], sha2, sha3) // the live one without the agent
	waitApplied(t, rs.ns, "three")
	rs.statuses.waitState(t, sha3, statusCtx, "success")
	for _, sha := range []string{sha1, sha2, sha3} {
		if got := countState(rs.statuses, sha, statusCtx, "success"); got != 1 {
			t.Errorf("commit %s: %d success statuses posted, want 1: %+v", short(sha), got, rs.statuses.find(sha, statusCtx))
		}
	}
	if d := rs.statuses.duplicates(); len(d) > 0 {
		t.Errorf("statuses posted more than once: %v", d)
	}
}

// leader waits until a live hub holds the leader's lease, other than not
// (-1: any), and returns its index.
func (rs *replicaSet) leader(t *testing.T, not int) int {
	t.Helper()
	return rs.named(t, not, "a live replica to lead", func(db *sql.DB) (string, error) {
		var id string
		err := db.QueryRowContext(context.Background(), `SELECT holder FROM leases WHERE name = 'hub-leader' AND expires > $1`,
			time.Now().UnixMilli()).Scan(&id)
		return id, err
	})
}

// TestHubLeaderKilledMidPost kills the leader after the Git host took its
// POST of a commit status and before the answer came back: the status is
// on the host, not recorded in the database. The next leader takes the
// row over, asks the host for the commit's statuses, finds the state and
// does not post it again; the next commit's status is posted as usual.
func TestHubLeaderKilledMidPost(t *testing.T) {
	git := newGitServer(t)
	repo, err := git.CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha1 := commit(t, repo, "one")
	rs := startReplicaSet(t, repo.URL, 1)
	statusCtx := "tether/prod/" + rs.ns + "/app"
	waitApplied(t, rs.ns, "one")
	rs.statuses.waitState(t, sha1, statusCtx, "success")
	l := rs.leader(t, -1)
	c := rs.holder(t, -1)
	if l == c {
		t.Fatalf("the agent is on the leader (%d): want it elsewhere, so killing the leader leaves it be", l)
	}
	t.Logf("leader %d, agent on %d", l, c)

	sha2 := commit(t, repo, "two")
	held := rs.statuses.hold(sha2, statusCtx, "success")
	rs.webhook(t, rs.hubs[c], sha1, sha2)
	waitApplied(t, rs.ns, "two")
	select {
	case <-held:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the leader never posted success for %s: %+v", short(sha2), rs.statuses.find(sha2, statusCtx))
	}
	rs.hubs[l].kill()
	t.Logf("leader %d killed with its POST of %s success unanswered", l, short(sha2))

	n := rs.leader(t, l)
	t.Logf("replica %d leads", n)
	db, err := sql.Open("pgx", rs.db)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	eventually(t, 3*time.Minute, "the dead leader's status finished by the next", func() (bool, string) {
		var rows int
		if err := db.QueryRow(`SELECT count(*) FROM status_outbox WHERE sha = $1`, sha2).Scan(&rows); err != nil {
			return false, err.Error()
		}
		var state string
		db.QueryRow(`SELECT state FROM commit_statuses WHERE sha = $1 AND context = $2`, sha2, statusCtx).Scan(&state)
		return rows == 0 && state == "success", fmt.Sprintf("outbox rows %d, recorded %q", rows, state)
	})
	if rs.statuses.getCount(sha2) == 0 {
		t.Error("the next leader did not ask the host for the commit's statuses")
	}
	if got := countState(rs.statuses, sha2, statusCtx, "success"); got != 1 {
		t.Errorf("commit %s: success posted %d times, want 1: %+v", short(sha2), got, rs.statuses.find(sha2, statusCtx))
	}

	sha3 := commit(t, repo, "three")
	rs.webhook(t, rs.hubs[c], sha2, sha3)
	waitApplied(t, rs.ns, "three")
	rs.statuses.waitState(t, sha3, statusCtx, "success")
	if d := rs.statuses.duplicates(); len(d) > 0 {
		t.Errorf("statuses posted more than once: %v", d)
	}
}

// TestHubReplicasPostgresRestart restarts PostgreSQL under the hubs while
// the agent reports a commit: every connection is cut. The hubs recover
// without a restart of their own: the report acknowledged before is
// there, a "sync now" sent across replicas just before the restart
// reaches the agent (it waits in the database if its NOTIFY is lost),
// webhooks and "sync now" across replicas work afterwards (NOTIFY on a
// LISTEN connection made again), the agent is connected on every
// replica, and each commit status is posted once (the outbox is in the
// database).
func TestHubReplicasPostgresRestart(t *testing.T) {
	git := newGitServer(t)
	repo, err := git.CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	sha1 := commit(t, repo, "one")
	rs := startReplicaSet(t, repo.URL, 1)
	statusCtx := "tether/prod/" + rs.ns + "/app"
	waitApplied(t, rs.ns, "one")
	c := rs.holder(t, -1)

	sha2 := commit(t, repo, "two")
	// PostgreSQL restarts as soon as the replica without the agent has
	// taken the webhook: its NOTIFY to the holder may be cut with the
	// holder's LISTEN connection. The request waits in the database and
	// the holder delivers it when it listens again; the agent polls
	// hourly, so only the "sync now" can bring it the commit.
	rs.webhook(t, rs.hubs[(c+1)%3], sha1, sha2)
	rs.pg.Restart(t)
	t.Log("PostgreSQL restarted")
	waitApplied(t, rs.ns, "two")
	for _, h := range rs.hubs {
		waitBadge(t, h.badgeURL("prod", rs.ns, "app"), "synced "+short(sha2))
	}
	rs.statuses.waitState(t, sha2, statusCtx, "success")

	sha3 := commit(t, repo, "three")
	c = rs.holder(t, -1)
	a := rs.hubs[(c+1)%3]
	eventually(t, time.Minute, "a webhook at a replica without the agent dispatched", func() (bool, string) {
		code, body := a.hook(t, githubPush(rs.repo, "main", sha2, sha3), true)
		return code == http.StatusAccepted && strings.Contains(body, `"dispatched":1`), fmt.Sprint(code, body)
	})
	waitApplied(t, rs.ns, "three")
	rs.statuses.waitState(t, sha3, statusCtx, "success")
	for i, h := range rs.hubs {
		if !h.running() {
			t.Fatalf("replica %d exited: %v", i, h.waitErr)
		}
		h.waitConnected(t, "prod", true)
		waitBadge(t, h.badgeURL("prod", rs.ns, "app"), "synced "+short(sha3))
	}
	if d := rs.statuses.duplicates(); len(d) > 0 {
		t.Errorf("statuses posted more than once: %v", d)
	}
}
