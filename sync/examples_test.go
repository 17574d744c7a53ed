package sync

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// exampleGitSyncs reads the GitSyncs of an example file and points them at
// repoURL, in namespace ns, with the tests' short intervals.
func exampleGitSyncs(t *testing.T, file, ns, repoURL string) map[string]*v1alpha1.GitSync {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(examplesDir, file))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*v1alpha1.GitSync{}
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		gs := &v1alpha1.GitSync{}
		if err := yaml.UnmarshalStrict(doc, gs); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if gs.Kind != "GitSync" {
			t.Fatalf("%s: a %q where a GitSync was expected", file, gs.Kind)
		}
		gs.Namespace = ns
		gs.Spec.Source.URL = repoURL
		gs.Spec.Interval = metav1.Duration{Duration: testInterval}
		gs.Spec.RetryInterval = &metav1.Duration{Duration: testRetryInterval}
		out[gs.Name] = gs
	}
	return out
}

// keepOnCleanup deletes the GitSyncs keys, in order, when the test ends,
// after turning their prune off: the examples deploy into fixed
// namespaces, and a prune would delete them while a second run (-count=2)
// already needs them again (a namespace takes seconds to finish deleting).
func keepOnCleanup(t *testing.T, keys ...types.NamespacedName) {
	t.Cleanup(func() {
		ctx := testContext(t)
		for _, key := range keys {
			gs := &v1alpha1.GitSync{}
			if err := k8s.Get(ctx, key, gs); err != nil {
				continue
			}
			patch := client.MergeFrom(gs.DeepCopy())
			gs.Spec.Prune = false
			if err := k8s.Patch(ctx, gs, patch); err != nil {
				t.Logf("GitSync %s: turn prune off: %v", key, err)
			}
			deleteGitSync(t, key, false)
		}
	})
}

// ptrValue is *p, or -1 when p is nil.
func ptrValue(p *int32) int32 {
	if p == nil {
		return -1
	}
	return *p
}

// examples/podinfo-like: the staging overlay follows main, production a
// semver range of tags; each lands in its own namespace only.
func TestExamplePodinfo(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "podinfo")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "team/podinfo")
	sha := commit(t, repo, nil, map[string]string{"podinfo-like": filepath.Join(examplesDir, "podinfo-like")}, "podinfo")
	if err := repo.Tag("v1.0.0", sha); err != nil {
		t.Fatal(err)
	}
	if err := repo.Tag("v2.0.0", sha); err != nil { // outside the range
		t.Fatal(err)
	}
	gss := exampleGitSyncs(t, "podinfo-like/gitsyncs.yaml", ns, repo.URL)
	staging := create(t, gss["podinfo-staging"])
	production := create(t, gss["podinfo-production"])
	keepOnCleanup(t, staging, production)
	waitApplied(t, staging, mainRev(sha))
	waitApplied(t, production, "v1.0.0@sha1:"+sha)

	for _, env := range []struct {
		ns, image, message string
		minReplicas        int32
	}{
		{"podinfo-staging", "ghcr.io/stefanprodan/podinfo:6.7.1", "Hello from staging", 2},
		{"podinfo-production", "ghcr.io/stefanprodan/podinfo:6.7.0", "Hello from production", 3},
	} {
		d := deployment(env.ns, "podinfo")
		mustExist(t, d)
		if got := d.Spec.Template.Spec.Containers[0].Image; got != env.image {
			t.Errorf("%s: image %q, want %q", env.ns, got, env.image)
		}
		if got := d.Spec.Selector.MatchLabels["app.kubernetes.io/name"]; got != "podinfo" {
			t.Errorf("%s: selector %v", env.ns, d.Spec.Selector.MatchLabels)
		}
		cm := configMap(env.ns, "podinfo-config")
		mustExist(t, cm)
		if cm.Data["PODINFO_UI_MESSAGE"] != env.message {
			t.Errorf("%s: message %q, want %q", env.ns, cm.Data["PODINFO_UI_MESSAGE"], env.message)
		}
		mustExist(t, service(env.ns, "podinfo"))
		hpa := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: metav1.ObjectMeta{Namespace: env.ns, Name: "podinfo"}}
		mustExist(t, hpa)
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != env.minReplicas {
			t.Errorf("%s: HPA minReplicas %v, want %d", env.ns, hpa.Spec.MinReplicas, env.minReplicas)
		}
		// Nothing of the overlay lands in the GitSyncs' own namespace.
		mustBeAbsent(t, deployment(ns, "podinfo"))
	}
	// Git leaves replicas to the HPA: the cluster's HPA controller scales
	// each Deployment up to its minReplicas, and drift (mode correct) lets
	// it.
	for _, env := range []struct {
		ns  string
		min int32
		gs  types.NamespacedName
	}{{"podinfo-staging", 2, staging}, {"podinfo-production", 3, production}} {
		replicas := func() error {
			d := deployment(env.ns, "podinfo")
			if err := get(t, d); err != nil {
				return err
			}
			if d.Spec.Replicas == nil || *d.Spec.Replicas != env.min {
				return fmt.Errorf("%s: replicas %d, want the HPA's minimum %d", env.ns, ptrValue(d.Spec.Replicas), env.min)
			}
			if gs := getGitSync(t, env.gs); meta.IsStatusConditionTrue(gs.Status.Conditions, v1alpha1.DriftedCondition) {
				return fmt.Errorf("%s: the HPA's scaling is reported as drift: %s", env.ns, driftedStatus(gs))
			}
			return nil
		}
		eventually(t, waitTimeout, replicas)
		consistently(t, 3*testInterval, replicas)
	}
	gs := getGitSync(t, production)
	if got := gs.Status.Namespaces; len(got) != 2 || got[0].Namespace != "" || got[1].Namespace != "podinfo-production" {
		t.Errorf("production namespaces = %+v", got)
	}
}

