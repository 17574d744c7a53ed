package main

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/internal/testenv"
)

// runCmd runs the tether command line and returns stdout, stderr and the
// exit code main would use.
func runCmd(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := newRootCmd()
	cmd.SetOut(&stdout)
	cmd.SetErr(&stderr)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	code := 0
	if err != nil {
		code = exitCode(err)
		stderr.WriteString(err.Error())
	}
	return stdout.String(), stderr.String(), code
}

func TestDiff(t *testing.T) {
	cp, c := startControlPlane(t)
	ctx := context.Background()
	ns, err := testenv.CreateNamespace(ctx, c, "diff")
	if err != nil {
		t.Fatal(err)
	}

	const secretValue = "s3cr3t-password"
	repo := newRepo(t, map[string]string{
		"app/cm.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  color: blue\n",
		"app/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: " + secretValue + "\n",
	})
	dir := filepath.Join(repo.Dir, "app")
	k := []string{"--kubeconfig", cp.KubeconfigPath}

	// Nothing deployed yet: both objects would be created.
	out, errOut, code := runCmd(t, append([]string{"diff", "--path", dir, "--namespace", ns}, k...)...)
	if code != 1 || !strings.Contains(out, "+kind: ConfigMap") || !strings.Contains(out, "git/Secret/"+ns+"/creds") {
		t.Fatalf("diff before deploy: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	if strings.Contains(out, secretValue) || strings.Contains(errOut, secretValue) {
		t.Fatalf("the Secret's value is shown:\n%s", out)
	}

	// Deploy it through a GitSync's settings, then nothing differs.
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Name: "app", Namespace: ns},
		Spec:       v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{URL: repo.URL}, Path: "./app"},
	}
	if err := c.Create(ctx, gs); err != nil {
		t.Fatal(err)
	}
	agent := startAgent(t, cp.KubeconfigPath, filepath.Join(t.TempDir(), "cache"), "--leader-elect=false", "--namespace", ns)
	waitFor(t, 2*time.Minute, func() bool {
		cm := &corev1.ConfigMap{}
		return c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "settings"}, cm) == nil
	}, &lockedBuffer{})
	agent.stop()
	out, errOut, code = runCmd(t, append([]string{"diff", "--gitsync", ns + "/app"}, k...)...)
	if code != 0 || out != "" {
		t.Fatalf("diff of a synced GitSync: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}

	// Someone edits the ConfigMap and the Secret: both show, values masked.
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "settings"}, cm); err != nil {
		t.Fatal(err)
	}
	cm.Data["color"] = "red"
	if err := c.Update(ctx, cm, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: "creds"}, secret); err != nil {
		t.Fatal(err)
	}
	secret.Data["password"] = []byte("changed-by-hand")
	if err := c.Update(ctx, secret, client.FieldOwner("kubectl-edit")); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = runCmd(t, append([]string{"diff", "--gitsync", ns + "/app", "--path", dir}, k...)...)
	if code != 1 || !strings.Contains(out, "-  color: red") || !strings.Contains(out, "+  color: blue") ||
		!strings.Contains(out, "*** (before)") || !strings.Contains(errOut, "2 of 2 objects would change") {
		t.Fatalf("diff after edits: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}
	for _, leak := range []string{secretValue, "changed-by-hand", "Y2hhbmdlZC1ieS1oYW5k"} {
		if strings.Contains(out, leak) {
			t.Fatalf("a Secret value (%s) is shown:\n%s", leak, out)
		}
	}

	// Errors exit 2.
	if _, errOut, code := runCmd(t, append([]string{"diff", "--path", filepath.Join(dir, "missing")}, k...)...); code != 2 {
		t.Fatalf("diff of a missing folder: exit %d: %s", code, errOut)
	}
	if _, _, code := runCmd(t, "diff"); code != 2 {
		t.Fatalf("diff without --path or --gitsync: exit %d", code)
	}
}
