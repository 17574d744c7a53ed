package channelpb

import (
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/api/v1alpha1"
)

func validReport() *SyncReport {
	return &SyncReport{
		Namespace: "apps", Name: "web", StateVersion: 1, SourceUrl: "https://git.example.com/app.git",
		Ref: "branch:main", Path: "deploy", Revision: "main@sha1:0123456789abcdef0123456789abcdef01234567",
		Phase: PhaseSynced, Message: "applied",
		Conditions: []*Condition{{Type: "Ready", Status: "True", Reason: "Succeeded", Message: "ok"}},
		Namespaces: []*NamespaceCount{{Namespace: "apps", Objects: 3}},
		Drift:      &DriftSummary{Count: 1, Objects: []*DriftedObject{{Kind: "ConfigMap", Name: "cfg", Paths: []string{"/data/x"}}}},
	}
}

func TestValidateReport(t *testing.T) {
	if err := validReport().Validate(); err != nil {
		t.Fatalf("a valid report: %v", err)
	}
	long := strings.Repeat("x", MaxTextLength+1)
	many := func(n int) []string { return make([]string, n) }
	for _, tc := range []struct {
		name   string
		change func(r *SyncReport)
		want   string
	}{
		{"nil", nil, "report: empty"},
		{"no name", func(r *SyncReport) { r.Name = "" }, "report: name is empty"},
		{"no namespace", func(r *SyncReport) { r.Namespace = "" }, "report: namespace is empty"},
		{"slash in name", func(r *SyncReport) { r.Name = "a/b" }, "contains '/'"},
		{"control character", func(r *SyncReport) { r.Namespace = "a\nb" }, "control character"},
		{"long name", func(r *SyncReport) { r.Name = strings.Repeat("n", MaxNameLength+1) }, "longer than 253"},
		{"no state version", func(r *SyncReport) { r.StateVersion = 0 }, "report apps/web: state_version is 0"},
		{"bad phase", func(r *SyncReport) { r.Phase = "exploded" }, `unknown phase "exploded"`},
		{"bad ref", func(r *SyncReport) { r.Ref = "main" }, `ref "main" is not`},
		{"empty ref value", func(r *SyncReport) { r.Ref = "branch:" }, `ref "branch:" is not`},
		{"bad condition status", func(r *SyncReport) { r.Conditions[0].Status = "Maybe" }, `status "Maybe"`},
		{"long message", func(r *SyncReport) { r.Message = long }, "message longer than"},
		{"long URL", func(r *SyncReport) { r.SourceUrl = long }, "source_url longer than"},
		{"long condition message", func(r *SyncReport) { r.Conditions[0].Message = long }, "condition 0: message longer"},
		{"many conditions", func(r *SyncReport) {
			for range MaxConditions {
				r.Conditions = append(r.Conditions, &Condition{Type: "X", Status: "True"})
			}
		}, "33 conditions, at most 32"},
		{"many namespaces", func(r *SyncReport) { r.Namespaces = make([]*NamespaceCount, MaxNamespaces+1) }, "namespaces, at most"},
		{"negative objects", func(r *SyncReport) { r.Namespaces[0].Objects = -1 }, "namespace count 0 is malformed"},
		{"many drifted objects", func(r *SyncReport) { r.Drift.Objects = make([]*DriftedObject, MaxDriftedObjects+1) }, "drifted objects, at most"},
		{"many paths", func(r *SyncReport) { r.Drift.Objects[0].Paths = many(MaxPaths + 1) }, "paths, at most"},
		{"many managers", func(r *SyncReport) { r.Drift.Objects[0].Managers = many(MaxPaths + 1) }, "managers, at most"},
		{"long path", func(r *SyncReport) { r.Drift.Objects[0].Paths = []string{long} }, "a path or manager longer"},
		{"negative drift count", func(r *SyncReport) { r.Drift.Count = -1 }, "drift count -1"},
		{"typed phase disagrees", func(r *SyncReport) { r.SyncPhase = Phase_PHASE_FAILED }, `sync_phase PHASE_FAILED disagrees with phase "synced"`},
		{"typed ref disagrees", func(r *SyncReport) { r.SourceRef = &Ref{Kind: RefKind_REF_KIND_TAG, Name: "main"} }, `source_ref "tag:main" disagrees with ref "branch:main"`},
		{"typed ref without a name", func(r *SyncReport) { r.SourceRef = &Ref{Kind: RefKind_REF_KIND_BRANCH} }, "source_ref of kind REF_KIND_BRANCH has no name"},
		{"typed ref with a short commit", func(r *SyncReport) { r.SourceRef = &Ref{Kind: RefKind_REF_KIND_BRANCH, Name: "main", Commit: "abc"} }, `source_ref commit "abc" is not`},
		{"typed ref with an upper-case commit", func(r *SyncReport) {
			r.SourceRef = &Ref{Kind: RefKind_REF_KIND_BRANCH, Name: "main", Commit: strings.Repeat("A", 40)}
		}, "source_ref commit"},
		{"long typed ref name", func(r *SyncReport) { r.Ref, r.SourceRef = "", &Ref{Kind: RefKind_REF_KIND_SEMVER, Name: long} }, "source_ref name longer than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *SyncReport
			if tc.change != nil {
				r = validReport()
				tc.change(r)
			}
			err := r.Validate()
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an ErrInvalid saying %q", err, tc.want)
			}
		})
	}
}

