package hub

import (
	"errors"
	"net/http"
	"strings"

	"tether.dev/tether/hub/badge"
	"tether.dev/tether/hub/giturl"
	"tether.dev/tether/hub/store"
)

// Badge states, as the badge and the JSON API name them.
const (
	badgeSynced      = "synced"
	badgeDrifted     = "drifted"
	badgeFailed      = "failed"
	badgeProgressing = "progressing"
	badgeUnknown     = "unknown"
	badgeOffline     = "offline"
	badgeSuspended   = "suspended"
)

// badgeState is what a GitSync's badge says: its phase, or offline when its
// agent is not connected (its last phase may no longer be true).
func badgeState(g store.GitSync, connected bool) string {
	if !connected {
		return badgeOffline
	}
	switch g.Phase {
	case badgeSynced, badgeDrifted, badgeFailed, badgeProgressing, badgeSuspended:
		return g.Phase
	}
	return badgeUnknown
}

// GitSyncBadge is the badge of one GitSync (found false: never reported).
func GitSyncBadge(name string, g store.GitSync, found, connected bool) badge.Badge {
	if !found {
		return badge.Badge{Label: name, Segments: []badge.Segment{{Text: badgeUnknown, Color: badge.Grey}}}
	}
	state := badgeState(g, connected)
	seg := badge.Segment{Text: state, Color: badge.Grey}
	switch state {
	case badgeSynced:
		seg.Color = badge.Green
		if sha := store.SHA(g.Revision); sha != "" {
			seg.Text = "synced " + sha[:7]
		}
	case badgeDrifted:
		seg.Color = badge.Orange
	case badgeFailed:
		seg.Color = badge.Red
	case badgeProgressing:
		seg.Color = badge.Blue
	}
	return badge.Badge{Label: g.Name, Segments: []badge.Segment{seg}}
}

// CommitBadge is the badge of a commit: one segment per environment
// (agent/namespace/name) where it is live, being applied, or failed.
func CommitBadge(sha string, deployments []store.Deployment) badge.Badge {
	short := sha
	if len(short) > 7 {
		short = short[:7]
	}
	b := badge.Badge{Label: "deploy " + short}
	for _, d := range deployments {
		var color string
		switch d.State {
		case store.StateLive:
			color = badge.Green
		case store.StateApplying:
			color = badge.Blue
		case store.StateFailed:
			color = badge.Red
		default:
			continue
		}
		b.Segments = append(b.Segments, badge.Segment{
			Text: gitsyncID(d.Agent, d.Namespace, d.Name) + " " + d.State, Color: color})
	}
	if len(b.Segments) == 0 {
		b.Segments = []badge.Segment{{Text: "not deployed", Color: badge.Grey}}
	}
	return b
}

func writeSVG(w http.ResponseWriter, code int, b badge.Badge) {
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	// An SVG opened directly must not run script, whatever slips in.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.WriteHeader(code)
	w.Write(b.SVG())
}

// serveGitSyncBadge serves GET /badge/{agent}/{namespace}/{file}, file
// being "<name>.svg". A GitSync the hub has not heard of gets an
// "unknown" badge (200, so markdown shows it while a cluster comes up).
func (s *Server) serveGitSyncBadge(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("file"), ".svg")
	if !ok || name == "" {
		http.NotFound(w, r)
		return
	}
	agent, ns := r.PathValue("agent"), r.PathValue("namespace")
	g, err := s.store.GitSync(r.Context(), agent, ns, name)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.log.Error("badge", "gitsync", gitsyncID(agent, ns, name), "error", err)
		writeSVG(w, http.StatusInternalServerError, badge.Badge{Label: name, Segments: []badge.Segment{{Text: "error", Color: badge.Grey}}})
		return
	}
	writeSVG(w, http.StatusOK, GitSyncBadge(name, g, found, s.isConnected(agent)))
}

// serveCommitBadge serves GET /badge/commit/{file}, file being
// "<sha>.svg"; ?repo=URL keeps only GitSyncs of that repository (forks
// share commits).
func (s *Server) serveCommitBadge(w http.ResponseWriter, r *http.Request) {
	sha, ok := strings.CutSuffix(r.PathValue("file"), ".svg")
	if !ok {
		http.NotFound(w, r)
		return
	}
	ds, err := s.store.Commit(r.Context(), sha)
	if err != nil {
		writeSVG(w, http.StatusBadRequest, badge.Badge{Label: "deploy", Segments: []badge.Segment{{Text: "bad commit", Color: badge.Grey}}})
		return
	}
	if repo := r.URL.Query().Get("repo"); repo != "" {
		kept := ds[:0]
		for _, d := range ds {
			if giturl.Same(d.RepoURL, repo) {
				kept = append(kept, d)
			}
		}
		ds = kept
	}
	writeSVG(w, http.StatusOK, CommitBadge(strings.ToLower(sha), ds))
}
