package agent

import (
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
)

// report is a ready report, as the sync loop builds one.
func report(ns, name, rev string) *channelpb.SyncReport {
	return &channelpb.SyncReport{Namespace: ns, Name: name, Revision: rev, SyncPhase: channelpb.Phase_PHASE_SYNCED,
		SourceRef: &channelpb.Ref{Kind: channelpb.RefKind_REF_KIND_BRANCH, Name: "main"}}
}

// TestBufferNewestPerGitSync: a stopped clock still gives strictly
// increasing versions; only the newest state waits; an old ack does not
// drop a newer state.
func TestBufferNewestPerGitSync(t *testing.T) {
	frozen := time.Unix(1700000000, 0)
	b := newBuffer(func() time.Time { return frozen })
	c := &Client{buf: b}

	var versions []uint64
	for _, rev := range []string{"a", "b", "c"} {
		c.Send(report("apps", "web", rev), "")
		versions = append(versions, b.pending[key{"apps", "web"}].report.StateVersion)
	}
	if !(versions[0] < versions[1] && versions[1] < versions[2]) {
		t.Errorf("versions not increasing: %v", versions)
	}
	c.Send(&channelpb.SyncReport{Namespace: "apps", Name: "other", Deleted: true}, "")
	if b.len() != 2 {
		t.Fatalf("pending %d, want 2", b.len())
	}
	due := b.due(1)
	byName := map[string]*channelpb.SyncReport{}
	for _, r := range due {
		byName[r.GetName()] = r
	}
	if len(due) != 2 || byName["web"].GetRevision() != "c" || !byName["other"].GetDeleted() {
		t.Fatalf("due = %v", due)
	}
	if again := b.due(1); len(again) != 0 {
		t.Errorf("due twice on one session: %v", again)
	}
	if again := b.due(2); len(again) != 2 {
		t.Errorf("a new session must send everything unacked, got %d", len(again))
	}

	b.ack("apps", "web", versions[1]) // an ack for an older state
	if b.len() != 2 {
		t.Error("an old ack dropped the newest state")
	}
	b.ack("apps", "web", versions[2])
	b.ack("apps", "other", byName["other"].StateVersion)
	if b.len() != 0 {
		t.Errorf("pending %d after acks", b.len())
	}

	c.Send(report("apps", "web", "d"), "") // after the ack, still newer than before
	if v := b.pending[key{"apps", "web"}].report.StateVersion; v <= versions[2] {
		t.Errorf("version %d after an ack is not above %d", v, versions[2])
	}
}

// TestSendNeverBlocks: with nobody draining, sending keeps going.
func TestSendNeverBlocks(t *testing.T) {
	c := &Client{buf: newBuffer(time.Now)}
	done := make(chan struct{})
	go func() {
		for i := range 10000 {
			c.Send(report("apps", "gs-"+string(rune('a'+i%26)), "r"), "")
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Send blocked")
	}
	if c.Pending() != 26 {
		t.Errorf("pending %d, want 26", c.Pending())
	}
}

type counter map[string]int64

func (c counter) Count(ns, name string) int64 { return c[ns+"/"+name] }

// TestSendCompletesTheReport: Send adds what only the channel knows (the
// warning count, the state_version) and the string spellings an older hub
// reads, and keeps the URL with credentials for "sync now".
func TestSendCompletesTheReport(t *testing.T) {
	c := &Client{buf: newBuffer(time.Now), sources: sources{m: map[string]map[string]bool{}}}
	var w WarningCounter = counter{"apps/web": 4}
	c.CountWarnings(w)

	r := report("apps", "web", "main@sha1:abc")
	r.SourceUrl = "https://redacted@git.example/app.git"
	c.Send(r, "https://oauth2:TOKEN@git.example/app.git")
	c.Send(&channelpb.SyncReport{Namespace: "apps", Name: "gone", Deleted: true}, "")

	got := map[string]*channelpb.SyncReport{}
	for _, r := range c.buf.due(1) {
		got[r.GetName()] = r
	}
	web := got["web"]
	if web.GetPhase() != channelpb.PhaseSynced || web.GetRef() != "branch:main" || web.GetWarningEvents() != 4 || web.GetStateVersion() == 0 {
		t.Errorf("report sent %v", web)
	}
	if gone := got["gone"]; gone.GetWarningEvents() != 0 || !gone.GetDeleted() {
		t.Errorf("deleted report sent %v", gone)
	}
	msgs := c.sources.resolve(&channelpb.SyncNow{RepoUrl: "https://redacted@git.example/app.git"})
	if len(msgs) != 1 || msgs[0].GetRepoUrl() != "https://oauth2:TOKEN@git.example/app.git" {
		t.Errorf("sync now for the redacted URL resolves to %v", msgs)
	}
	if msgs := c.sources.resolve(&channelpb.SyncNow{RepoUrl: "https://other.example/x.git"}); len(msgs) != 1 || msgs[0].GetRepoUrl() != "https://other.example/x.git" {
		t.Errorf("sync now for an unknown URL resolves to %v", msgs)
	}
}