// examples/tenants: the platform folder creates the team namespaces and a
// GitSync per team; each team's GitSync deploys its folder into its own
// namespace and is refused anything outside it.
func TestExampleTenants(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "platform")
	srv := newGitServer(t, testenv.GitServerOptions{})
	repo := newRepo(t, srv, "platform/tenants")
	sha1 := commit(t, repo, nil, map[string]string{"tenants": filepath.Join(examplesDir, "tenants")}, "tenants")
	platform := exampleGitSyncs(t, "tenants/gitsync.yaml", ns, repo.URL)["platform"]
	platform.Spec.Substitute["tenants_repo_url"] = repo.URL
	platform.Spec.Substitute["tenants_interval"] = testInterval.String()
	pkey := create(t, platform)
	teamA := types.NamespacedName{Namespace: "team-a", Name: "team-a"}
	teamB := types.NamespacedName{Namespace: "team-b", Name: "team-b"}
	keepOnCleanup(t, pkey, teamA, teamB)
	pgs := waitApplied(t, pkey, mainRev(sha1))
	t.Logf("platform inventory: %q", inventoryIDs(pgs))

	for _, k := range []types.NamespacedName{teamA, teamB} {
		gs := waitApplied(t, k, mainRev(sha1))
		if gs.Spec.Source.URL != repo.URL || gs.Spec.Interval.Duration != testInterval {
			t.Errorf("%s: substitution not applied: url %q, interval %s", k, gs.Spec.Source.URL, gs.Spec.Interval.Duration)
		}
		if gs.Spec.AllowedNamespaces[0] != k.Namespace {
			t.Errorf("%s: allowedNamespaces %q", k, gs.Spec.AllowedNamespaces)
		}
	}
	for _, team := range []string{"team-a", "team-b"} {
		cm := configMap(team, team+"-settings")
		mustExist(t, cm)
		if cm.Data["owner"] != team || cm.Labels[v1alpha1.NameLabel] != team || cm.Labels[v1alpha1.NamespaceLabel] != team {
			t.Errorf("%s: data %v, labels %v", team, cm.Data, cm.Labels)
		}
		mustExist(t, deployment(team, team+"-web"))
	}

	// team-a reaches into team-b: the whole team-a sync is refused and
	// nothing of that commit is written; team-b is not disturbed.
	sha2 := commit(t, repo, map[string]string{
		"tenants/team-a/intruder.yaml":      configMapYAML("team-a-intruder", "team-b", map[string]string{"from": "team-a"}),
		"tenants/team-a/extra.yaml":         configMapYAML("team-a-extra", "", map[string]string{"a": "b"}),
		"tenants/team-a/kustomization.yaml": kustomization("app.yaml", "extra.yaml", "intruder.yaml"),
	}, nil, "team-a reaches into team-b")
	gs := waitFailed(t, teamA, v1alpha1.ReasonNamespaceDenied, `"team-b"`, "team-a-intruder")
	if gs.Status.LastAttemptedRevision != mainRev(sha2) || gs.Status.LastAppliedRevision != mainRev(sha1) {
		t.Errorf("team-a: %s", describe(gs))
	}
	mustBeAbsent(t, configMap("team-b", "team-a-intruder"))
	mustBeAbsent(t, configMap("team-a", "team-a-extra"))
	mustExist(t, configMap("team-a", "team-a-settings"))
	waitApplied(t, teamB, mainRev(sha2))
	waitApplied(t, pkey, mainRev(sha2))
	mustBeAbsent(t, configMap("team-b", "team-a-intruder"))
}
