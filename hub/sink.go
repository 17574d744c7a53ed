package hub

import (
	"cmp"
	"context"
	"fmt"
	"regexp"

	"google.golang.org/protobuf/proto"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/replica"
	"tether.dev/tether/hub/status"
	"tether.dev/tether/hub/store"
)

// Connected records that agent opened a stream. An agent may briefly have
// two (a reconnect overlapping the old stream's end); it stays connected
// until the last one closes.
func (s *Server) Connected(agent string, hello *channelpb.Hello) {
	s.countStream(agent, 1)
	if err := s.store.AgentConnected(context.Background(), agent, hello.GetVersion(), hello.GetClusterUid()); err != nil {
		s.log.Error("cannot record agent connection", "agent", agent, "error", err)
	}
	// The channel server logs the connection itself.
}

// Disconnected records that one of agent's streams closed.
func (s *Server) Disconnected(agent string) {
	if !s.countStream(agent, -1) {
		return
	}
	if err := s.store.AgentDisconnected(context.Background(), agent); err != nil {
		s.log.Error("cannot record agent disconnection", "agent", agent, "error", err)
	}
}

// countStream adds delta to agent's open streams here and says whether
// none is left.
func (s *Server) countStream(agent string, delta int) (none bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.streams[agent] += delta
	none = s.streams[agent] <= 0
	if none {
		delete(s.streams, agent)
	}
	s.metrics.connected.Set(float64(len(s.streams)))
	return none
}

// isConnected reports whether agent has an open stream now, here or on
// another replica.
func (s *Server) isConnected(agent string) bool {
	s.mu.Lock()
	here := s.streams[agent] > 0
	s.mu.Unlock()
	return here || s.connectedElsewhere(agent)
}

// Report stores r as the state of one of agent's GitSyncs when it is newer
// than the stored one (stored is true) and, in the same transaction,
// queues the commit status it implies in the database's outbox, which the
// leader posts from (on whichever replica stores it: the leader is woken
// here, or by NOTIFY on PostgreSQL, or finds it at its next poll). stored
// false with a nil error means the hub already had this state or a later
// one: the agent may drop the report.
//
// The report is read alike whatever the agent's version (readReport), and
// credentials in URLs are masked before anything is stored, whatever the
// agent did: the agent's own redaction is the first line, not the only one.
func (s *Server) Report(ctx context.Context, agent string, r *channelpb.SyncReport) (bool, error) {
	r = readReport(r)
	var q *store.QueuedStatus
	if st, ok := s.commitStatus(agent, r); ok && s.poster.Serves(st.RepoURL) {
		q = &store.QueuedStatus{SHA: st.SHA, Context: st.Context, State: string(st.State),
			RepoURL: st.RepoURL, TargetURL: st.TargetURL, Description: st.Description}
	}
	stored, queued, err := s.store.IngestQueued(ctx, agent, r, q)
	switch {
	case err != nil:
		s.metrics.reports.WithLabelValues("error").Inc()
		return false, fmt.Errorf("report %s/%s/%s: %w", agent, r.GetNamespace(), r.GetName(), err)
	case !stored:
		s.metrics.reports.WithLabelValues("stale").Inc()
		return false, nil
	}
	s.metrics.reports.WithLabelValues("stored").Inc()
	if r.GetDeleted() {
		// Its events go with it. Stored is stored: should this fail,
		// retention deletes them (they are of no GitSync any more).
		if err := s.store.DeleteEvents(ctx, agent, r.GetNamespace(), r.GetName()); err != nil {
			s.log.Error("events of a deleted GitSync", "agent", agent, "gitsync", r.GetNamespace()+"/"+r.GetName(), "error", err)
		}
	}
	if queued {
		s.outboxWork(ctx)
	}
	return true, nil
}

