package store

import (
	"context"
	"testing"

	"tether.dev/tether/channel/channelpb"
)

// A GitSync read while a newer report of it is written comes whole from
// one moment: its row and its child rows (conditions) agree, on both
// databases, whether read alone or in a list.
func TestReadIsOneSnapshot(t *testing.T) {
	eachDB(t, func(t *testing.T, dsn string) {
		ctx := context.Background()
		s := open(t, dsn)
		withReason := func(version uint64, reason string) *channelpb.SyncReport {
			r := report(version, "synced", "main@sha1:"+shaA, "main@sha1:"+shaA)
			r.Conditions = []*channelpb.Condition{{Type: "Ready", Status: "True", Reason: reason}}
			return r
		}
		if _, err := s.Ingest(ctx, "prod", withReason(1, "v1")); err != nil {
			t.Fatal(err)
		}
		version := uint64(1)
		// Between the GitSync's row and its conditions, a newer report
		// lands.
		s.testBetweenReads = func() {
			version++
			if stored, err := s.Ingest(ctx, "prod", withReason(version, "v"+string(rune('0'+version)))); err != nil || !stored {
				t.Errorf("report %d written mid-read: stored %v, %v", version, stored, err)
			}
		}
		check := func(what string, g GitSync) {
			t.Helper()
			want := "v" + string(rune('0'+g.StateVersion))
			if len(g.Conditions) != 1 || g.Conditions[0].Reason != want {
				t.Errorf("%s: state version %d with conditions %+v, want the reason %s of that version", what, g.StateVersion, g.Conditions, want)
			}
		}
		g, err := s.GitSync(ctx, "prod", "apps", "web")
		if err != nil {
			t.Fatal(err)
		}
		check("GitSync", g)
		gs, err := s.GitSyncs(ctx, "")
		if err != nil || len(gs) != 1 {
			t.Fatalf("GitSyncs: %v, %v", gs, err)
		}
		check("GitSyncs", gs[0])
		s.testBetweenReads = nil
		// The writes mid-read landed: the next read sees the newest.
		if g, err = s.GitSync(ctx, "prod", "apps", "web"); err != nil || g.StateVersion != version {
			t.Fatalf("after: version %d, %v; want %d", g.StateVersion, err, version)
		}
		check("after", g)
	})
}
