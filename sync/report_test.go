package sync

import (
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
)

var updateGolden = flag.Bool("update-golden", false, "rewrite channel/channelpb/testdata/report*.hex from BuildReport")

// The wire's golden report (channelpb's golden_test.go pins the same
// bytes, the hub's tests read them).
const (
	goldenReportFile    = "../channel/channelpb/testdata/report.hex"
	goldenOldReportFile = "../channel/channelpb/testdata/report-old.hex"
	goldenApplied       = "0123456789abcdef0123456789abcdef01234567"
	goldenAttempted     = "89abcdef0123456789abcdef0123456789abcdef"
)

// goldenGitSync is apps/web: applied goldenApplied, the last attempt at
// goldenAttempted, Ready and drifted, with a token in its source URL.
func goldenGitSync() *v1alpha1.GitSync {
	t0 := metav1.NewTime(time.UnixMilli(1700000000000))
	t1 := metav1.NewTime(time.UnixMilli(1700000060000))
	return &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		Spec: v1alpha1.GitSyncSpec{
			Source: v1alpha1.GitSource{URL: "https://oauth2:glpat-TOKEN@git.example.com/team/app.git", Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:   "deploy/prod",
		},
		Status: v1alpha1.GitSyncStatus{
			Conditions: []metav1.Condition{
				{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonSucceeded,
					Message: "applied main@sha1:" + goldenApplied, LastTransitionTime: t0},
				{Type: v1alpha1.DriftedCondition, Status: metav1.ConditionTrue, Reason: v1alpha1.ReasonDriftDetected,
					Message: "1 object differs from Git", LastTransitionTime: t1},
			},
			LastAppliedRevision:   "main@sha1:" + goldenApplied,
			LastAttemptedRevision: "main@sha1:" + goldenAttempted,
			LastSyncTime:          &t0,
			Namespaces:            []v1alpha1.NamespaceCount{{Namespace: "", Objects: 1}, {Namespace: "apps", Objects: 3}},
			Drift: &v1alpha1.DriftStatus{Count: 1, Objects: []v1alpha1.DriftedObject{{
				APIVersion: "apps/v1", Kind: "Deployment", Namespace: "apps", Name: "web",
				Paths: []string{"/spec/replicas"}, Managers: []string{"kubectl-edit"}, DetectedTime: t1,
			}}},
		},
	}
}

