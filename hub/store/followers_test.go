package store

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pressly/goose/v3"

	"tether.dev/tether/hub/giturl"
)

// A push finds the GitSyncs of its repository whatever spelling of the
// URL each GitSync uses, and no other: not another repository's, not a
// deleted one's.
func TestFollowers(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		for i, gs := range []struct{ agent, name, url string }{
			{"prod", "https", "https://git.example.com/team/app.git"},
			{"prod", "ssh", "git@git.example.com:team/app"},
			{"staging", "upper", "https://GIT.example.com/team/app"},
			{"prod", "other", "https://git.example.com/team/other.git"},
			{"prod", "gone", "https://git.example.com/team/app.git"},
			{"prod", "nourl", ""},
		} {
			r := report(uint64(i+1), "synced", "main@sha1:"+shaA, "")
			r.Name, r.SourceUrl = gs.name, gs.url
			if _, err := s.Ingest(ctx, gs.agent, r); err != nil {
				t.Fatal(err)
			}
		}
		gone := report(100, "synced", "", "")
		gone.Name, gone.SourceUrl, gone.Deleted = "gone", "https://git.example.com/team/app.git", true
		if _, err := s.Ingest(ctx, "prod", gone); err != nil {
			t.Fatal(err)
		}
		got, err := s.Followers(ctx, []string{giturl.Key("https://git.example.com/team/app"), giturl.Key("ssh://git@git.example.com/team/app.git"), ""})
		if err != nil {
			t.Fatal(err)
		}
		want := []Follower{
			{"prod", "apps", "https", "https://git.example.com/team/app.git", "branch:main"},
			{"prod", "apps", "ssh", "git@git.example.com:team/app", "branch:main"},
			{"staging", "apps", "upper", "https://GIT.example.com/team/app", "branch:main"},
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("followers (-want +got):\n%s", d)
		}
		if got, err := s.Followers(ctx, []string{"", ""}); err != nil || len(got) != 0 {
			t.Errorf("no keys: %v, %v", got, err)
		}
	})
}

// GitSyncs stored before migration 7 get their repository key when the
// store is opened by a hub that has it.
func TestRepoKeysFilledByMigration(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		d, err := openDB(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		p, err := goose.NewProvider(d.d.goose, d.DB, nil, goose.WithTableName(versionTable),
			goose.WithDisableGlobalRegistry(true), goose.WithGoMigrations(gooseMigrations(d.d)...))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.UpTo(ctx, 6); err != nil {
			t.Fatal(err)
		}
		if _, err := d.ExecContext(ctx, `INSERT INTO gitsyncs(agent, namespace, name, state_version, source_url, ref, updated)
			VALUES ('prod', 'apps', 'web', 1, 'git@git.example.com:team/app.git', 'branch:main', 1)`); err != nil {
			t.Fatal(err)
		}
		d.Close()
		s := open(t, dsn)
		got, err := s.Followers(ctx, []string{giturl.Key("https://git.example.com/team/app")})
		if err != nil || len(got) != 1 || got[0].Name != "web" {
			t.Errorf("followers after the migration: %+v, %v", got, err)
		}
	})
}
