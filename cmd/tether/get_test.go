package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"tether.dev/tether/api/v1alpha1"
)

const testSHA = "0123456789abcdef0123456789abcdef01234567"

// createSynced creates a GitSync and writes a status as the agent would
// after applying testSHA with drift objects differing.
func createSynced(t *testing.T, c client.Client, ns, name string, drift int, msg string) *v1alpha1.GitSync {
	t.Helper()
	ctx := context.Background()
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	gs := appGitSync(ns, "https://git.example.com/app.git")
	gs.Name = name
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	gs.Status = v1alpha1.GitSyncStatus{
		ObservedGeneration:  gs.Generation,
		LastAppliedRevision: "main@sha1:" + testSHA,
		Drift:               &v1alpha1.DriftStatus{Count: drift},
		Conditions: []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue,
			Reason: v1alpha1.ReasonSucceeded, Message: msg, LastTransitionTime: metav1.Now()}},
	}
	if err := c.Status().Update(ctx, gs); err != nil {
		t.Fatal(err)
	}
	return gs
}

// cells splits a table row into its cells (tabwriter pads with 3 or more
// spaces; cells hold at most single spaces).
func cells(line string) []string {
	return regexp.MustCompile(`\s{3,}`).Split(strings.TrimSpace(line), -1)
}

// TestGetGitSyncs lists GitSyncs in each output format against a real API
// server, and refuses bad input with a clear error.
func TestGetGitSyncs(t *testing.T) {
	cp, c := startControlPlane(t)
	kc := cp.KubeconfigPath
	createSynced(t, c, "team-a", "app", 2, "Applied revision main@sha1:"+testSHA)
	createSynced(t, c, "team-b", "web", 0, "Applied revision main@sha1:"+testSHA)
	createSynced(t, c, defaultNamespace, "platform", 0, "Applied revision main@sha1:"+testSHA)

	out, errOut, code := runCmd(t, "get", "gitsyncs", "--kubeconfig", kc, "-n", "team-a")
	if code != 0 {
		t.Fatalf("get: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("get -n team-a printed %d lines, want a header and one row:\n%s", len(lines), out)
	}
	wantHeader := []string{"NAME", "READY", "REVISION", "DRIFT", "SUSPENDED", "AGE", "MESSAGE"}
	if got := cells(lines[0]); strings.Join(got, ",") != strings.Join(wantHeader, ",") {
		t.Fatalf("header %q, want %q", got, wantHeader)
	}
	row := cells(lines[1])
	want := map[int]string{0: "app", 1: "True", 2: "main@sha1:" + testSHA[:12], 3: "2", 4: "false", 6: "Applied revision main@sha1:" + testSHA}
	for i, w := range want {
		if len(row) != len(wantHeader) || row[i] != w {
			t.Fatalf("row %q: column %s = %q, want %q", row, wantHeader[min(i, len(wantHeader)-1)], row[min(i, len(row)-1)], w)
		}
	}

	out, _, code = runCmd(t, "get", "gitsyncs", "--kubeconfig", kc, "-A")
	if code != 0 || !strings.HasPrefix(out, "NAMESPACE") || !strings.Contains(out, "team-b") || !strings.Contains(out, "team-a") {
		t.Fatalf("get -A: exit %d:\n%s", code, out)
	}

	// Without -n: the context names no namespace, so tether-system.
	out, _, code = runCmd(t, "get", "gs", "--kubeconfig", kc)
	if code != 0 || !strings.Contains(out, "platform") || strings.Contains(out, "team-a") {
		t.Fatalf("get without -n: exit %d:\n%s", code, out)
	}

	out, _, code = runCmd(t, "get", "gitsyncs", "--kubeconfig", kc, "-n", "team-a", "-o", "wide")
	if code != 0 || !strings.Contains(out, "main@sha1:"+testSHA+" ") || !strings.Contains(out, "SOURCE") || !strings.Contains(out, "https://git.example.com/app.git") {
		t.Fatalf("get -o wide: exit %d:\n%s", code, out)
	}

	out, _, code = runCmd(t, "get", "gitsyncs", "--kubeconfig", kc, "-A", "-o", "json")
	list := &v1alpha1.GitSyncList{}
	if err := json.Unmarshal([]byte(out), list); code != 0 || err != nil || len(list.Items) != 3 || list.Kind != "GitSyncList" {
		t.Fatalf("get -A -o json: exit %d, %v, %d items:\n%s", code, err, len(list.Items), out)
	}
	out, _, code = runCmd(t, "get", "gitsyncs", "app", "--kubeconfig", kc, "-n", "team-a", "-o", "yaml")
	one := &v1alpha1.GitSync{}
	if err := yaml.Unmarshal([]byte(out), one); code != 0 || err != nil || one.Name != "app" || one.Kind != "GitSync" || one.Status.Drift.Count != 2 {
		t.Fatalf("get app -o yaml: exit %d, %v:\n%s", code, err, out)
	}
	if strings.Contains(out, "managedFields") {
		t.Fatalf("get -o yaml shows managedFields:\n%s", out)
	}

	// --context selects a context of the kubeconfig.
	raw, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, code := runCmd(t, "get", "gitsyncs", "--kubeconfig", kc, "--context", raw.CurrentContext, "-n", "team-a"); code != 0 {
		t.Fatalf("get --context %s: exit %d", raw.CurrentContext, code)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-n", "team-a", "-o", "table"}, `-o "table": want wide, json or yaml`},
		{[]string{"nope", "-n", "team-a"}, "GitSync team-a/nope not found"},
		{[]string{"app", "-A"}, "do not go together"},
		{[]string{"--context", "no-such-context"}, "no-such-context"},
	} {
		out, errOut, code := runCmd(t, append([]string{"get", "gitsyncs", "--kubeconfig", kc}, tc.args...)...)
		if code == 0 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("get %v: exit %d, stdout %q, stderr %q; want an error with %q", tc.args, code, out, errOut, tc.want)
		}
	}
	out, errOut, code = runCmd(t, "get", "gitsyncs", "--kubeconfig", kc, "-n", "empty")
	if code != 0 || out != "" || !strings.Contains(errOut, "no GitSyncs found in namespace empty") {
		t.Fatalf("get in an empty namespace: exit %d, %q, %q", code, out, errOut)
	}
}

