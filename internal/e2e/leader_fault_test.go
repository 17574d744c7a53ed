package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/internal/testenv"
)

// TestLeaderElectionFailover runs two agent replicas with leader election,
// each as a user of its own so that the audit log tells their requests
// apart. While the first holds the lease only it writes: the second
// changes nothing in the cluster. The first is SIGKILLed (its lease is not
// released); the second takes the lease once it expires and applies the
// commit made meanwhile.
func TestLeaderElectionFailover(t *testing.T) {
	dir := t.TempDir()
	repo, err := newGitServer(t).CreateRepo("acme/app")
	if err != nil {
		t.Fatal(err)
	}
	commit(t, repo, "one")
	ns := newNamespace(t, "leader")
	leaseNS := testenv.NewNamespace(t, suite.k8s, "lease")
	users := [2]string{"agent-a-" + ns, "agent-b-" + ns}
	var agents [2]*agentProc
	start := func(i int) {
		kubeconfig, err := suite.cp.AddUser(users[i], "system:masters")
		if err != nil {
			t.Fatal(err)
		}
		agents[i] = startLoneAgent(t, dir, fmt.Sprintf("agent-%c", 'a'+i), kubeconfig,
			"--leader-elect", "--namespace", leaseNS, "--source-ttl", "500ms")
	}
	lease := types.NamespacedName{Namespace: leaseNS, Name: "tether-agent"}

	start(0)
	first := waitLeaseHolder(t, lease, "")
	start(1)
	createGitSync(t, ns, "app", repo.URL, "main", 2*time.Second)
	waitApplied(t, ns, "one")
	commit(t, repo, "two")
	waitApplied(t, ns, "two")
	if h := leaseHolder(t, lease); h != first {
		t.Fatalf("the lease moved from %s to %s although its holder runs", first, h)
	}
	events := audit(t)
	byA, byB := writesBy(events, ns, users[0]), writesBy(events, ns, users[1])
	if len(byA) == 0 {
		t.Fatalf("the leader wrote nothing to %s although the app was applied", ns)
	}
	if len(byB) > 0 {
		t.Fatalf("the replica that is not the leader wrote %d times, e.g. %s", len(byB), byB[0])
	}

	t.Log("step: the leader is killed; the other replica takes over")
	killedAt := len(events)
	agents[0].kill()
	commit(t, repo, "three")
	killed := time.Now()
	second := waitLeaseHolder(t, lease, first)
	// Reported, not asserted: the takeover waits for the lease to expire
	// (its leaseDurationSeconds) plus up to one retry period.
	t.Logf("the lease moved from %s to %s %s after the kill (lease duration %ds)",
		first, second, time.Since(killed).Round(time.Second), leaseDuration(t, lease))
	waitApplied(t, ns, "three")
	events = audit(t)
	if n := len(writesBy(events[killedAt:], ns, users[1])); n == 0 {
		t.Fatalf("the new leader wrote nothing to %s although it applied", ns)
	}
	if w := writesBy(events[killedAt:], ns, users[0]); len(w) > 0 {
		t.Fatalf("the killed leader wrote after its death: %s", w[0])
	}
}

// writesBy are the changes user made to anything in namespace ns
// (objects and the GitSync's status alike).
func writesBy(events []testenv.AuditEvent, ns, user string) []testenv.AuditEvent {
	var out []testenv.AuditEvent
	for _, e := range events {
		if e.User.Username == user && e.Changed() && e.ObjectRef != nil && e.ObjectRef.Namespace == ns {
			out = append(out, e)
		}
	}
	return out
}

// leaseHolder is the lease's holder ("" when none or no lease).
func leaseHolder(t *testing.T, key types.NamespacedName) string {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := suite.k8s.Get(context.Background(), key, l); err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// waitLeaseHolder waits until the lease is held by someone other than
// not, and returns who.
func waitLeaseHolder(t *testing.T, key types.NamespacedName, not string) string {
	t.Helper()
	var h string
	eventually(t, faultWait, fmt.Sprintf("lease %s held by other than %q", key, not), func() (bool, string) {
		h = leaseHolder(t, key)
		return h != "" && h != not, "holder " + h
	})
	return h
}

// leaseDuration is the lease's leaseDurationSeconds (0 when unknown).
func leaseDuration(t *testing.T, key types.NamespacedName) int32 {
	t.Helper()
	l := &coordinationv1.Lease{}
	if err := suite.k8s.Get(context.Background(), key, l); err != nil || l.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return *l.Spec.LeaseDurationSeconds
}
