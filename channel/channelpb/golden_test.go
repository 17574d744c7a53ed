package channelpb

import (
	"bytes"
	"encoding/hex"
	"os"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

type goldenMessage struct {
	name string
	msg  proto.Message
	hex  string
}

// The wire is a contract between agents and hubs of different versions:
// these messages must encode to exactly these bytes, forever. A field
// renumbered, retyped or reused breaks this test; a field added does not.
var golden = []goldenMessage{
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

// The report a new agent sends, in full, and what an agent from before
// sync_phase and source_ref sent for the same GitSync. Their bytes are
// committed (testdata/*.hex): sync's TestReportGolden builds the first from
// a GitSync with the agent's own code, and the hub's
// TestOldAndNewReportReadAlike reads both into the same state.
const (
	goldenReportFile    = "testdata/report.hex"
	goldenOldReportFile = "testdata/report-old.hex"
)

const (
	goldenApplied   = "0123456789abcdef0123456789abcdef01234567"
	goldenAttempted = "89abcdef0123456789abcdef0123456789abcdef"
)

// goldenReport is the full report of GitSync apps/web (drifted, at
// goldenApplied, last attempt goldenAttempted), as the agent queues it.
func goldenReport() *AgentMessage {
	return &AgentMessage{Msg: &AgentMessage_Report{Report: &SyncReport{
		Namespace: "apps", Name: "web", StateVersion: 1700000000000000000,
		SourceUrl: "https://redacted@git.example.com/team/app.git", Ref: "branch:main", Path: "deploy/prod",
		Revision: "main@sha1:" + goldenApplied, AttemptedRevision: "main@sha1:" + goldenAttempted,
		Phase: PhaseDrifted, Message: "1 object differs from Git",
		Conditions: []*Condition{
			{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "applied main@sha1:" + goldenApplied, LastTransitionUnixMs: 1700000000000},
			{Type: "Drifted", Status: "True", Reason: "DriftDetected", Message: "1 object differs from Git", LastTransitionUnixMs: 1700000060000},
		},
		Namespaces: []*NamespaceCount{{Namespace: "", Objects: 1}, {Namespace: "apps", Objects: 3}},
		Drift: &DriftSummary{Count: 1, Objects: []*DriftedObject{{
			Group: "apps", Kind: "Deployment", Namespace: "apps", Name: "web",
			Paths: []string{"/spec/replicas"}, Managers: []string{"kubectl-edit"}, DetectedUnixMs: 1700000060000,
		}}},
		LastSyncUnixMs: 1700000000000,
		WarningEvents:  2,
		SyncPhase:      Phase_PHASE_DRIFTED,
		SourceRef:      &Ref{Kind: RefKind_REF_KIND_BRANCH, Name: "main", Commit: goldenAttempted},
	}}}
}

// goldenOldReport is goldenReport as an agent from before the typed fields
// sends it: the same message without sync_phase and source_ref.
func goldenOldReport() *AgentMessage {
	m := goldenReport()
	m.GetReport().SyncPhase, m.GetReport().SourceRef = Phase_PHASE_UNSPECIFIED, nil
	return m
}

func readGolden(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestGoldenWire(t *testing.T) {
	golden := append(slices.Clone(golden),
		goldenMessage{"full report of a new agent", goldenReport(), readGolden(t, goldenReportFile)},
		goldenMessage{"full report of an agent from before sync_phase and source_ref", goldenOldReport(), readGolden(t, goldenOldReportFile)},
	)
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

// TestOldHubReadsNewReport: a hub from before sync_phase and source_ref
// skips fields 17 and 18 as unknown; what is left of the new agent's bytes
// is, byte for byte, the report an old agent sends. So an old hub reads
// the same phase, ref and everything else from either.
func TestOldHubReadsNewReport(t *testing.T) {
	newMsg, _ := hex.DecodeString(readGolden(t, goldenReportFile))
	oldMsg, _ := hex.DecodeString(readGolden(t, goldenOldReportFile))
	newReport, oldReport := reportField(t, newMsg), reportField(t, oldMsg)
	var known []byte
	for b := newReport; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if n < 0 || m < 0 {
			t.Fatalf("the new report does not parse at %x", b)
		}
		if num != 17 && num != 18 {
			known = append(known, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if !bytes.Equal(known, oldReport) {
		t.Errorf("without fields 17 and 18 the new report is\n%x\nthe old agent's is\n%x", known, oldReport)
	}
	// And the string fields an old hub reads are there, spelled as before.
	var r SyncReport
	if err := proto.Unmarshal(known, &r); err != nil || r.GetPhase() != PhaseDrifted || r.GetRef() != "branch:main" {
		t.Errorf("an old hub reads phase %q, ref %q (%v)", r.GetPhase(), r.GetRef(), err)
	}
}

// reportField is the SyncReport's bytes inside an encoded AgentMessage.
func reportField(t *testing.T, msg []byte) []byte {
	t.Helper()
	num, typ, n := protowire.ConsumeTag(msg)
	v, m := protowire.ConsumeBytes(msg[n:])
	if n < 0 || num != 3 || typ != protowire.BytesType || m < 0 || n+m != len(msg) {
		t.Fatalf("%x is not an AgentMessage with only a report", msg)
	}
	return v
}

// TestNewHubReadsOldReport: Normalize gives an old agent's report the
// typed phase and ref a new agent sends (the resolved commit aside: the
// old strings never carried it, the hub fills it from the revisions), and
// leaves a new agent's report as it is.
func TestNewHubReadsOldReport(t *testing.T) {
	old, neu := goldenOldReport().GetReport(), goldenReport().GetReport()
	old.Normalize()
	if old.GetSourceRef().GetCommit() != "" {
		t.Errorf("Normalize invented a commit: %v", old.GetSourceRef())
	}
	old.SourceRef.Commit = neu.GetSourceRef().GetCommit()
	if !proto.Equal(old, neu) {
		t.Errorf("the old report normalizes to\n%v\nthe new one is\n%v", old, neu)
	}
	again := proto.Clone(neu).(*SyncReport)
	again.Normalize()
	if !proto.Equal(again, neu) {
		t.Errorf("Normalize changed a new agent's report: %v", again)
	}
}