// TestGetWatch prints a row for the list and another for each change.
func TestGetWatch(t *testing.T) {
	cp, c := startControlPlane(t)
	gs := createSynced(t, c, "team-a", "app", 0, "first message")
	out := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := newRootCmd()
	cmd.SetOut(out)
	cmd.SetErr(out)
	cmd.SetArgs([]string{"get", "gitsyncs", "--watch", "--kubeconfig", cp.KubeconfigPath, "-n", "team-a"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	waitFor(t, time.Minute, func() bool { return strings.Contains(out.String(), "first message") }, out)

	patch := client.MergeFrom(gs.DeepCopy())
	gs.Status.Conditions[0].Message = "second message"
	if err := c.Status().Patch(context.Background(), gs, patch); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, func() bool { return strings.Contains(out.String(), "second message") }, out)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("get --watch ended with %v", err)
	}
	if n := strings.Count(out.String(), "NAME"); n != 1 {
		t.Fatalf("get --watch printed the header %d times:\n%s", n, out)
	}
}

// TestEvents lists the events of a GitSync and of the objects in its
// inventory, oldest first, and no others.
func TestEvents(t *testing.T) {
	cp, c := startControlPlane(t)
	ctx := context.Background()
	gs := createSynced(t, c, "team-a", "app", 0, "ok")
	gs.Status.Inventory = &v1alpha1.ResourceInventory{Entries: []v1alpha1.ResourceRef{
		{ID: "team-a_settings__ConfigMap", Version: "v1"},
		{ID: "_team-a__Namespace", Version: "v1"},
		{ID: "team-a_web_apps_Deployment", Version: "v1"},
	}}
	if err := c.Status().Update(ctx, gs); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	at := func(m int) metav1.Time { return metav1.NewTime(base.Add(time.Duration(m) * time.Minute)) }
	mk := func(ns, name string, obj corev1.ObjectReference, reason string, when metav1.Time, newAPI bool) {
		t.Helper()
		e := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, InvolvedObject: obj,
			Reason: reason, Message: reason + " happened", Type: corev1.EventTypeNormal}
		if newAPI {
			// As the agent's events.k8s.io recorder writes them.
			e.EventTime = metav1.NewMicroTime(when.Time)
			e.ReportingController, e.ReportingInstance, e.Action = "tether", "agent-0", "Sync"
		} else {
			e.FirstTimestamp, e.LastTimestamp, e.Count = when, when, 1
		}
		if err := c.Create(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	gsRef := corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "GitSync", Namespace: "team-a", Name: "app"}
	mk("team-a", "e-sync", gsRef, "Succeeded", at(2), true)
	mk("team-a", "e-cm", corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "team-a", Name: "settings"}, "Changed", at(1), false)
	mk("default", "e-ns", corev1.ObjectReference{APIVersion: "v1", Kind: "Namespace", Name: "team-a"}, "Labelled", at(3), false)
	mk("team-a", "e-deploy", corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: "team-a", Name: "web"}, "ScalingReplicaSet", at(4), false)
	// Not ours: another ConfigMap, and a GitSync of the same name elsewhere.
	mk("team-a", "e-other", corev1.ObjectReference{APIVersion: "v1", Kind: "ConfigMap", Namespace: "team-a", Name: "other"}, "Unrelated", at(0), false)
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-b"}}); err != nil {
		t.Fatal(err)
	}
	mk("team-b", "e-b", corev1.ObjectReference{APIVersion: v1alpha1.GroupVersion.String(), Kind: "GitSync", Namespace: "team-b", Name: "app"}, "Elsewhere", at(0), false)

	out, errOut, code := runCmd(t, "events", "app", "--kubeconfig", cp.KubeconfigPath, "-n", "team-a")
	if code != 0 {
		t.Fatalf("events: exit %d: %s", code, errOut)
	}
	var reasons []string
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines[1:] {
		reasons = append(reasons, cells(l)[2])
	}
	if got, want := strings.Join(reasons, ","), "Changed,Succeeded,Labelled,ScalingReplicaSet"; got != want {
		t.Fatalf("events: reasons %s, want %s:\n%s", got, want, out)
	}
	if !strings.Contains(out, "GitSync/team-a/app") || !strings.Contains(out, "Namespace/team-a ") {
		t.Fatalf("events: objects not named:\n%s", out)
	}

	_, errOut, code = runCmd(t, "events", "nope", "--kubeconfig", cp.KubeconfigPath, "-n", "team-a")
	if code == 0 || !strings.Contains(errOut, "GitSync team-a/nope not found") {
		t.Fatalf("events of an unknown GitSync: exit %d, %q", code, errOut)
	}
}

