package devenv

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// HookNames are the Git hooks the demo repository gets: a commit made in
// its work tree (post-commit), a merge or pull into it (post-merge), an
// amend or rebase (post-rewrite), and a push to the URL the agent fetches
// (post-receive: the Git server runs receive-pack in this repository).
var HookNames = []string{"post-commit", "post-merge", "post-rewrite", "post-receive"}

// WriteWebhookSecret writes a fresh random secret to path (mode 0600) for
// the hub's --webhook-secret-file and the hooks. A new one on every run:
// a hook left from an earlier run cannot be replayed against this hub.
func WriteWebhookSecret(path string) error {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	// WriteFile keeps the mode of a file that exists: set it anyway.
	if err := os.WriteFile(path, []byte(hex.EncodeToString(b)), 0o600); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

// InstallHooks writes the hooks (HookNames, mode 0700) that tell the hub at
// hubURL about a new commit of the repository repoURL through its GitLab
// webhook, so the agent syncs it within about a second rather than at the
// next poll. The hooks read the secret from secretFile when they run and
// hand it to curl on its standard input: it is neither in the hook files
// nor in any process's argv (ps shows curl's arguments). The hooks never
// fail a commit; when the hub is unreachable they say that the poll will
// pick the commit up.
func (e *Env) InstallHooks(hubURL, secretFile string) error {
	secret, err := filepath.Abs(secretFile)
	if err != nil {
		return err
	}
	dir := filepath.Join(e.RepoDir, ".git", "hooks")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	script := hookScript(strings.TrimSuffix(hubURL, "/")+"/hooks/gitlab", e.RepoURL, secret)
	for _, name := range HookNames {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(script), 0o700); err != nil {
			return fmt.Errorf("git hook %s: %w", p, err)
		}
		if err := os.Chmod(p, 0o700); err != nil {
			return fmt.Errorf("git hook %s: %w", p, err)
		}
	}
	// A core.hooksPath in the user's global configuration would bypass
	// .git/hooks: the repository's own setting wins over it.
	cmd := exec.Command("git", "-C", e.RepoDir, "config", "core.hooksPath", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git repo %s: set core.hooksPath: %w: %s", e.RepoDir, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// hookScript is the POSIX shell hook. The payload is GitLab's push event,
// reduced to what the hub reads; post-receive gets one line per pushed ref
// on its standard input, the other hooks act on the checked-out branch.
func hookScript(hookURL, repoURL, secretFile string) string {
	return `#!/bin/sh
# Written by 'tether dev' on every run (ports change): tells the demo hub
# about a new commit so that the agent syncs it at once; the agent's poll
# stays the fallback. The webhook secret is read from a 0600 file and
# passed to curl on stdin, never on a command line.
hook=` + shellQuote(hookURL) + `
repo=` + shellQuote(repoURL) + `
secret=` + shellQuote(secretFile) + `

notify() { # $1: full ref, $2: commit
	case $1 in refs/heads/* | refs/tags/*) ;; *) return 0 ;; esac
	if ! command -v curl >/dev/null 2>&1; then
		echo "tether: no curl to call the hub's webhook; the agent's poll picks up $2"
		return 0
	fi
	body=$(printf '{"object_kind":"push","ref":"%s","after":"%s","project":{"git_http_url":"%s"}}' "$1" "$2" "$repo")
	if { printf 'X-Gitlab-Token: '; cat "$secret"; printf '\n'; } 2>/dev/null |
		curl -fsS --max-time 3 -o /dev/null -H @- -H 'Content-Type: application/json' --data-binary "$body" "$hook" 2>/dev/null; then
		echo "tether: told the hub about $2 ($1): the agent syncs it now"
	else
		echo "tether: the hub's webhook $hook did not answer; the agent's poll picks up $2"
	fi
}

case ${0##*/} in
post-receive)
	while read -r old new ref; do notify "$ref" "$new"; done
	;;
*)
	ref=$(git symbolic-ref -q HEAD) && notify "$ref" "$(git rev-parse HEAD)"
	;;
esac
exit 0
`
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
