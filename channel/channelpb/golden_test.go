package channelpb

import (
	"encoding/hex"
	"testing"

	"google.golang.org/protobuf/proto"
)

// The wire is a contract between agents and hubs of different versions:
// these messages must encode to exactly these bytes, forever. A field
// renumbered, retyped or reused breaks this test; a field added does not.
var golden = []struct {
	name string
	msg  proto.Message
	hex  string
}{
	{
		// What an agent from before the tunnel sends: still a valid Hello.
		name: "hello before the tunnel",
		msg:  &AgentMessage{Msg: &AgentMessage_Hello{Hello: &Hello{AgentName: "prod", Version: "v1", ClusterUid: "uid"}}},
		hex:  "0a0f0a0470726f64120276311a03756964",
	},
	{
		name: "hello with the tunnel",
		msg: &AgentMessage{Msg: &AgentMessage_Hello{Hello: &Hello{AgentName: "prod", Version: "v2", ClusterUid: "uid",
			Features: []Feature{Feature_FEATURE_TUNNEL}}}},
		hex: "0a120a0470726f64120276321a03756964220101",
	},
	{
		name: "report",
		msg: &AgentMessage{Msg: &AgentMessage_Report{Report: &SyncReport{Namespace: "apps", Name: "web", StateVersion: 7,
			Ref: "branch:main", Revision: "main@sha1:abc", Phase: PhaseSynced}}},
		hex: "1a310a0461707073120377656218072a0b6272616e63683a6d61696e3a0d6d61696e40736861313a6162634a0673796e636564",
	},
	{
		name: "sync now",
		msg:  &HubMessage{Msg: &HubMessage_SyncNow{SyncNow: &SyncNow{Namespace: "apps", Name: "web", Reason: "push"}}},
		hex:  "12110a046170707312037765622a0470757368",
	},
	{
		name: "tunnel request",
		msg: &HubMessage{Msg: &HubMessage_Tunnel{Tunnel: &TunnelFrame{StreamId: 3, End: true, Request: &TunnelRequest{
			Method: "GET", Path: "/api/v1/pods", RawQuery: "watch=1",
			Headers: []*Header{{Name: "Accept", Values: []string{"application/json"}}},
			Caller:  &TunnelCaller{Kind: CallerKind_CALLER_KIND_PROJECT, Name: "shop"},
		}}}},
		hex: "2248080312420a03474554120c2f6170692f76312f706f64731a0777617463683d31221a0a0641636365707412106170706c69636174696f6e2f6a736f6e2a080801120473686f702801",
	},
	{
		name: "tunnel response with data",
		msg: &AgentMessage{Msg: &AgentMessage_Tunnel{Tunnel: &TunnelFrame{StreamId: 3, Data: []byte("{}"),
			Response: &TunnelResponse{Status: 200, Headers: []*Header{{Name: "Content-Type", Values: []string{"application/json"}}}}}}},
		hex: "222d08031a2508c80112200a0c436f6e74656e742d5479706512106170706c69636174696f6e2f6a736f6e22027b7d",
	},
	{
		name: "tunnel window update and abort",
		msg:  &HubMessage{Msg: &HubMessage_Tunnel{Tunnel: &TunnelFrame{StreamId: 3, WindowUpdate: 131072, Abort: "closed"}}},
		hex:  "220e0803308080083a06636c6f736564",
	},
	{
		name: "warning events",
		msg: &AgentMessage{Msg: &AgentMessage_Events{Events: &WarningEvents{Events: []*WarningEvent{{
			GitsyncNamespace: "apps", GitsyncName: "web", Kind: "Pod", Namespace: "shop", Name: "web-1",
			Reason: "Failed", Message: "ImagePullBackOff", Count: 3, FirstUnixMs: 1, LastUnixMs: 2,
		}}}}},
		hex: "2a3f0a3d0a046170707312037765621a03506f64220473686f702a057765622d3132064661696c65643a10496d61676550756c6c4261636b4f6666400348015002",
	},
	{
		name: "welcome with events",
		msg: &HubMessage{Msg: &HubMessage_Welcome{Welcome: &Welcome{HubVersion: "v2", HeartbeatSeconds: 20,
			Features: []Feature{Feature_FEATURE_EVENTS}}}},
		hex: "0a090a02763210141a0102",
	},
	{
		name: "report with a warning count",
		msg:  &AgentMessage{Msg: &AgentMessage_Report{Report: &SyncReport{Namespace: "apps", Name: "web", StateVersion: 7, WarningEvents: 4}}},
		hex:  "1a100a046170707312037765621807800104",
	},
}

func TestGoldenWire(t *testing.T) {
	for _, g := range golden {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(g.msg)
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(b); got != g.hex {
			t.Errorf("%s: encodes to\n%s\nwant\n%s", g.name, got, g.hex)
		}
		// And the pinned bytes decode to the same message.
		want, _ := hex.DecodeString(g.hex)
		back := g.msg.ProtoReflect().New().Interface()
		if err := proto.Unmarshal(want, back); err != nil || !proto.Equal(back, g.msg) {
			t.Errorf("%s: pinned bytes decode to %v (%v)", g.name, back, err)
		}
	}
}

// TestOldPeerDecodesNewMessages: a message with a field an older peer does
// not know still decodes for it, the field set aside as unknown. Welcome
// (1: string, 2: int32) stands in for an old Hello: same field 1, no
// field 4.
func TestOldPeerDecodesNewMessages(t *testing.T) {
	b, err := proto.Marshal(&Hello{AgentName: "prod", Features: []Feature{Feature_FEATURE_TUNNEL}})
	if err != nil {
		t.Fatal(err)
	}
	var w Welcome
	if err := proto.Unmarshal(b, &w); err != nil {
		t.Fatalf("an old reader fails on a new field: %v", err)
	}
	if w.GetHubVersion() != "prod" || len(w.ProtoReflect().GetUnknown()) == 0 {
		t.Errorf("decoded %v, unknown %x", &w, w.ProtoReflect().GetUnknown())
	}
}