// TestCompletion prints the scripts and completes GitSync names and
// namespaces from the cluster.
func TestCompletion(t *testing.T) {
	cp, c := startControlPlane(t)
	createSynced(t, c, "team-a", "app", 0, "ok")
	createSynced(t, c, "team-a", "web", 0, "ok")
	createSynced(t, c, "team-b", "other", 0, "ok")
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, errOut, code := runCmd(t, "completion", sh)
		if code != 0 || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, %d bytes, %s", sh, code, len(out), errOut)
		}
	}
	if _, errOut, code := runCmd(t, "completion", "tcsh"); code == 0 || !strings.Contains(errOut, `shell "tcsh"`) {
		t.Errorf("completion tcsh: exit %d, %q", code, errOut)
	}
	for _, verb := range [][]string{{"reconcile"}, {"suspend"}, {"resume"}, {"events"}, {"get", "gitsyncs"}} {
		args := append([]string{"__complete"}, verb...)
		out, _, code := runCmd(t, append(args, "--kubeconfig", cp.KubeconfigPath, "-n", "team-a", "")...)
		if code != 0 || !strings.Contains(out, "app\n") || !strings.Contains(out, "web\n") || strings.Contains(out, "other") {
			t.Errorf("complete %v: exit %d:\n%s", verb, code, out)
		}
	}
	out, _, _ := runCmd(t, "__complete", "reconcile", "--kubeconfig", cp.KubeconfigPath, "-n", "")
	if !strings.Contains(out, "team-b\n") {
		t.Errorf("complete -n: %s", out)
	}
}