// TestReportGolden: the report BuildReport makes of goldenGitSync, with
// the state_version and warning count the channel stamps on it, is the
// committed golden message, byte for byte. Run with -update-golden after a
// deliberate change to the wire, and review the diff of the .hex files.
func TestReportGolden(t *testing.T) {
	r := BuildReport(goldenGitSync())
	r.StateVersion, r.WarningEvents = 1700000000000000000, 2 // the channel's part
	if err := r.Validate(); err != nil {
		t.Fatalf("the hub would refuse the report: %v", err)
	}
	old := proto.Clone(r).(*channelpb.SyncReport)
	old.SyncPhase, old.SourceRef = channelpb.Phase_PHASE_UNSPECIFIED, nil
	for file, r := range map[string]*channelpb.SyncReport{goldenReportFile: r, goldenOldReportFile: old} {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Report{Report: r}})
		if err != nil {
			t.Fatal(err)
		}
		got := hex.EncodeToString(b)
		if *updateGolden {
			if err := os.WriteFile(file, []byte(got+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if got != strings.TrimSpace(string(want)) {
			t.Errorf("%s: BuildReport's message encodes to\n%s\nthe golden is\n%s", file, got, want)
		}
	}
}

func cond(typ string, s metav1.ConditionStatus) metav1.Condition {
	return metav1.Condition{Type: typ, Status: s, Message: typ + " " + string(s)}
}

// TestBuildReportPhase: every phase, typed and spelled, and the message
// that goes with it.
func TestBuildReportPhase(t *testing.T) {
	T, F, U := metav1.ConditionTrue, metav1.ConditionFalse, metav1.ConditionUnknown
	seen := map[channelpb.Phase]bool{}
	for _, tc := range []struct {
		name    string
		suspend bool
		conds   []metav1.Condition
		want    channelpb.Phase
		label   string
		message string
	}{
		{"new", false, nil, channelpb.Phase_PHASE_UNKNOWN, "unknown", ""},
		{"ready", false, []metav1.Condition{cond("Ready", T)}, channelpb.Phase_PHASE_SYNCED, "synced", "Ready True"},
		{"drifted", false, []metav1.Condition{cond("Ready", T), cond(v1alpha1.DriftedCondition, T)}, channelpb.Phase_PHASE_DRIFTED, "drifted", "Drifted True"},
		{"drift corrected", false, []metav1.Condition{cond("Ready", T), cond(v1alpha1.DriftedCondition, F)}, channelpb.Phase_PHASE_SYNCED, "synced", "Ready True"},
		{"failed", false, []metav1.Condition{cond("Ready", F)}, channelpb.Phase_PHASE_FAILED, "failed", "Ready False"},
		{"progressing", false, []metav1.Condition{cond("Ready", U), cond("Reconciling", T)}, channelpb.Phase_PHASE_PROGRESSING, "progressing", "Ready Unknown"},
		{"reconciling only", false, []metav1.Condition{cond("Reconciling", T)}, channelpb.Phase_PHASE_PROGRESSING, "progressing", ""},
		{"stalled", false, []metav1.Condition{cond("Ready", U), cond("Stalled", T)}, channelpb.Phase_PHASE_FAILED, "failed", "Stalled True"},
		{"suspended", true, []metav1.Condition{cond("Ready", T)}, channelpb.Phase_PHASE_SUSPENDED, "suspended", "Ready True"},
		{"suspended and stalled", true, []metav1.Condition{cond("Ready", F), cond("Stalled", T)}, channelpb.Phase_PHASE_SUSPENDED, "suspended", "Ready False"},
	} {
		seen[tc.want] = true
		t.Run(tc.name, func(t *testing.T) {
			gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"}, Spec: v1alpha1.GitSyncSpec{Suspend: tc.suspend}}
			gs.Status.Conditions = tc.conds
			r := BuildReport(gs)
			if r.GetSyncPhase() != tc.want || r.GetPhase() != tc.label || r.GetMessage() != tc.message {
				t.Errorf("sync_phase %s, phase %q, message %q; want %s, %q, %q", r.GetSyncPhase(), r.GetPhase(), r.GetMessage(), tc.want, tc.label, tc.message)
			}
		})
	}
	// The table covers every phase of the protocol, and each has a
	// string spelling for older hubs.
	for p := range channelpb.Phase_name {
		if p == 0 {
			continue
		}
		if !seen[channelpb.Phase(p)] || channelpb.Phase(p).Label() == "" {
			t.Errorf("phase %s: no case gives it, or it has no string spelling", channelpb.Phase(p))
		}
	}
}

// TestBuildReportRef: every ref kind, structured and spelled, with the
// commit the ref last resolved to.
func TestBuildReportRef(t *testing.T) {
	const sha = "0123456789abcdef0123456789abcdef01234567"
	const other = "fedcba9876543210fedcba9876543210fedcba98"
	seen := map[channelpb.RefKind]bool{}
	for _, tc := range []struct {
		name      string
		ref       v1alpha1.GitRef
		attempted string
		applied   string
		kind      channelpb.RefKind
		refName   string
		text      string
		commit    string
	}{
		{"no ref", v1alpha1.GitRef{}, "", "", channelpb.RefKind_REF_KIND_BRANCH, "main", "branch:main", ""},
		{"branch", v1alpha1.GitRef{Branch: "dev"}, "dev@sha1:" + sha, "", channelpb.RefKind_REF_KIND_BRANCH, "dev", "branch:dev", sha},
		{"tag", v1alpha1.GitRef{Tag: "v1"}, "", "v1@sha1:" + sha, channelpb.RefKind_REF_KIND_TAG, "v1", "tag:v1", sha},
		{"semver", v1alpha1.GitRef{Semver: ">=1.0 <2"}, "v1.4.0@sha1:" + other, "v1.3.0@sha1:" + sha, channelpb.RefKind_REF_KIND_SEMVER, ">=1.0 <2", "semver:>=1.0 <2", other},
		{"commit", v1alpha1.GitRef{Commit: sha}, "sha1:" + sha, "sha1:" + sha, channelpb.RefKind_REF_KIND_COMMIT, sha, "commit:" + sha, sha},
		{"two fields: the most exact", v1alpha1.GitRef{Branch: "x", Tag: "y"}, "", "", channelpb.RefKind_REF_KIND_TAG, "y", "tag:y", ""},
		{"a malformed revision", v1alpha1.GitRef{Branch: "main"}, "main@sha1:short", "main@sha1:" + sha, channelpb.RefKind_REF_KIND_BRANCH, "main", "branch:main", sha},
	} {
		seen[tc.kind] = true
		t.Run(tc.name, func(t *testing.T) {
			gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"}}
			gs.Spec.Source.Ref = tc.ref
			gs.Status.LastAttemptedRevision, gs.Status.LastAppliedRevision = tc.attempted, tc.applied
			r := BuildReport(gs)
			got := r.GetSourceRef()
			if got.GetKind() != tc.kind || got.GetName() != tc.refName || got.GetCommit() != tc.commit || r.GetRef() != tc.text {
				t.Errorf("source_ref %v, ref %q; want %s %q %q, %q", got, r.GetRef(), tc.kind, tc.refName, tc.commit, tc.text)
			}
		})
	}
	// The table covers every ref kind of the protocol, and each reads
	// back from its string spelling.
	for k := range channelpb.RefKind_name {
		if k == 0 {
			continue
		}
		ref := &channelpb.Ref{Kind: channelpb.RefKind(k), Name: "x"}
		if back := channelpb.ParseRef(ref.Text()); !seen[ref.GetKind()] || back.GetKind() != ref.GetKind() || back.GetName() != "x" {
			t.Errorf("ref kind %s: no case gives it, or its spelling %q reads back as %v", ref.GetKind(), ref.Text(), back)
		}
	}
}

// TestBuildReportCarriesNoCredentials: a token in the source URL or in a
// condition message does not leave the cluster, and the GitSync itself is
// left as it was.
func TestBuildReportCarriesNoCredentials(t *testing.T) {
	gs := &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: "apps", Name: "web"},
		Spec: v1alpha1.GitSyncSpec{Source: v1alpha1.GitSource{
			URL: "https://oauth2:glpat-TOKEN1@gitlab.example.com/team/app.git"}},
	}
	gs.Status.Conditions = []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionFalse, Reason: "FetchFailed",
		Message: "git https://oauth2:glpat-TOKEN2@gitlab.example.com/team/app.git: fetch: authentication failed"}}
	gs.Status.Drift = &v1alpha1.DriftStatus{Count: 1, Objects: []v1alpha1.DriftedObject{{Kind: "ConfigMap", Name: "c",
		Paths: []string{"/data/url=https://u:TOKEN3@h/x"}}}}
	r := BuildReport(gs)
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
	if r.GetSourceUrl() != "https://redacted@gitlab.example.com/team/app.git" || r.GetSyncPhase() != channelpb.Phase_PHASE_FAILED ||
		!strings.HasPrefix(r.GetMessage(), "git https://redacted@gitlab.example.com/") {
		t.Errorf("report = %v", r)
	}
	if !strings.Contains(gs.Status.Drift.Objects[0].Paths[0], "TOKEN3") || !strings.Contains(gs.Spec.Source.URL, "TOKEN1") {
		t.Error("BuildReport changed the GitSync it was given")
	}
}

