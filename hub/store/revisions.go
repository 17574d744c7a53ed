package store

import (
	"strings"
)

// Revision states kept in a GitSync's history of commits.
const (
	StateLive       = "live"       // applied and still the GitSync's revision
	StateApplying   = "applying"   // being applied now
	StateFailed     = "failed"     // the last attempt to apply it failed
	StateSuperseded = "superseded" // was live or applying; another commit took over
)

// SHA returns the commit of a revision string "<ref>@sha1:<40 hex>", or ""
// when there is none. A bare 40-hex string is accepted too.
func SHA(revision string) string {
	s := revision
	if i := strings.LastIndex(s, "@sha1:"); i >= 0 {
		s = s[i+len("@sha1:"):]
	} else if i := strings.LastIndex(s, "sha1:"); i >= 0 {
		s = s[i+len("sha1:"):]
	}
	s = strings.ToLower(s)
	if len(s) != 40 || !isHex(s) {
		return ""
	}
	return s
}

func isHex(s string) bool {
	for _, r := range s {
		if (r < '0' || r > '9') && (r < 'a' || r > 'f') {
			return false
		}
	}
	return s != ""
}

// RevisionStates says what a report means for each commit it names: the
// applied revision is live (or failed, when the failed attempt was at that
// very commit); an attempted revision that differs is applying or failed.
// A deleted GitSync has no live commit.
func RevisionStates(r interface {
	GetRevision() string
	GetAttemptedRevision() string
	GetPhase() string
	GetDeleted() bool
}) map[string]string {
	out := map[string]string{}
	if r.GetDeleted() {
		return out
	}
	applied, attempted := SHA(r.GetRevision()), SHA(r.GetAttemptedRevision())
	phase := r.GetPhase()
	if applied != "" {
		out[applied] = StateLive
		if phase == "failed" && (attempted == "" || attempted == applied) {
			out[applied] = StateFailed
		}
	}
	if attempted != "" && attempted != applied {
		switch phase {
		case "progressing":
			out[attempted] = StateApplying
		case "failed":
			out[attempted] = StateFailed
		}
	}
	return out
}
