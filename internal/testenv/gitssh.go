package testenv

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// GitSSHServer serves the repositories below a root directory over SSH on
// 127.0.0.1, running the real git-upload-pack and git-receive-pack. It accepts
// any user name with one authorized public key.
type GitSSHServer struct {
	root    string
	ln      net.Listener
	config  *ssh.ServerConfig
	hostKey ssh.PublicKey
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup

	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	sessions int
	closed   bool
}

// StartGitSSHServer listens on a free loopback port with a fresh ed25519 host
// key and accepts clients that authenticate with authorizedKey.
func StartGitSSHServer(root string, authorizedKey ssh.PublicKey) (*GitSSHServer, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, err
	}
	want := authorizedKey.Marshal()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if bytes.Equal(key.Marshal(), want) {
				return nil, nil
			}
			return nil, errors.New("unauthorized key")
		},
	}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("git ssh server: listen: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &GitSSHServer{
		root: root, ln: ln, config: cfg, hostKey: signer.PublicKey(),
		ctx: ctx, cancel: cancel, conns: map[net.Conn]struct{}{},
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

// Addr is host:port of the server.
func (s *GitSSHServer) Addr() string { return s.ln.Addr().String() }

// URL is the SSH URL of repository name, e.g. ssh://git@127.0.0.1:PORT/name/.git.
func (s *GitSSHServer) URL(name string) string {
	return "ssh://git@" + s.Addr() + "/" + strings.Trim(name, "/") + "/.git"
}

// HostKey is the server's public host key.
func (s *GitSSHServer) HostKey() ssh.PublicKey { return s.hostKey }

// KnownHosts is a known_hosts line for the server, as a client would store
// it ("[127.0.0.1]:PORT ssh-ed25519 AAAA...\n").
func (s *GitSSHServer) KnownHosts() []byte {
	return []byte(knownhosts.Line([]string{knownhosts.Normalize(s.Addr())}, s.hostKey) + "\n")
}

// Sessions counts the git commands the server ran (each ls-remote and each
// fetch over SSH is one).
func (s *GitSSHServer) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessions
}

// Close stops accepting, drops open connections, stops running git commands
// and waits for every goroutine the server started.
func (s *GitSSHServer) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.cancel()
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

func (s *GitSSHServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.serveConn(c)
	}
}

func (s *GitSSHServer) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}()
	sc, chans, reqs, err := ssh.NewServerConn(c, s.config)
	if err != nil {
		return
	}
	defer sc.Close()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go s.serveSession(ch, creqs)
	}
}

// serveSession runs the one exec request of a session; env requests (e.g.
// GIT_PROTOCOL) are honoured for git variables only.
func (s *GitSSHServer) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer s.wg.Done()
	defer ch.Close()
	var env []string
	for req := range reqs {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			if ssh.Unmarshal(req.Payload, &kv) == nil && strings.HasPrefix(kv.Name, "GIT_PROTOCOL") {
				env = append(env, kv.Name+"="+kv.Value)
			}
			_ = req.Reply(true, nil)
		case "exec":
			var cmd struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &cmd); err != nil {
				_ = req.Reply(false, nil)
				return
			}
			_ = req.Reply(true, nil)
			code := s.exec(ch, cmd.Command, env)
			status := make([]byte, 4)
			binary.BigEndian.PutUint32(status, uint32(code))
			_, _ = ch.SendRequest("exit-status", false, status)
			go ssh.DiscardRequests(reqs)
			return
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// exec runs `git-upload-pack '<path>'` or `git-receive-pack '<path>'` on
// root/<path> and returns its exit code.
func (s *GitSSHServer) exec(ch ssh.Channel, command string, env []string) int {
	verb, arg, _ := strings.Cut(command, " ")
	if verb != "git-upload-pack" && verb != "git-receive-pack" {
		fmt.Fprintf(ch.Stderr(), "unsupported command %q\n", verb)
		return 127
	}
	dir, err := s.repoDir(arg)
	if err != nil {
		fmt.Fprintf(ch.Stderr(), "%v\n", err)
		return 128
	}
	s.mu.Lock()
	s.sessions++
	s.mu.Unlock()
	cmd := exec.CommandContext(s.ctx, "git", strings.TrimPrefix(verb, "git-"), dir)
	cmd.Env = append(gitEnv(s.root), env...)
	cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
	// The client's input is copied by hand: exec would wait for that copy,
	// which only ends when the client closes its side, and a client waits for
	// the exit status first. The copy ends when the session's channel closes.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return 1
	}
	if err := cmd.Start(); err != nil {
		fmt.Fprintf(ch.Stderr(), "%v\n", err)
		return 127
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_, _ = io.Copy(stdin, ch)
		stdin.Close()
	}()
	if err := cmd.Wait(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() > 0 {
			return ee.ExitCode()
		}
		return 1
	}
	return 0
}

// repoDir unquotes the path argument and keeps it below root.
func (s *GitSSHServer) repoDir(arg string) (string, error) {
	p := strings.TrimSpace(arg)
	if len(p) >= 2 && (p[0] == '\'' || p[0] == '"') && p[len(p)-1] == p[0] {
		p = p[1 : len(p)-1]
	}
	p = strings.TrimPrefix(p, "~/")
	dir := filepath.Join(s.root, filepath.FromSlash(filepath.Clean("/"+p)))
	if dir != s.root && !strings.HasPrefix(dir, s.root+string(filepath.Separator)) {
		return "", fmt.Errorf("'%s' is outside the served root", arg)
	}
	return dir, nil
}
