package testenv

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// DeleteFile, as a value in the map given to GitRepo.Commit, removes that
// path (a file or a whole directory) from the work tree instead of writing
// it.
const DeleteFile = "\x00testenv:delete\x00"

// Identity used for every commit, so results never depend on the user's Git
// configuration.
const (
	GitAuthorName  = "Tether Test"
	GitAuthorEmail = "test@tether.dev"
)

// GitRepo is a non-bare repository in a work directory. Its methods are safe
// for concurrent use (they run one at a time).
type GitRepo struct {
	// Dir is the work tree; the repository itself is Dir/.git.
	Dir string
	// URL is where a GitServer serves it; empty for InitRepo.
	URL string

	mu sync.Mutex
}

// InitRepo makes a non-bare repository at dir (created if missing) whose
// default branch is main.
func InitRepo(dir string) (*GitRepo, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &GitRepo{Dir: dir}
	if _, err := r.git("init", "--quiet", "--initial-branch=main"); err != nil {
		return nil, err
	}
	// A server may push into this repository's checked-out branch.
	if _, err := r.git("config", "receive.denyCurrentBranch", "updateInstead"); err != nil {
		return nil, err
	}
	return r, nil
}

// Commit writes files (slash-separated path relative to the work tree ->
// content; DeleteFile removes the path), stages everything with `git add -A`
// (so files placed by CopyDir are included) and commits on the current
// branch. It returns the new commit's full SHA.
func (r *GitRepo) Commit(files map[string]string, msg string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for name, content := range files {
		p, err := r.path(name)
		if err != nil {
			return "", err
		}
		if content == DeleteFile {
			if err := os.RemoveAll(p); err != nil {
				return "", err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := r.git("add", "-A"); err != nil {
		return "", err
	}
	if _, err := r.git("commit", "--quiet", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	return r.revParse("HEAD")
}

// CopyDir copies the directory tree src into the work tree at dst (relative,
// slash-separated; "" or "." is the top), without committing. Regular files
// keep their executable bit; symlinks are copied as links.
func (r *GitRepo) CopyDir(src, dst string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	to, err := r.path(dst)
	if err != nil {
		return err
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(to, rel)
		switch {
		case d.IsDir():
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return os.MkdirAll(target, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_ = os.Remove(target)
			return os.Symlink(link, target)
		case d.Type().IsRegular():
			return copyFile(p, target)
		}
		return nil
	})
}

func copyFile(from, to string) error {
	info, err := os.Stat(from)
	if err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm()|0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Tag makes a lightweight tag name at sha ("" means HEAD), replacing an
// existing tag of that name.
func (r *GitRepo) Tag(name, sha string) error {
	return r.run("tag", "--force", name, orHEAD(sha))
}

// AnnotatedTag makes an annotated tag name at sha ("" means HEAD).
func (r *GitRepo) AnnotatedTag(name, sha, msg string) error {
	return r.run("tag", "--force", "--annotate", "-m", msg, name, orHEAD(sha))
}

// Branch creates or moves branch name to sha ("" means HEAD) without
// switching to it.
func (r *GitRepo) Branch(name, sha string) error {
	return r.run("branch", "--force", name, orHEAD(sha))
}

// Checkout switches the work tree to branch name, creating it at HEAD if it
// does not exist.
func (r *GitRepo) Checkout(name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, err := r.git("rev-parse", "--verify", "--quiet", "refs/heads/"+name); err != nil {
		_, err = r.git("checkout", "--quiet", "-b", name)
		return err
	}
	_, err := r.git("checkout", "--quiet", name)
	return err
}

// Head returns the full SHA of HEAD.
func (r *GitRepo) Head() (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.revParse("HEAD")
}

// Git runs git with args in the work tree and returns its standard output;
// for anything the helpers do not cover (e.g. `config`).
func (r *GitRepo) Git(args ...string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.git(args...)
}

func (r *GitRepo) run(args ...string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.git(args...)
	return err
}

func (r *GitRepo) revParse(rev string) (string, error) {
	out, err := r.git("rev-parse", "--verify", rev+"^{commit}")
	return strings.TrimSpace(out), err
}

// path resolves a relative slash path inside the work tree, refusing paths
// that leave it or touch .git.
func (r *GitRepo) path(name string) (string, error) {
	clean := filepath.Clean(filepath.FromSlash(name))
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("git repo %s: path %q leaves the work tree", r.Dir, name)
	}
	if clean == ".git" || strings.HasPrefix(clean, ".git"+string(filepath.Separator)) {
		return "", fmt.Errorf("git repo %s: path %q is inside .git", r.Dir, name)
	}
	return filepath.Join(r.Dir, clean), nil
}

func (r *GitRepo) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = gitEnv(r.Dir)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git repo %s: git %s: %w: %s", r.Dir, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func orHEAD(sha string) string {
	if sha == "" {
		return "HEAD"
	}
	return sha
}

// gitEnv is the environment for every git process the harness starts: no
// user or system configuration, a fixed identity, and the server-side
// settings that let tests push.
func gitEnv(home string) []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/bin:/usr/bin:/bin"
	}
	return []string{
		"PATH=" + path,
		"HOME=" + home,
		"LANG=C",
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=" + GitAuthorName,
		"GIT_AUTHOR_EMAIL=" + GitAuthorEmail,
		"GIT_COMMITTER_NAME=" + GitAuthorName,
		"GIT_COMMITTER_EMAIL=" + GitAuthorEmail,
		"GIT_CONFIG_COUNT=4",
		"GIT_CONFIG_KEY_0=http.receivepack", "GIT_CONFIG_VALUE_0=true",
		"GIT_CONFIG_KEY_1=safe.directory", "GIT_CONFIG_VALUE_1=*",
		"GIT_CONFIG_KEY_2=init.defaultBranch", "GIT_CONFIG_VALUE_2=main",
		"GIT_CONFIG_KEY_3=commit.gpgsign", "GIT_CONFIG_VALUE_3=false",
	}
}
