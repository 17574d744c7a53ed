package store

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestProjects(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		for range 2 { // idempotent
			if err := s.CreateProject(ctx, "shop", []string{"https://git.example.com/Shop/web.git", "git@git.example.com:shop/api"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.CreateProject(ctx, "shop", []string{"https://user:secret@git.example.com/shop/extra"}); err != nil {
			t.Fatal(err)
		}
		if err := s.CreateProject(ctx, "billing", []string{"not a url"}); err == nil || !strings.Contains(err.Error(), "not a Git URL") {
			t.Fatalf("bad repo: %v", err)
		}
		ps, err := s.Projects(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(ps) != 1 || ps[0].Name != "shop" || len(ps[0].Repos) != 3 {
			t.Fatalf("projects = %+v; want shop with 3 repos, no billing (its repo was bad)", ps)
		}
		if strings.Contains(strings.Join(ps[0].Repos, " "), "secret") {
			t.Errorf("a credential was stored: %v", ps[0].Repos)
		}
		p, err := s.Project(ctx, "shop")
		if err != nil || !slices.Contains(p.Keys, "git.example.com/shop/web") || !slices.Contains(p.Keys, "git.example.com/shop/api") {
			t.Fatalf("Project = %+v, %v", p, err)
		}
		if _, err := s.Project(ctx, "nope"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown project: %v", err)
		}
	})
}

func TestScopedTokens(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		if _, err := s.CreateScopedToken(ctx, KindProject, "shop", []string{"read"}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("token of an unknown project: %v", err)
		}
		if err := s.CreateProject(ctx, "shop", nil); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateScopedToken(ctx, KindProject, "shop", nil); err == nil {
			t.Fatal("a token without actions was made")
		}
		tok, err := s.CreateScopedToken(ctx, KindProject, "shop", []string{"read", "resync"})
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.AuthenticateClient(ctx, tok)
		if err != nil || got.Kind != KindProject || got.Subject != "shop" || !slices.Equal(got.Actions, []string{"read", "resync"}) {
			t.Fatalf("AuthenticateClient = %+v, %v", got, err)
		}
		if _, err := s.Authenticate(ctx, KindAPI, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("a project token works as an operator's API token: %v", err)
		}
		agent, _ := s.CreateToken(ctx, KindAgent, "prod")
		if _, err := s.AuthenticateClient(ctx, agent); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("an agent token works as a client token: %v", err)
		}
		api, _ := s.CreateToken(ctx, KindAPI, "ops")
		if got, err := s.AuthenticateClient(ctx, api); err != nil || got.Kind != KindAPI || got.Subject != "ops" {
			t.Errorf("API token: %+v, %v", got, err)
		}
		if _, err := s.RevokeTokens(ctx, KindProject, "shop"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.AuthenticateClient(ctx, tok); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("revoked project token authenticates: %v", err)
		}
	})
}

func TestGitSyncHistory(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		t0 := uint64(time.Now().Add(-time.Hour).UnixNano())
		for i, sha := range []string{shaA, shaB} {
			if _, err := s.Ingest(ctx, "prod", report(t0+uint64(i)*uint64(time.Minute), "synced", "main@sha1:"+sha, "main@sha1:"+sha)); err != nil {
				t.Fatal(err)
			}
		}
		ds, err := s.History(ctx, "prod", "apps", "web", 10)
		if err != nil || len(ds) != 2 || ds[0].SHA != shaB || ds[0].State != StateLive || ds[1].SHA != shaA || ds[1].State != StateSuperseded {
			t.Fatalf("History = %+v, %v; want B live, then A superseded", ds, err)
		}
		if ds, _ := s.History(ctx, "prod", "apps", "web", 1); len(ds) != 1 {
			t.Errorf("limit 1: %d rows", len(ds))
		}
		if ds, _ := s.History(ctx, "staging", "apps", "web", 10); len(ds) != 0 {
			t.Errorf("another agent's GitSync has history: %+v", ds)
		}
	})
}