// outboxWork tells the leader that a commit status was queued: this hub's
// poster when it leads, else the leader by NOTIFY (PostgreSQL). A lost
// word only delays the post until the leader's next poll.
func (s *Server) outboxWork(ctx context.Context) {
	if s.Leading() || s.store.Dialect() != "postgres" {
		s.poster.Wake()
		return
	}
	if err := s.store.Notify(ctx, replica.Channel, replica.OutboxMessage()); err != nil {
		s.log.Debug("hub replicas: telling the leader of a queued commit status", "error", err)
	}
}

// readReport is the copy of an agent's report the hub keeps: phase and ref
// both typed and spelled as the strings the store and the pages read,
// whichever the agent sent (an agent from before the typed fields sends
// only the strings), the ref's resolved commit filled in the agent's way
// when an older agent did not send it, and URL credentials masked. An old
// agent's report and a new one's about the same state read the same.
func readReport(in *channelpb.SyncReport) *channelpb.SyncReport {
	r := proto.Clone(in).(*channelpb.SyncReport)
	r.Normalize()
	if ref := r.GetSourceRef(); ref != nil && ref.GetCommit() == "" {
		ref.Commit = cmp.Or(store.SHA(r.GetAttemptedRevision()), store.SHA(r.GetRevision()))
	}
	channelpb.RedactReport(r, v1alpha1.RedactURL, v1alpha1.RedactString)
	return r
}

// commitStatus is the commit status a report implies: running while a
// commit is applied, success once it is applied and Ready, failed when the
// attempt failed.
func (s *Server) commitStatus(agent string, r *channelpb.SyncReport) (status.Status, bool) {
	if r.GetDeleted() || r.GetSourceUrl() == "" {
		return status.Status{}, false
	}
	applied, attempted := store.SHA(r.GetRevision()), store.SHA(r.GetAttemptedRevision())
	if attempted == "" {
		attempted = applied
	}
	st := status.Status{
		RepoURL: r.GetSourceUrl(),
		Context: "tether/" + agent + "/" + r.GetNamespace() + "/" + r.GetName(),
	}
	if s.opt.ExternalURL != "" {
		st.TargetURL = s.opt.ExternalURL + "/#" + gitsyncID(agent, r.GetNamespace(), r.GetName())
	}
	switch r.GetPhase() {
	case "synced", "drifted":
		if !ready(r) {
			return status.Status{}, false
		}
		st.SHA, st.State = applied, status.Success
		st.Description = "applied and ready on " + agent
	case "progressing":
		st.SHA, st.State = attempted, status.Running
		st.Description = "applying on " + agent
	case "failed":
		st.SHA, st.State = attempted, status.Failed
		st.Description = "failed on " + agent
		if reason := failureReason(r); reason != "" {
			st.Description += ": " + reason
		}
	default:
		return status.Status{}, false
	}
	return st, st.SHA != ""
}

// failureReason is the short reason of a failure a commit status may
// carry: the Reason (FetchFailed, ApplyFailed, ...) of the Stalled or Ready
// condition, when it is one CamelCase word. A commit status is visible to
// everyone who can read the repository, while the message names objects,
// namespaces and errors of the cluster: they stay on the hub's page.
func failureReason(r *channelpb.SyncReport) string {
	var reason string
	for _, c := range r.GetConditions() {
		switch {
		case c.GetType() == "Stalled" && c.GetStatus() == "True":
			reason = c.GetReason()
		case c.GetType() == "Ready" && reason == "":
			reason = c.GetReason()
		}
	}
	if !shortReason.MatchString(reason) {
		return ""
	}
	return reason
}

var shortReason = regexp.MustCompile(`^[A-Z][A-Za-z0-9]{0,39}$`)

// ready is true unless the report carries a Ready condition that is not
// True.
func ready(r *channelpb.SyncReport) bool {
	for _, c := range r.GetConditions() {
		if c.GetType() == "Ready" {
			return c.GetStatus() == "True"
		}
	}
	return true
}

func gitsyncID(agent, namespace, name string) string {
	return agent + "/" + namespace + "/" + name
}