// TestBuildReportWithinLimits: a GitSync with more than the protocol
// carries gives a report the hub accepts, with the whole counts.
func TestBuildReportWithinLimits(t *testing.T) {
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
	r := BuildReport(gs)
	r.StateVersion = 1
	if err := r.Validate(); err != nil {
		t.Errorf("the hub would refuse the report: %v", err)
	}
	if r.GetDrift().GetCount() != 200 {
		t.Errorf("drift count %d, want the whole count 200", r.GetDrift().GetCount())
	}
}

// sink records what a Reporter made by ReportTo sends.
type sink struct {
	reports []*channelpb.SyncReport
	urls    []string
}

func (s *sink) Send(r *channelpb.SyncReport, sourceURL string) {
	s.reports = append(s.reports, r)
	s.urls = append(s.urls, sourceURL)
}

// TestReportTo: the Reporter sync hands GitSyncs to builds a report of
// each, with the source URL as the cluster spells it beside it, and a
// deleted report for a GitSync gone; nameless calls send nothing.
func TestReportTo(t *testing.T) {
	s := &sink{}
	rep := ReportTo(s)
	gs := goldenGitSync()
	rep.Report(gs)
	rep.Forget("apps", "gone")
	rep.Report(nil)
	rep.Report(&v1alpha1.GitSync{})
	rep.Forget("apps", "")
	if len(s.reports) != 2 {
		t.Fatalf("sent %d reports, want 2: %v", len(s.reports), s.reports)
	}
	if want := BuildReport(gs); !proto.Equal(s.reports[0], want) || s.urls[0] != gs.Spec.Source.URL {
		t.Errorf("sent %v with URL %q", s.reports[0], s.urls[0])
	}
	gone := s.reports[1]
	if !gone.GetDeleted() || gone.GetName() != "gone" || gone.GetSyncPhase() != channelpb.Phase_PHASE_UNKNOWN ||
		gone.GetPhase() != channelpb.PhaseUnknown || s.urls[1] != "" {
		t.Errorf("deleted report %v with URL %q", gone, s.urls[1])
	}
}
