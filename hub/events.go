package hub

import (
	"context"
	"time"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/hub/store"
)

// EventJSON is one Warning event, folded: Count times between First and
// Last.
type EventJSON struct {
	Kind      string    `json:"kind"`
	Namespace string    `json:"namespace,omitempty"`
	Name      string    `json:"name"`
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	Count     int64     `json:"count"`
	First     time.Time `json:"first"`
	Last      time.Time `json:"last"`
}

// Events keeps a batch of an agent's Warning events for the GitSyncs the
// hub knows (the channel server calls it; it validated the batch), in the
// store: every hub on the database lists them alike, and a restart keeps
// them. Messages are redacted first. Events of a GitSync the hub has no
// report of are dropped: an agent cannot make the hub remember names it
// never reported. Each GitSync keeps its newest store.EventsPerGitSync
// (and a message is at most channelpb.MaxEventMessage bytes), so what
// agents send is bounded; retention deletes events not sent again within
// it.
func (s *Server) Events(ctx context.Context, agent string, batch *channelpb.WarningEvents) error {
	evs := make([]store.Event, 0, len(batch.GetEvents()))
	for _, e := range batch.GetEvents() {
		evs = append(evs, store.Event{
			GitSyncNamespace: e.GetGitsyncNamespace(), GitSyncName: e.GetGitsyncName(),
			Kind: e.GetKind(), Namespace: e.GetNamespace(), Name: e.GetName(), Reason: e.GetReason(),
			Message: v1alpha1.RedactString(e.GetMessage()), Count: e.GetCount(),
			First: time.UnixMilli(e.GetFirstUnixMs()).UTC(), Last: time.UnixMilli(e.GetLastUnixMs()).UTC(),
		})
	}
	kept, err := s.store.AddEvents(ctx, agent, evs)
	if err != nil {
		return err
	}
	if kept > 0 {
		s.metrics.events.WithLabelValues("kept").Add(float64(kept))
	}
	if dropped := len(evs) - kept; dropped > 0 {
		s.metrics.events.WithLabelValues("unknown").Add(float64(dropped))
	}
	return nil
}

// recentEvents are a GitSync's events, newest first.
func (s *Server) recentEvents(ctx context.Context, agent, namespace, name string) ([]EventJSON, error) {
	evs, err := s.store.Events(ctx, agent, namespace, name)
	if err != nil {
		return nil, err
	}
	out := make([]EventJSON, 0, len(evs))
	for _, e := range evs {
		out = append(out, EventJSON{Kind: e.Kind, Namespace: e.Namespace, Name: e.Name, Reason: e.Reason,
			Message: e.Message, Count: e.Count, First: e.First, Last: e.Last})
	}
	return out, nil
}
