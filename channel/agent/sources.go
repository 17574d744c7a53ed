package agent

import (
	"sync"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/channel/channelpb"
)

// sources maps the redacted spelling of a source URL, which is all the hub
// ever sees, back to the URLs with credentials that GitSyncs of this
// cluster use, so that a "sync now" for a repository (a push webhook)
// still names their URL exactly. It stays in the agent's memory.
type sources struct {
	mu sync.Mutex
	m  map[string]map[string]bool // redacted -> originals
}

// remember notes a GitSync's source URL, url, when the report spells it
// otherwise (redacted).
func (s *sources) remember(redacted, url string) {
	if redacted == url || redacted == "" || url == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[redacted] == nil {
		s.m[redacted] = map[string]bool{}
	}
	s.m[redacted][url] = true
}

// resolve returns the messages to deliver for m: m itself, or one per
// URL with credentials that its repo_url stands for.
func (s *sources) resolve(m *channelpb.SyncNow) []*channelpb.SyncNow {
	if m.GetRepoUrl() == "" {
		return []*channelpb.SyncNow{m}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	originals := s.m[m.GetRepoUrl()]
	if len(originals) == 0 {
		return []*channelpb.SyncNow{m}
	}
	out := make([]*channelpb.SyncNow, 0, len(originals))
	for u := range originals {
		c := proto.Clone(m).(*channelpb.SyncNow)
		c.RepoUrl = u
		out = append(out, c)
	}
	return out
}