// TestValidateTypedReport: typed phase and ref that agree with the
// strings, or stand alone, or carry values of a newer version, pass.
func TestValidateTypedReport(t *testing.T) {
	for name, change := range map[string]func(r *SyncReport){
		"both spellings": func(r *SyncReport) {
			r.SyncPhase, r.SourceRef = Phase_PHASE_SYNCED, &Ref{Kind: RefKind_REF_KIND_BRANCH, Name: "main", Commit: strings.Repeat("a", 40)}
		},
		"typed only": func(r *SyncReport) {
			r.Phase, r.Ref = "", ""
			r.SyncPhase, r.SourceRef = Phase_PHASE_DRIFTED, &Ref{Kind: RefKind_REF_KIND_COMMIT, Name: strings.Repeat("b", 40)}
		},
		"a SHA-256 commit": func(r *SyncReport) {
			r.SourceRef = &Ref{Kind: RefKind_REF_KIND_BRANCH, Name: "main", Commit: strings.Repeat("c", 64)}
		},
		"values of a newer version": func(r *SyncReport) {
			r.SyncPhase, r.SourceRef = Phase(42), &Ref{Kind: RefKind(9), Name: "whatever:it-is"}
		},
	} {
		r := validReport()
		change(r)
		if err := r.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestNormalize: whichever spelling an agent sent, both are there after,
// the typed one winning; values this version does not know are kept.
func TestNormalize(t *testing.T) {
	branch := func(name string) *Ref { return &Ref{Kind: RefKind_REF_KIND_BRANCH, Name: name} }
	for _, tc := range []struct {
		name     string
		in, want *SyncReport
	}{
		{"old agent", &SyncReport{Phase: "failed", Ref: "semver:>=1"},
			&SyncReport{Phase: "failed", Ref: "semver:>=1", SyncPhase: Phase_PHASE_FAILED, SourceRef: &Ref{Kind: RefKind_REF_KIND_SEMVER, Name: ">=1"}}},
		{"typed only", &SyncReport{SyncPhase: Phase_PHASE_SUSPENDED, SourceRef: &Ref{Kind: RefKind_REF_KIND_COMMIT, Name: "abc", Commit: "abc"}},
			&SyncReport{Phase: "suspended", Ref: "commit:abc", SyncPhase: Phase_PHASE_SUSPENDED, SourceRef: &Ref{Kind: RefKind_REF_KIND_COMMIT, Name: "abc", Commit: "abc"}}},
		{"typed wins", &SyncReport{Phase: "failed", Ref: "branch:a", SyncPhase: Phase_PHASE_SYNCED, SourceRef: branch("b")},
			&SyncReport{Phase: "synced", Ref: "branch:b", SyncPhase: Phase_PHASE_SYNCED, SourceRef: branch("b")}},
		{"nothing", &SyncReport{}, &SyncReport{}},
		{"unknown strings", &SyncReport{Phase: "exploded", Ref: "main"}, &SyncReport{Phase: "exploded", Ref: "main"}},
		{"a newer agent's values", &SyncReport{Phase: "failed", Ref: "tag:v1", SyncPhase: Phase(42), SourceRef: &Ref{Kind: RefKind(9), Name: "x"}},
			&SyncReport{Phase: "failed", Ref: "tag:v1", SyncPhase: Phase(42), SourceRef: &Ref{Kind: RefKind(9), Name: "x"}}},
	} {
		tc.in.Normalize()
		if !proto.Equal(tc.in, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.in, tc.want)
		}
	}
	(*SyncReport)(nil).Normalize() // no panic
}

func TestValidateHello(t *testing.T) {
	if err := (&Hello{AgentName: "prod-eu", Version: "v1", ClusterUid: "uid"}).Validate(); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Hello{nil, {}, {AgentName: "a/b"}, {AgentName: "a", Version: strings.Repeat("v", 300)}} {
		if err := h.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("Validate(%v) = %v, want ErrInvalid", h, err)
		}
	}
}

func TestRedactReport(t *testing.T) {
	r := validReport()
	r.SourceUrl = "https://oauth2:glpat-SECRET1@gitlab.example.com/team/app.git"
	r.Message = `fetch "https://x:SECRET2@h/r": refused`
	r.Conditions[0].Message = "git https://SECRET3@h/r: auth failed"
	r.Drift.Objects[0].Paths = []string{"ssh://git:SECRET4@h/r"}
	RedactReport(r, v1alpha1.RedactURL, v1alpha1.RedactString)
	b, err := proto.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"SECRET1", "SECRET2", "SECRET3", "SECRET4", "oauth2"} {
		if strings.Contains(string(b), s) {
			t.Errorf("%s survived redaction: %v", s, r)
		}
	}
	if r.SourceUrl != "https://redacted@gitlab.example.com/team/app.git" {
		t.Errorf("source URL %q", r.SourceUrl)
	}
	if r.Conditions[0].Message != "git https://redacted@h/r: auth failed" || r.Name != "web" || r.Phase != PhaseSynced {
		t.Errorf("redaction changed more than credentials: %v", r)
	}
	RedactReport(nil, v1alpha1.RedactURL, v1alpha1.RedactString) // no panic
}

// TestTimings: the shared timings keep a stream alive through 60 s idle
// timeouts, and the agent's pings stay within what the hub tolerates.
func TestTimings(t *testing.T) {
	const idle = 60 * time.Second
	if KeepaliveTime >= idle || KeepaliveTime < KeepaliveMinPing {
		t.Errorf("keepalive ping every %s: must be under %s and not under the hub's minimum %s", KeepaliveTime, idle, KeepaliveMinPing)
	}
	if MaxHeartbeat >= idle || DefaultHeartbeat > MaxHeartbeat || DefaultHeartbeat <= 0 {
		t.Errorf("heartbeat default %s, cap %s: want 0 < default <= cap < %s", DefaultHeartbeat, MaxHeartbeat, idle)
	}
	if IdleHeartbeats < 2 {
		t.Errorf("the hub drops a stream after %d silent heartbeats; one late heartbeat must not do it", IdleHeartbeats)
	}
}
