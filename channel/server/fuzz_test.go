package server

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/channel/tunnel"
)

// FuzzChannelMessage: whatever bytes arrive as an agent's message, the
// hub decodes them, validates them as the stream does (a Hello, or a
// report after it) and masks credentials in what it would store, without
// a panic; what it accepts holds to what the hub relies on. Tunnel frames
// go to a hub-side multiplexer, which never panics or blocks on them.
// Warning events the hub accepts name a GitSync and are bounded.
func FuzzChannelMessage(f *testing.F) {
	for _, m := range []*channelpb.AgentMessage{
		{Msg: &channelpb.AgentMessage_Hello{Hello: &channelpb.Hello{AgentName: "prod", Version: "v1", ClusterUid: "uid"}}},
		{Msg: &channelpb.AgentMessage_Heartbeat{Heartbeat: &channelpb.Heartbeat{SentUnixMs: 1}}},
		{Msg: &channelpb.AgentMessage_Report{Report: &channelpb.SyncReport{
			Namespace: "apps", Name: "web", StateVersion: 1, SourceUrl: "https://oauth2:tok@h/a.git", Ref: "branch:main",
			Phase: "failed", Message: "git https://oauth2:tok@h/a.git: denied",
			Conditions: []*channelpb.Condition{{Type: "Ready", Status: "False", Reason: "FetchFailed"}},
			Namespaces: []*channelpb.NamespaceCount{{Namespace: "apps", Objects: 2}},
			Drift:      &channelpb.DriftSummary{Count: 1, Objects: []*channelpb.DriftedObject{{Kind: "ConfigMap", Name: "c", Paths: []string{"/data"}}}},
		}}},
		{Msg: &channelpb.AgentMessage_Report{Report: &channelpb.SyncReport{
			Namespace: "apps", Name: "web", StateVersion: 2, Ref: "tag:v1", Phase: "synced",
			SyncPhase: channelpb.Phase_PHASE_SYNCED, SourceRef: &channelpb.Ref{Kind: channelpb.RefKind_REF_KIND_TAG, Name: "v1",
				Commit: "0123456789abcdef0123456789abcdef01234567"},
		}}},
		{Msg: &channelpb.AgentMessage_Tunnel{Tunnel: &channelpb.TunnelFrame{StreamId: 1, Data: []byte("{}"), End: true,
			Response: &channelpb.TunnelResponse{Status: 200, Headers: []*channelpb.Header{{Name: "Content-Type", Values: []string{"application/json"}}}}}}},
		{Msg: &channelpb.AgentMessage_Tunnel{Tunnel: &channelpb.TunnelFrame{StreamId: 2, WindowUpdate: 1 << 31, Abort: "x"}}},
		{Msg: &channelpb.AgentMessage_Events{Events: &channelpb.WarningEvents{Events: []*channelpb.WarningEvent{{
			GitsyncNamespace: "apps", GitsyncName: "web", Kind: "Pod", Namespace: "apps", Name: "web-1",
			Reason: "BackOff", Message: "Back-off pulling image", Count: 2, FirstUnixMs: 1, LastUnixMs: 2,
		}}}}},
		{},
	} {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var m channelpb.AgentMessage
		if err := proto.Unmarshal(data, &m); err != nil {
			return // gRPC ends the stream with Internal: nothing reaches the hub
		}
		switch msg := m.GetMsg().(type) {
		case *channelpb.AgentMessage_Hello:
			if msg.Hello.Validate() == nil && (msg.Hello.GetAgentName() == "" || strings.Contains(msg.Hello.GetAgentName(), "/")) {
				t.Fatalf("accepted hello %v", msg.Hello)
			}
		case *channelpb.AgentMessage_Tunnel:
			// The hub's multiplexer takes any frame from the agent,
			// twice, without blocking or panicking.
			mux := tunnel.NewMux(func(context.Context, *channelpb.TunnelFrame) error { return nil }, nil, 4)
			for range 3 {
				if _, err := mux.Open(context.Background(), &channelpb.TunnelRequest{}, true); err != nil {
					t.Fatal(err)
				}
			}
			mux.Deliver(msg.Tunnel)
			mux.Deliver(msg.Tunnel)
			mux.Close(nil)
		case *channelpb.AgentMessage_Events:
			if msg.Events.Validate() != nil {
				return
			}
			if len(msg.Events.GetEvents()) > channelpb.MaxEventsPerBatch {
				t.Fatalf("accepted %d events in a batch", len(msg.Events.GetEvents()))
			}
			for _, e := range msg.Events.GetEvents() {
				if e.GetGitsyncNamespace() == "" || e.GetGitsyncName() == "" || strings.Contains(e.GetGitsyncNamespace()+e.GetGitsyncName(), "/") ||
					e.GetCount() < 1 || len(e.GetMessage()) > channelpb.MaxEventMessage {
					t.Fatalf("accepted event %v", e)
				}
			}
		case *channelpb.AgentMessage_Report:
			r := msg.Report
			if validReport(r) != nil {
				return
			}
			if r.GetNamespace() == "" || r.GetName() == "" || strings.Contains(r.GetNamespace()+r.GetName(), "/") || r.GetStateVersion() == 0 {
				t.Fatalf("accepted report %v", r)
			}
			// What the hub does with an accepted report.
			r.Normalize()
			channelpb.RedactReport(r, v1alpha1.RedactURL, v1alpha1.RedactString)
			if _, err := proto.Marshal(r); err != nil {
				t.Fatalf("an accepted, normalized, redacted report does not encode: %v", err)
			}
			if label := r.GetSyncPhase().Label(); label != "" && r.GetPhase() != label {
				t.Fatalf("normalized phase %q, sync_phase %s", r.GetPhase(), r.GetSyncPhase())
			}
		}
	})
}
