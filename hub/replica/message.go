package replica

import (
	"encoding/json"
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"

	"tether.dev/tether/channel/channelpb"
)

// Channel is the PostgreSQL NOTIFY channel the replicas share.
const Channel = "tether_hub"

// maxPayload is below PostgreSQL's 8000-byte limit on a NOTIFY payload.
const maxPayload = 7900

// Kind says what a Message asks of the replica it is addressed to.
type Kind string

const (
	// KindSyncNow: send SyncNow to Agent, whose stream the replica holds.
	// The request waits in the database (ID, table sync_now) until a
	// replica that holds the agent claims it: the replica addressed, on
	// this message or, when it was lost, when its LISTEN is back; or
	// whichever replica the agent connects to next.
	KindSyncNow Kind = "syncNow"
	// KindOutbox: a commit status was queued in the database's outbox;
	// whichever replica leads reads it now rather than at its next poll.
	// The message carries nothing else: the outbox is the record, so a
	// lost message only delays the post.
	KindOutbox Kind = "outbox"
)

// Message is one notification between replicas. To names the replica it
// is for ("" for whichever leads, KindOutbox); the others ignore it.
type Message struct {
	To    string          `json:"to"`
	Kind  Kind            `json:"kind"`
	Agent string          `json:"agent,omitempty"`
	ID    int64           `json:"id,omitempty"`   // the request in table sync_now; 0 from a replica older than it
	Sync  json.RawMessage `json:"sync,omitempty"` // channelpb.SyncNow, protojson
}

// SyncNowMessage addresses msg for agent, recorded as request id, to
// replica to.
func SyncNowMessage(to, agent string, id int64, msg *channelpb.SyncNow) (string, error) {
	b, err := protojson.Marshal(msg)
	if err != nil {
		return "", fmt.Errorf("agent %s: sync now: %w", agent, err)
	}
	return encode(Message{To: to, Kind: KindSyncNow, Agent: agent, ID: id, Sync: b})
}

func encode(m Message) (string, error) {
	b, err := json.Marshal(m)
	if err != nil {
		return "", err
	}
	if len(b) > maxPayload {
		return "", fmt.Errorf("replica message %s for %s: %d bytes, over NOTIFY's limit", m.Kind, m.To, len(b))
	}
	return string(b), nil
}

// OutboxMessage tells the leader that the commit-status outbox has work.
func OutboxMessage() string { return `{"to":"","kind":"` + string(KindOutbox) + `"}` }

// Decode reads a notification's payload. A payload that is not a
// well-formed Message (another program NOTIFYing on the channel) is an
// error, never a panic.
func Decode(payload string) (Message, *channelpb.SyncNow, error) {
	var m Message
	if err := json.Unmarshal([]byte(payload), &m); err != nil {
		return Message{}, nil, fmt.Errorf("replica message: %w", err)
	}
	switch m.Kind {
	case KindSyncNow:
		if m.Agent == "" || len(m.Sync) == 0 || m.ID < 0 {
			return Message{}, nil, errors.New("replica message syncNow: no agent, no message or a negative id")
		}
		msg := &channelpb.SyncNow{}
		if err := protojson.Unmarshal(m.Sync, msg); err != nil {
			return Message{}, nil, fmt.Errorf("replica message syncNow for %s: %w", m.Agent, err)
		}
		return m, msg, nil
	case KindOutbox:
		return m, nil, nil
	default:
		return Message{}, nil, fmt.Errorf("replica message: unknown kind %q", m.Kind)
	}
}
