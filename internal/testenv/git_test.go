package testenv

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func gitCmd(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = gitEnv(dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestGitServerCloneAndPush(t *testing.T) {
	srv, err := StartGitServer(t.TempDir(), GitServerOptions{Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	repo, err := srv.CreateRepo("team/app")
	if err != nil {
		t.Fatal(err)
	}
	sha, err := repo.Commit(map[string]string{"a.yaml": "a: 1\n", "dir/b.yaml": "b: 2\n"}, "first")
	if err != nil {
		t.Fatal(err)
	}
	if len(sha) != 40 {
		t.Fatalf("sha %q", sha)
	}
	if err := repo.Tag("v1.0.0", sha); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Commit(map[string]string{"a.yaml": DeleteFile}, "drop a"); err != nil {
		t.Fatal(err)
	}

	authURL := strings.Replace(repo.URL, "://", "://u:p@", 1)
	out := gitCmd(t, t.TempDir(), "ls-remote", authURL)
	if !strings.Contains(out, sha+"\trefs/tags/v1.0.0") || !strings.Contains(out, "refs/heads/main") {
		t.Fatalf("ls-remote:\n%s", out)
	}
	if c := srv.Counts(); c.Advertisements != 1 || c.Fetches != 0 || c.Repos["team/app"].Advertisements != 1 {
		t.Fatalf("counts after ls-remote: %+v", c)
	}

	clone := filepath.Join(t.TempDir(), "clone")
	gitCmd(t, t.TempDir(), "clone", "--quiet", authURL, clone)
	if _, err := os.Stat(filepath.Join(clone, "a.yaml")); !os.IsNotExist(err) {
		t.Fatalf("a.yaml should be deleted: %v", err)
	}
	if b, _ := os.ReadFile(filepath.Join(clone, "dir/b.yaml")); string(b) != "b: 2\n" {
		t.Fatalf("b.yaml = %q", b)
	}
	if c := srv.Counts(); c.Fetches != 1 {
		t.Fatalf("counts after clone: %+v", c)
	}

	os.WriteFile(filepath.Join(clone, "c.yaml"), []byte("c: 3\n"), 0o644)
	gitCmd(t, clone, "add", "-A")
	gitCmd(t, clone, "commit", "-qm", "push me")
	gitCmd(t, clone, "push", "--quiet", "origin", "main")
	if b, err := os.ReadFile(filepath.Join(repo.Dir, "c.yaml")); err != nil || string(b) != "c: 3\n" {
		t.Fatalf("pushed file not in work tree: %q %v", b, err)
	}

	srv.SetAuth(GitServerOptions{BearerToken: "tok"})
	cmd := exec.Command("git", "ls-remote", authURL)
	cmd.Env = append(gitEnv(t.TempDir()), "GIT_ASKPASS=/bin/false")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("ls-remote with old credentials succeeded:\n%s", out)
	}
	if srv.Counts().Denied == 0 {
		t.Fatal("denied request not counted")
	}
}

func TestGitServerTLS(t *testing.T) {
	srv, err := StartGitServerTLS(t.TempDir(), GitServerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	repo, _ := srv.CreateRepo("r")
	if _, err := repo.Commit(map[string]string{"f": "x"}, "m"); err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, srv.CACert(), 0o644)
	gitCmd(t, t.TempDir(), "-c", "http.sslCAInfo="+ca, "ls-remote", repo.URL)
}

func TestGitRepoCopyDir(t *testing.T) {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "base"), 0o755)
	os.WriteFile(filepath.Join(src, "base/kustomization.yaml"), []byte("resources: []\n"), 0o644)
	repo, err := InitRepo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := repo.CopyDir(src, "apps/demo"); err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Commit(nil, "copy"); err != nil {
		t.Fatal(err)
	}
	if out, _ := repo.Git("ls-files"); strings.TrimSpace(out) != "apps/demo/base/kustomization.yaml" {
		t.Fatalf("ls-files: %q", out)
	}
	if _, err := repo.Commit(map[string]string{"../x": "y"}, "escape"); err == nil {
		t.Fatal("path outside the work tree accepted")
	}
}

func TestGitSSHServer(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	sshPub, _ := ssh.NewPublicKey(pub)
	signer, _ := ssh.NewSignerFromKey(priv)
	root := t.TempDir()
	srv, err := StartGitSSHServer(root, sshPub)
	if err != nil {
		t.Fatal(err)
	}
	repo, err := InitRepo(filepath.Join(root, "app"))
	if err != nil {
		t.Fatal(err)
	}
	sha, _ := repo.Commit(map[string]string{"f": "x"}, "m")

	client, err := ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
		User: "git", Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	})
	if err != nil {
		t.Fatal(err)
	}
	sess, _ := client.NewSession()
	stdout, _ := sess.StdoutPipe()
	stdin, _ := sess.StdinPipe()
	if err := sess.Start("git-upload-pack '/app/.git'"); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	if !strings.Contains(line, sha) {
		t.Fatalf("first advertisement line %q lacks %s", line, sha)
	}
	stdin.Write([]byte("0000"))
	stdin.Close()
	if err := sess.Wait(); err != nil {
		t.Fatalf("upload-pack: %v", err)
	}
	if srv.Sessions() != 1 {
		t.Fatalf("sessions = %d", srv.Sessions())
	}

	// A second session left open must not keep Close from returning.
	sess2, _ := client.NewSession()
	sess2.StdoutPipe()
	sess2.Start("git-upload-pack '/app/.git'")

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherSigner, _ := ssh.NewSignerFromKey(other)
	_, err = ssh.Dial("tcp", srv.Addr(), &ssh.ClientConfig{
		User: "git", Auth: []ssh.AuthMethod{ssh.PublicKeys(otherSigner)},
		HostKeyCallback: ssh.FixedHostKey(srv.HostKey()),
	})
	if err == nil {
		t.Fatal("unauthorized key accepted")
	}
	if !strings.HasPrefix(string(srv.KnownHosts()), "[127.0.0.1]:") {
		t.Fatalf("known_hosts line %q", srv.KnownHosts())
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	client.Close()
}
