package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// TestOwnershipConflict creates two GitSyncs whose repositories both hold
// ConfigMap settings in one namespace. The first applies it; the second
// is refused with Ready=False, reason OwnershipConflict, a message naming
// the owner, and the ConfigMap keeps the first GitSync's data and owner
// labels: nothing is overwritten.
func TestOwnershipConflict(t *testing.T) {
	srv := newGitServer(t)
	var repos [2]string
	for i, v := range []string{"from-a", "from-b"} {
		repo, err := srv.CreateRepo(fmt.Sprintf("acme/%c", 'a'+i))
		if err != nil {
			t.Fatal(err)
		}
		commit(t, repo, v)
		repos[i] = repo.URL
	}
	ns := newNamespace(t, "conflict")
	startLoneAgent(t, t.TempDir(), "agent", suite.kubeconfig, "--leader-elect=false", "--source-ttl", "500ms")
	createGitSync(t, ns, "a", repos[0], "main", 2*time.Second)
	waitApplied(t, ns, "from-a")
	before := len(audit(t))

	createGitSync(t, ns, "b", repos[1], "main", 2*time.Second)
	key := types.NamespacedName{Namespace: ns, Name: "b"}
	eventually(t, faultWait, "GitSync b refused with OwnershipConflict", func() (bool, string) {
		gs := &v1alpha1.GitSync{}
		if err := suite.k8s.Get(context.Background(), key, gs); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(gs.Status.Conditions, v1alpha1.ReadyCondition)
		if c == nil {
			return false, "no Ready condition"
		}
		ok := c.Status == metav1.ConditionFalse && c.Reason == v1alpha1.ReasonOwnershipConflict &&
			strings.Contains(c.Message, ns+"/a") && strings.Contains(c.Message, "settings")
		return ok, fmt.Sprintf("Ready=%s %s %q", c.Status, c.Reason, c.Message)
	})
	cm := &corev1.ConfigMap{}
	if err := suite.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "settings"}, cm); err != nil {
		t.Fatal(err)
	}
	if cm.Data["v"] != "from-a" || cm.Labels[v1alpha1.NameLabel] != "a" {
		t.Errorf("ConfigMap settings has v=%q and owner %q, want from-a and a", cm.Data["v"], cm.Labels[v1alpha1.NameLabel])
	}
	for _, e := range configMapWrites(audit(t)[before:], ns, "patch") {
		t.Errorf("ConfigMap written after the second GitSync came: %s", e)
	}
}
