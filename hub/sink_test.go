package hub

import (
	"context"
	"encoding/hex"
	"os"
	"reflect"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
)

// goldenReport decodes one of the channel's golden messages (the report
// of GitSync apps/web as a new agent sends it, or as an agent from before
// sync_phase and source_ref sent the same state).
func goldenReport(t *testing.T, file string) *channelpb.SyncReport {
	t.Helper()
	h, err := os.ReadFile("../channel/channelpb/testdata/" + file)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	var m channelpb.AgentMessage
	if err := proto.Unmarshal(b, &m); err != nil || m.GetReport() == nil {
		t.Fatalf("%s: %v, %v", file, &m, err)
	}
	return m.GetReport()
}

// TestOldAndNewReportReadAlike: the same state reported by an agent from
// before the typed phase and ref (strings only) and by a new agent (both)
// reads the same at the hub: the stored GitSync, its whole report, the API's
// JSON, and the commit status it implies.
func TestOldAndNewReportReadAlike(t *testing.T) {
	s, url, _ := newHub(t, Options{})
	ctx := context.Background()
	tok, _ := s.Store().CreateToken(ctx, store.KindAPI, "ci")
	old, neu := goldenReport(t, "report-old.hex"), goldenReport(t, "report.hex")
	if old.GetSyncPhase() != channelpb.Phase_PHASE_UNSPECIFIED || old.GetSourceRef() != nil || neu.GetSourceRef() == nil {
		t.Fatalf("the goldens are not an old and a new report: %v / %v", old, neu)
	}
	mustReport(t, s, "old", old)
	mustReport(t, s, "new", neu)

	got := map[string]store.GitSync{}
	for _, agent := range []string{"old", "new"} {
		g, err := s.Store().GitSync(ctx, agent, "apps", "web")
		if err != nil {
			t.Fatal(err)
		}
		got[agent] = g
	}
	o, n := got["old"], got["new"]
	o.Agent, o.Updated = n.Agent, n.Updated
	if !reflect.DeepEqual(o, n) {
		t.Errorf("stored GitSyncs differ:\nold agent %+v\nnew agent %+v", got["old"], n)
	}
	if n.Phase != channelpb.PhaseDrifted || n.Ref != "branch:main" || n.RefKind != "branch" || n.RefName != "main" {
		t.Errorf("stored %+v", n)
	}
	if ro, rn := readReport(old), readReport(neu); ro.GetSyncPhase() != channelpb.Phase_PHASE_DRIFTED ||
		ro.GetSourceRef().GetCommit() != rn.GetSourceRef().GetCommit() || rn.GetSourceRef().GetCommit() != store.SHA(n.AttemptedRevision) {
		t.Errorf("read reports: old agent %v, new agent %v", ro, rn)
	}

	var api struct {
		GitSyncs []map[string]any `json:"gitsyncs"`
	}
	decode(t, url+"/api/v1/gitsyncs", tok, &api)
	byAgent := map[string]map[string]any{}
	for _, g := range api.GitSyncs {
		byAgent[g["agent"].(string)] = g
		for _, k := range []string{"agent", "badge", "page", "updated"} { // name the agent, or when the hub stored it
			delete(g, k)
		}
	}
	if len(byAgent) != 2 || !reflect.DeepEqual(byAgent["old"], byAgent["new"]) {
		t.Errorf("the API shows\nold agent %v\nnew agent %v", byAgent["old"], byAgent["new"])
	}

	so, okOld := s.commitStatus("x", readReport(old))
	sn, okNew := s.commitStatus("x", readReport(neu))
	if okOld != okNew || so != sn {
		t.Errorf("commit status: old agent %+v %v, new agent %+v %v", so, okOld, sn, okNew)
	}
}
