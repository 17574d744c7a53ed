package agent

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
)

func cond(typ string, s metav1.ConditionStatus) metav1.Condition {
	return metav1.Condition{Type: typ, Status: s, Message: typ + " " + string(s)}
}

func TestPhase(t *testing.T) {
	T, F, U := metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown
	for _, tc := range []struct {
		name    string
		suspend bool
		conds   []metav1.Condition
		want    string
	}{
		{"new", false, nil, PhaseUnknown},
		{"ready", false, []metav1.Condition{cond("Ready", T)}, PhaseSynced},
		{"drifted", false, []metav1.Condition{cond("Ready", T), cond(v1alpha1.DriftedCondition, T)}, PhaseDrifted},
		{"drift corrected", false, []metav1.Condition{cond("Ready", T), cond(v1alpha1.DriftedCondition, F)}, PhaseSynced},
		{"failed", false, []metav1.Condition{cond("Ready", F)}, PhaseFailed},
		{"progressing", false, []metav1.Condition{cond("Ready", U), cond("Reconciling", T)}, PhaseProgressing},
		{"reconciling only", false, []metav1.Condition{cond("Reconciling", T)}, PhaseProgressing},
		{"stalled", false, []metav1.Condition{cond("Ready", U), cond("Stalled", T)}, PhaseFailed},
		{"suspended", true, []metav1.Condition{cond("Ready", T)}, PhaseSuspended},
	} {
		gs := &v1alpha1.GitSync{Spec: v1alpha1.GitSyncSpec{Suspend: tc.suspend}}
		gs.Status.Conditions = tc.conds
		if got, _ := phase(gs); got != tc.want {
			t.Errorf("%s: phase %s, want %s", tc.name, got, tc.want)
		}
	}
}

func TestRefString(t *testing.T) {
	for ref, want := range map[v1alpha1.GitRef]string{
		{}:                      "branch:main",
		{Branch: "dev"}:         "branch:dev",
		{Tag: "v1"}:             "tag:v1",
		{Semver: ">=1.0"}:       "semver:>=1.0",
		{Commit: "abc"}:         "commit:abc",
		{Branch: "x", Tag: "y"}: "tag:y",
	} {
		if got := refString(ref); got != want {
			t.Errorf("%+v: %s, want %s", ref, got, want)
		}
	}
}

// TestBufferNewestPerGitSync: a stopped clock still gives strictly
// increasing versions; only the newest state waits; an old ack does not
// drop a newer state.
func TestBufferNewestPerGitSync(t *testing.T) {
	frozen := time.Unix(1700000000, 0)
	b := newBuffer(func() time.Time { return frozen })
	c := &Client{buf: b}
	gs := &v1alpha1.GitSync{}
	gs.Namespace, gs.Name = "apps", "web"

	var versions []uint64
	for _, rev := range []string{"a", "b", "c"} {
		gs.Status.LastAppliedRevision = rev
		c.Report(gs)
		versions = append(versions, b.pending[key{"apps", "web"}].report.StateVersion)
	}
	if !(versions[0] < versions[1] && versions[1] < versions[2]) {
		t.Errorf("versions not increasing: %v", versions)
	}
	c.Forget("apps", "other")
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

	gs.Status.LastAppliedRevision = "d" // after the ack, still newer than before
	c.Report(gs)
	if v := b.pending[key{"apps", "web"}].report.StateVersion; v <= versions[2] {
		t.Errorf("version %d after an ack is not above %d", v, versions[2])
	}
}

// TestReportNeverBlocks: with nobody draining, reporting keeps going.
func TestReportNeverBlocks(t *testing.T) {
	c := &Client{buf: newBuffer(time.Now)}
	done := make(chan struct{})
	go func() {
		gs := &v1alpha1.GitSync{}
		gs.Namespace = "apps"
		for i := range 10000 {
			gs.Name = "gs-" + string(rune('a'+i%26))
			c.Report(gs)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Report blocked")
	}
	if c.Pending() != 26 {
		t.Errorf("pending %d, want 26", c.Pending())
	}
}

// TestReportCarriesNoCredentials: a token in the source URL or in a
// condition message does not leave the cluster, and the GitSync itself is
// left as it was.
func TestReportCarriesNoCredentials(t *testing.T) {
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		Spec: v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{
			URL: "https://oauth2:glpat-TOKEN1@gitlab.example.com/team/app.git"}},
	}
	gs.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: "FetchFailed",
		Message: "git https://oauth2:glpat-TOKEN2@gitlab.example.com/team/app.git: fetch: authentication failed"}}
	gs.Status.Drift = &v1alpha1.DriftStatus{Count: 1, Objects: []v1alpha1.DriftedObject{{Kind: "ConfigMap", Name: "c",
		Paths: []string{"/data/url=https://u:TOKEN3@h/x"}}}}
	r := toReport(gs)
	r.StateVersion = 1
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"TOKEN1", "TOKEN2", "TOKEN3", "oauth2"} {
		if strings.Contains(string(b), secret) {
			t.Errorf("the report carries %q", secret)
		}
	}
	if r.GetSourceUrl() != "https://redacted@gitlab.example.com/team/app.git" || r.GetPhase() != PhaseFailed ||
		!strings.HasPrefix(r.GetMessage(), "git https://redacted@gitlab.example.com/") {
		t.Errorf("report = %v", r)
	}
	if !strings.Contains(gs.Status.Drift.Objects[0].Paths[0], "TOKEN3") || !strings.Contains(gs.Spec.Source.URL, "TOKEN1") {
		t.Error("toReport changed the GitSync it was given")
	}
}

// TestReportWithinLimits: a GitSync with more than the protocol carries
// gives a report the hub accepts.
func TestReportWithinLimits(t *testing.T) {
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "big"}}
	for i := range channelpb.MaxNamespaces + 10 {
		gs.Status.Namespaces = append(gs.Status.Namespaces, v1alpha1.NamespaceCount{Namespace: fmt.Sprint("ns-", i), Objects: 1})
	}
	for i := range channelpb.MaxConditions + 3 {
		gs.Status.Conditions = append(gs.Status.Conditions, metav1.Condition{Type: fmt.Sprint("C", i), Status: metav1.ConditionTrue})
	}
	paths := make([]string, channelpb.MaxPaths+5)
	gs.Status.Drift = &v1alpha1.DriftStatus{Count: 200}
	for range channelpb.MaxDriftedObjects + 1 {
		gs.Status.Drift.Objects = append(gs.Status.Drift.Objects, v1alpha1.DriftedObject{Kind: "ConfigMap", Name: "c", Paths: paths, Managers: paths})
	}
	r := toReport(gs)
	r.StateVersion = 1
	if err := r.Validate(); err != nil {
		t.Errorf("the hub would refuse the report: %v", err)
	}
	if r.GetDrift().GetCount() != 200 {
		t.Errorf("drift count %d, want the whole count 200", r.GetDrift().GetCount())
	}
}
