package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func TestHubKubeconfig(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "ca.pem")
	ca := "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
	if err := os.WriteFile(caFile, []byte(ca), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := kubeconfig(&kubeconfigOptions{hubURL: "https://hub.example.com/tether/", agent: "prod-eu", tokenFile: tokenFile, caFile: caFile})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(out)
	if err != nil {
		t.Fatalf("not a kubeconfig: %v\n%s", err, out)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil {
		t.Fatalf("no current context:\n%s", out)
	}
	cl, user := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
	if cl.Server != "https://hub.example.com/tether/k8s-proxy/prod-eu" {
		t.Errorf("server %q", cl.Server)
	}
	if string(cl.CertificateAuthorityData) != ca {
		t.Errorf("CA %q", cl.CertificateAuthorityData)
	}
	if user.Token != "s3cret-token" {
		t.Errorf("token %q", user.Token)
	}

	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	for _, tc := range []struct {
		name string
		o    kubeconfigOptions
		want string
	}{
		{"no agent", kubeconfigOptions{hubURL: "https://h", tokenFile: tokenFile}, "are required"},
		{"bad agent", kubeconfigOptions{hubURL: "https://h", agent: "../x", tokenFile: tokenFile}, `--agent "../x"`},
		{"not a URL", kubeconfigOptions{hubURL: "hub.example.com", agent: "a", tokenFile: tokenFile}, "want https://"},
		{"credentials in the URL", kubeconfigOptions{hubURL: "https://u:p@h", agent: "a", tokenFile: tokenFile}, "no user"},
		{"empty token file", kubeconfigOptions{hubURL: "https://h", agent: "a", tokenFile: empty}, "is empty"},
		{"CA over http", kubeconfigOptions{hubURL: "http://h", agent: "a", tokenFile: tokenFile, caFile: caFile}, "needs an https://"},
		{"CA not PEM", kubeconfigOptions{hubURL: "https://h", agent: "a", tokenFile: tokenFile, caFile: tokenFile}, "no PEM"},
	} {
		_, err := kubeconfig(&tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the token", tc.name)
		}
	}
}
