package sync

import (
	"fmt"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// metadataReadsOf counts the metadata-only reads of the GitSync key among
// reqs: only the agent makes them (begin).
func metadataReadsOf(key types.NamespacedName, reqs []string) int {
	want := fmt.Sprintf("GET /apis/tether.dev/v1alpha1/namespaces/%s/gitsyncs/%s (metadata)", key.Namespace, key.Name)
	n := 0
	for _, r := range reqs {
		if r == want {
			n++
		}
	}
	return n
}

// statusWritesOf counts the status writes to the GitSync key among reqs
// (requests of agentRequests).
func statusWritesOf(key types.NamespacedName, reqs []string) int {
	want := fmt.Sprintf("PATCH /apis/tether.dev/v1alpha1/namespaces/%s/gitsyncs/%s/status", key.Namespace, key.Name)
	n := 0
	for _, r := range reqs {
		if r == want {
			n++
		}
	}
	return n
}

// A status write is the dearest request of a sync with a large inventory
// (the API server validates, stores and sends out the whole GitSync): a
// first sync writes status twice (the objects it is about to create, so
// that a killed agent leaves no orphan, then the result), and a sync that
// creates nothing writes it once, at its end.
func TestStatusWritesPerSync(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "status-writes")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "app")
	sha := commit(t, repo, map[string]string{
		"app/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"1\"\n",
		"app/b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\ndata:\n  v: \"1\"\n",
	}, nil, "two")
	gs := newGitSync(ns, "app", repo.URL, "./app")
	start := agentRequests.count()
	key := create(t, gs)
	waitApplied(t, key, mainRev(sha))
	if n := statusWritesOf(key, agentRequests.since(start)); n != 2 {
		t.Errorf("first sync: %d status writes, want 2", n)
	}
	// The finalizer's write returned the newest GitSync: nothing to read.
	if n := metadataReadsOf(key, agentRequests.since(start)); n != 0 {
		t.Errorf("first sync: %d reads of the GitSync's metadata, want 0", n)
	}

	// A forced resync with nothing changed.
	start = agentRequests.count()
	update(t, key, func(gs *v1alpha1.GitSync) {
		metav1.SetMetaDataAnnotation(&gs.ObjectMeta, v1alpha1.ResyncAnnotation, "one")
	})
	waitGitSync(t, key, func(gs *v1alpha1.GitSync) error {
		if gs.Status.LastHandledResyncAt != "one" {
			return fmt.Errorf("resync not handled: %s", describe(gs))
		}
		return nil
	})
	if n := statusWritesOf(key, agentRequests.since(start)); n != 1 {
		t.Errorf("forced resync, nothing changed: %d status writes, want 1", n)
	}
	// One read tells that the cache was current.
	if n := metadataReadsOf(key, agentRequests.since(start)); n != 1 {
		t.Errorf("forced resync: %d reads of the GitSync's metadata, want 1", n)
	}

	// A commit that changes an object and creates none.
	start = agentRequests.count()
	sha = commit(t, repo, map[string]string{
		"app/a.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\ndata:\n  v: \"2\"\n",
	}, nil, "change a")
	waitApplied(t, key, mainRev(sha))
	if n := statusWritesOf(key, agentRequests.since(start)); n != 1 {
		t.Errorf("new commit, nothing created: %d status writes, want 1", n)
	}
	if v := configMapValue(t, ns, "a", "v"); v != "2" {
		t.Errorf("a.v = %q after the commit, want 2", v)
	}
}

// A drift the status shows already, still drifted or corrected since, is
// not news: the same change made again adds no DriftDetected event.
func TestSameDrift(t *testing.T) {
	obj := func(path string, corrected bool) v1alpha1.DriftedObject {
		return v1alpha1.DriftedObject{APIVersion: "v1", Kind: "ConfigMap", Namespace: "ns", Name: "a", Paths: []string{path}, Corrected: corrected}
	}
	objs := []v1alpha1.DriftedObject{obj("/data/a", false)}
	for _, tc := range []struct {
		name string
		st   *v1alpha1.DriftStatus
		want bool
	}{
		{"no drift before", nil, false},
		{"still drifted", &v1alpha1.DriftStatus{Count: 1, Objects: []v1alpha1.DriftedObject{obj("/data/a", false)}}, true},
		{"corrected before", &v1alpha1.DriftStatus{Count: 0, Objects: []v1alpha1.DriftedObject{obj("/data/a", true)}}, true},
		{"another path", &v1alpha1.DriftStatus{Count: 1, Objects: []v1alpha1.DriftedObject{obj("/data/b", false)}}, false},
		{"another object", &v1alpha1.DriftStatus{Count: 0, Objects: []v1alpha1.DriftedObject{{Kind: "ConfigMap", Namespace: "ns", Name: "b", Paths: []string{"/data/a"}, Corrected: true}}}, false},
		{"more objects", &v1alpha1.DriftStatus{Count: 2, Objects: []v1alpha1.DriftedObject{obj("/data/a", false), obj("/data/b", false)}}, false},
	} {
		if got := sameDrift(tc.st, objs); got != tc.want {
			t.Errorf("%s: sameDrift = %v, want %v", tc.name, got, tc.want)
		}
	}
}
