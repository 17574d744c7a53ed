package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/pgtest"
)

// tether runs the CLI with args and returns its stdout and error.
func runTether(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCmd()
	var out, errOut bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&errOut)
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// The hub's token and project commands work on both databases.
func TestHubProjectsAndScopedTokens(t *testing.T) {
	for _, dbName := range []string{"sqlite", "postgres"} {
		t.Run(dbName, func(t *testing.T) {
			db := filepath.Join(t.TempDir(), "hub.db")
			if dbName == "postgres" {
				db = pgtest.URL(t)
			}
			for range 2 { // idempotent
				if _, err := runTether(t, "hub", "project", "create", "--db", db, "--name", "shop",
					"--repo", "https://git.example.com/shop/web.git", "--repo", "git@git.example.com:shop/api"); err != nil {
					t.Fatal(err)
				}
			}
			out, err := runTether(t, "hub", "project", "list", "--db", db)
			if err != nil || strings.Count(out, "\n") != 1 || !strings.HasPrefix(out, "shop\t") || strings.Count(out, "git.example.com") != 2 {
				t.Fatalf("project list = %q, %v", out, err)
			}
			tok, err := runTether(t, "hub", "token", "create", "--db", db, "--project", "shop", "--actions", "read,resync,proxy")
			if err != nil || strings.Count(tok, "\n") != 1 || len(strings.TrimSpace(tok)) < 43 {
				t.Fatalf("project token = %q, %v; want the token alone", tok, err)
			}
			user, err := runTether(t, "hub", "token", "create", "--db", db, "--user", "alice", "--actions", "read")
			if err != nil {
				t.Fatal(err)
			}
			api, err := runTether(t, "hub", "token", "create", "--db", db, "--api", "--name", "ops")
			if err != nil {
				t.Fatal(err)
			}
			st, err := store.Open(context.Background(), db)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			for _, c := range []struct{ tok, kind, subject, actions string }{
				{tok, store.KindProject, "shop", "read,resync,proxy"},
				{user, store.KindUser, "alice", "read"},
				{api, store.KindAPI, "ops", ""},
			} {
				got, err := st.AuthenticateClient(context.Background(), strings.TrimSpace(c.tok))
				if err != nil || got.Kind != c.kind || got.Subject != c.subject || strings.Join(got.Actions, ",") != c.actions {
					t.Errorf("%s %s token: %+v, %v", c.kind, c.subject, got, err)
				}
			}

			for _, c := range []struct {
				args []string
				want string
			}{
				{[]string{"--project", "shop", "--actions", "read,admin"}, `unknown action "admin"`},
				{[]string{"--project", "shop"}, "at least one action"},
				{[]string{"--project", "nope", "--actions", "read"}, "project token for nope: project nope: not found"},
				{[]string{"--project", "shop", "--user", "alice", "--actions", "read"}, "give one of --agent, --api --name, --project or --user"},
				{[]string{"--api", "--name", "ci", "--actions", "read"}, "--actions goes with --project or --user"},
			} {
				out, err := runTether(t, append([]string{"hub", "token", "create", "--db", db}, c.args...)...)
				if err == nil || !strings.Contains(err.Error(), c.want) || out != "" {
					t.Errorf("token create %v: %q, %v; want an error with %q", c.args, out, err, c.want)
				}
			}
			if _, err := runTether(t, "hub", "project", "create", "--db", db, "--name", "bad", "--repo", "nota url"); err == nil || !strings.Contains(err.Error(), "not a Git URL") {
				t.Errorf("project with a bad repo: %v", err)
			}
			if _, err := runTether(t, "hub", "project", "create", "--db", db, "--name", "bad/name"); err == nil {
				t.Error("a project name with a slash is accepted")
			}
		})
	}
}

// A PostgreSQL password never shows in an error or in help.
func TestHubDBPasswordHidden(t *testing.T) {
	_, err := runTether(t, "hub", "token", "create", "--db", "postgres://tether:s3cret-pw@127.0.0.1:1/hub?sslmode=disable&connect_timeout=5", "--agent", "prod")
	if err == nil || strings.Contains(err.Error(), "s3cret-pw") {
		t.Errorf("error %v: want a failure without the password", err)
	}
	t.Setenv(dbEnv, "postgres://tether:s3cret-pw@db.example.com/hub")
	out, err := runTether(t, "hub", "project", "list", "--help")
	if err != nil || strings.Contains(out, "s3cret-pw") || !strings.Contains(out, "db.example.com") {
		t.Errorf("help with $%s set: %v\n%s", dbEnv, err, out)
	}
}
