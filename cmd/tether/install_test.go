package main

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

const installToken = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"

// TestInstall applies the connected agent to a real API server, and checks
// that the token shows nowhere but inside the Secret.
func TestInstall(t *testing.T) {
	cp, err := testenv.StartControlPlane(testenv.ControlPlaneOptions{WithoutCRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cp.Stop() })
	c, err := client.New(cp.Config, client.Options{Scheme: newScheme()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(installToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString([]byte(installToken))
	flags := []string{"install", "--kubeconfig", cp.KubeconfigPath, "--hub-url", "https://hub.example.com", "--agent", "prod-eu", "--token-file", tokenFile}

	// --dry-run prints every object; the token only inside the Secret.
	out, errOut, code := runCmd(t, append(flags, "--dry-run")...)
	if code != 0 {
		t.Fatalf("install --dry-run: exit %d: %s", code, errOut)
	}
	docs := strings.Split(out, "---\n")
	var secretDocs int
	for _, d := range docs {
		if !strings.Contains(d, installToken) && !strings.Contains(d, b64) {
			continue
		}
		if !strings.Contains(d, "kind: Secret\n") || !strings.Contains(d, "name: tether-hub-connection\n") {
			t.Fatalf("install --dry-run shows the token outside the Secret:\n%s", d)
		}
		secretDocs++
	}
	if secretDocs != 1 || strings.Contains(errOut, installToken) || strings.Contains(errOut, b64) {
		t.Fatalf("install --dry-run: %d Secret documents with the token (want 1); stderr %q", secretDocs, errOut)
	}
	for _, want := range []string{"kind: CustomResourceDefinition", "kind: Namespace", "kind: Deployment", "kind: Service\n", "--hub-url=$(TETHER_HUB_URL)"} {
		if !strings.Contains(out, want) {
			t.Errorf("install --dry-run prints no %q", want)
		}
	}
	if err := c.Get(ctx, types.NamespacedName{Name: "tether-system"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Fatalf("install --dry-run created the namespace: %v", err)
	}

	// Apply, twice: the second run updates in place.
	for range 2 {
		out, errOut, code = runCmd(t, append(flags, "--image", "registry.example.com/tether:v9")...)
		if code != 0 {
			t.Fatalf("install: exit %d: %s %s", code, out, errOut)
		}
		if strings.Contains(out+errOut, installToken) || strings.Contains(out+errOut, b64) {
			t.Fatalf("install printed the token:\n%s\n%s", out, errOut)
		}
	}
	if !strings.Contains(out, "✔ applied Secret/tether-system/tether-hub-connection") || !strings.Contains(out, "✔ applied Deployment/tether-system/tether-agent") {
		t.Fatalf("install output:\n%s", out)
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "tether-system", Name: "tether-hub-connection"}, secret); err != nil {
		t.Fatal(err)
	}
	if string(secret.Data["token"]) != installToken || string(secret.Data["hub-url"]) != "https://hub.example.com" || string(secret.Data["agent-name"]) != "prod-eu" {
		t.Fatalf("Secret data keys %v do not hold the flags", len(secret.Data))
	}
	dep := &appsv1.Deployment{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "tether-system", Name: "tether-agent"}, dep); err != nil {
		t.Fatal(err)
	}
	ctr := dep.Spec.Template.Spec.Containers[0]
	args := strings.Join(ctr.Args, " ")
	for _, want := range []string{"--hub-url=$(TETHER_HUB_URL)", "--agent-name=$(TETHER_AGENT_NAME)", "--token-file=/var/run/tether/hub/token", "--metrics-addr=:8080"} {
		if !strings.Contains(args, want) {
			t.Errorf("agent args %q lack %q", args, want)
		}
	}
	if ctr.Image != "registry.example.com/tether:v9" {
		t.Errorf("agent image %q, want --image's", ctr.Image)
	}
	if strings.Contains(args, installToken) {
		t.Fatal("the token is in the agent's arguments")
	}
	for _, mf := range dep.ManagedFields {
		if mf.Manager != v1alpha1.FieldManager && mf.Operation == "Apply" {
			t.Errorf("Deployment applied by field manager %q, want %q", mf.Manager, v1alpha1.FieldManager)
		}
	}
	svc := &corev1.Service{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: "tether-system", Name: "tether-agent"}, svc); err != nil {
		t.Fatal(err)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Name != "metrics" || svc.Spec.Ports[0].TargetPort.String() != "metrics" {
		t.Fatalf("agent Service ports %+v, want one named metrics", svc.Spec.Ports)
	}
}

// TestInstallRefusesBadInput: clear errors, nothing applied, the token never
// quoted.
func TestInstallRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(good, []byte(installToken), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// An unreachable kubeconfig: if validation let anything through, the
	// error would be about the cluster instead.
	kc := filepath.Join(dir, "kubeconfig")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no hub", []string{"--agent", "a", "--token-file", good}, "--hub-url, --agent and --token-file are required"},
		{"bad scheme", []string{"--hub-url", "ftp://hub", "--agent", "a", "--token-file", good}, `--hub-url "ftp://hub": want https://`},
		{"credentials in url", []string{"--hub-url", "https://user:hunter2@hub", "--agent", "a", "--token-file", good}, "must not carry credentials"},
		{"bad agent", []string{"--hub-url", "https://hub", "--agent", "a/b", "--token-file", good}, `--agent "a/b"`},
		{"missing token", []string{"--hub-url", "https://hub", "--agent", "a", "--token-file", filepath.Join(dir, "nope")}, "--token-file: open"},
		{"empty token", []string{"--hub-url", "https://hub", "--agent", "a", "--token-file", empty}, "is empty"},
	} {
		out, errOut, code := runCmd(t, append([]string{"install", "--kubeconfig", kc}, tc.args...)...)
		if code == 0 || out != "" || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, "hunter2") || strings.Contains(errOut, installToken) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want an error with %q", tc.name, code, out, errOut, tc.want)
		}
	}
}
