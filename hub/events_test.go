package hub

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/pgtest"
)

func warningEvent(gs, object, message string, count int64) *channelpb.WarningEvent {
	return &channelpb.WarningEvent{GitsyncNamespace: "apps", GitsyncName: gs, Kind: "Pod", Namespace: "shop", Name: object,
		Reason: "BackOff", Message: message, Count: count, FirstUnixMs: 1000, LastUnixMs: 2000}
}

// TestEventsFoldAndStayBounded, on SQLite and on PostgreSQL: events fold,
// unknown GitSyncs' are dropped, a flood leaves 50 in the database and
// nothing in the heap, a deleted GitSync's go with it.
func TestEventsFoldAndStayBounded(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testEventsFoldAndStayBounded(t, "") })
	t.Run("postgres", func(t *testing.T) { testEventsFoldAndStayBounded(t, pgtest.URL(t)) })
}

func testEventsFoldAndStayBounded(t *testing.T, dsn string) {
	s, _, _ := newHub(t, Options{DB: dsn})
	mustReport(t, s, "prod", rep("web", 1, "synced", shaA, shaA))
	ctx := context.Background()
	send := func(evs ...*channelpb.WarningEvent) {
		t.Helper()
		if err := s.Events(ctx, "prod", &channelpb.WarningEvents{Events: evs}); err != nil {
			t.Fatal(err)
		}
	}
	send(warningEvent("web", "web-1", "Back-off restarting", 1))
	send(warningEvent("web", "web-1", "Back-off restarting", 3), warningEvent("web", "web-2", "other", 1))
	recent := func(name string) []EventJSON {
		t.Helper()
		evs, err := s.recentEvents(ctx, "prod", "apps", name)
		if err != nil {
			t.Fatal(err)
		}
		return evs
	}
	got := recent("web")
	if len(got) != 2 || got[1].Name != "web-1" || got[1].Count != 4 || got[0].Name != "web-2" {
		t.Fatalf("events %+v; want web-2, then web-1 folded to count 4", got)
	}
	// Events of a GitSync the hub never had a report of are dropped.
	send(warningEvent("ghost", "x", "y", 1))
	if got := recent("ghost"); len(got) != 0 {
		t.Errorf("events kept for an unknown GitSync: %+v", got)
	}

	// A flood: 10,000 distinct events (1 KiB messages) for one GitSync,
	// and as many for unknown ones. The hub keeps the newest 50, in its
	// database; its heap holds none of them.
	start := time.Now()
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	msg := strings.Repeat("m", channelpb.MaxEventMessage-8)
	for i := 0; i < 10000; i += channelpb.MaxEventsPerBatch {
		var batch []*channelpb.WarningEvent
		for j := range channelpb.MaxEventsPerBatch {
			batch = append(batch, warningEvent("web", fmt.Sprintf("web-%d", i+j), msg+fmt.Sprint(i+j), 1),
				warningEvent(fmt.Sprintf("ghost%d", i+j), "x", msg, 1))
		}
		send(batch[:channelpb.MaxEventsPerBatch]...)
		send(batch[channelpb.MaxEventsPerBatch:]...)
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	took := time.Since(start)
	got = recent("web")
	if len(got) != store.EventsPerGitSync || got[0].Name != "web-9999" {
		t.Fatalf("%d events kept, newest %q; want %d, newest web-9999", len(got), got[0].Name, store.EventsPerGitSync)
	}
	// Every event is counted, as kept or as of an unknown GitSync.
	counted := func(result string) float64 {
		var m dto.Metric
		if err := s.metrics.events.WithLabelValues(result).Write(&m); err != nil {
			t.Fatal(err)
		}
		return m.GetCounter().GetValue()
	}
	if kept, unknown := counted("kept"), counted("unknown"); kept != 10003 || unknown != 10001 {
		t.Errorf("events counted kept %v, unknown %v; want 10003, 10001", kept, unknown)
	}
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("%s: 20,000 events of ~1 KiB in %v; heap in use before %d KiB, after %d KiB (grew %d KiB)",
		s.Store().Dialect(), took.Round(time.Millisecond), before.HeapInuse>>10, after.HeapInuse>>10, grew>>10)
	// 50 events of 1 KiB are 50 KiB; 20,000 kept would be 20 MiB.
	if grew > 4<<20 {
		t.Errorf("the hub's heap grew by %d KiB over a flood; its events are not bounded", grew>>10)
	}
	// A deleted GitSync's events go with it.
	del := rep("web", 2, "synced", "", "")
	del.Deleted = true
	mustReport(t, s, "prod", del)
	if got := recent("web"); len(got) != 0 {
		t.Errorf("a deleted GitSync keeps %d events", len(got))
	}
}

func TestGitSyncPage(t *testing.T) {
	s, base, d := newHub(t, Options{})
	twoProjects(t, s)
	ctx := context.Background()
	if err := s.Events(ctx, "prod", &channelpb.WarningEvents{Events: []*channelpb.WarningEvent{{
		GitsyncNamespace: "apps", GitsyncName: "shop-web", Kind: "Pod", Namespace: "shop", Name: "web-1",
		Reason: "Failed", Message: `<script>alert(1)</script> ImagePullBackOff`, Count: 2, FirstUnixMs: 1000, LastUnixMs: 2000,
	}}}); err != nil {
		t.Fatal(err)
	}
	reader := scoped(t, s, store.KindProject, "shop", "read")
	resyncer := scoped(t, s, store.KindProject, "shop", "read", "resync")

	// The overview links to the GitSync's page.
	c := browser(t)
	if resp, _ := postForm(t, c, base+"/login", url.Values{"token": {reader}}, base); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("login: %d", resp.StatusCode)
	}
	_, overview := fetch(t, c, base+"/")
	if !strings.Contains(overview, `href="gitsyncs/prod/apps/shop-web"`) {
		t.Fatalf("the overview does not link the GitSync's page:\n%s", overview)
	}
	resp, page := fetch(t, c, base+"/gitsyncs/prod/apps/shop-web")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	for _, want := range []string{"apps/shop-web", "ImagePullBackOff", "&lt;script&gt;", "Pod shop/web-1", shaA, "live",
		`src="../../../badge/prod/apps/shop-web.svg"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, "<script>") {
		t.Error("an event's message is not escaped")
	}
	if strings.Contains(page, `id="resync"`) {
		t.Error("a read-only token sees the resync button")
	}
	// The button posts back through the session.
	c2 := browser(t)
	postForm(t, c2, base+"/login", url.Values{"token": {resyncer}}, base)
	_, page = fetch(t, c2, base+"/gitsyncs/prod/apps/shop-web")
	if !strings.Contains(page, `<form class="act" method="post" action="shop-web/resync">`) {
		t.Fatalf("no resync button for a token with resync:\n%s", page)
	}
	if resp, _ := postForm(t, c2, base+"/gitsyncs/prod/apps/shop-web/resync", nil, "https://evil.example"); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site resync: %d", resp.StatusCode)
	}
	if len(d.calls()) != 0 {
		t.Fatalf("sent before the button: %q", d.calls())
	}
	resp, _ = postForm(t, c2, base+"/gitsyncs/prod/apps/shop-web/resync", nil, base)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "../shop-web?resync=sent" {
		t.Fatalf("resync button: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := d.calls(); len(got) != 1 || !strings.Contains(got[0], "apps/shop-web") {
		t.Errorf("SyncNow calls %q", got)
	}
	// The read-only session cannot post it either, and another project's
	// GitSync is refused.
	resp, _ = postForm(t, c, base+"/gitsyncs/prod/apps/shop-web/resync", nil, base)
	if resp.Header.Get("Location") != "../shop-web?resync=forbidden" {
		t.Errorf("read-only resync: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	resp, _ = postForm(t, c2, base+"/gitsyncs/prod/apps/billing-api/resync", nil, base)
	if resp.Header.Get("Location") != "../billing-api?resync=forbidden" {
		t.Errorf("resync of another project's: %q", resp.Header.Get("Location"))
	}
	if len(d.calls()) != 1 {
		t.Errorf("refused resyncs were sent: %q", d.calls())
	}
	_, page = fetch(t, c2, base+"/gitsyncs/prod/apps/shop-web?resync=sent")
	if !strings.Contains(page, "Sync requested") {
		t.Error("no notice after the resync")
	}
	if resp, _ := fetch(t, c2, base+"/gitsyncs/prod/apps/nope"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown GitSync page: %d", resp.StatusCode)
	}
	// Without a session: the login form.
	if resp, _ := get(t, base+"/gitsyncs/prod/apps/shop-web"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("page without a token: %d", resp.StatusCode)
	}
}
