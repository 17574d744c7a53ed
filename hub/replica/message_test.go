package replica

import (
	"strings"
	"testing"

	"tether.dev/tether/channel/channelpb"
)

func TestMessageRoundTrip(t *testing.T) {
	p, err := SyncNowMessage("hub-c", "prod", 42, &channelpb.SyncNow{RepoUrl: "https://git.example/app.git", BranchOrTag: "main", Reason: "push"})
	if err != nil {
		t.Fatal(err)
	}
	m, msg, err := Decode(p)
	if err != nil {
		t.Fatal(err)
	}
	if m.To != "hub-c" || m.Kind != KindSyncNow || m.Agent != "prod" || m.ID != 42 || msg.GetRepoUrl() != "https://git.example/app.git" || msg.GetBranchOrTag() != "main" || msg.GetReason() != "push" {
		t.Fatalf("decoded %+v %v", m, msg)
	}
	if m, _, err := Decode(OutboxMessage()); err != nil || m.Kind != KindOutbox || m.To != "" {
		t.Fatalf("outbox message: %+v, %v", m, err)
	}
}

// What another program NOTIFYs on the channel is refused with a reason.
func TestDecodeRefuses(t *testing.T) {
	for name, payload := range map[string]string{
		"not JSON":           "hello",
		"unknown kind":       `{"to":"a","kind":"reboot"}`,
		"sync without one":   `{"to":"a","kind":"syncNow","agent":"prod"}`,
		"sync, no agent":     `{"to":"a","kind":"syncNow","sync":{}}`,
		"sync not protobuf":  `{"to":"a","kind":"syncNow","agent":"prod","sync":{"noSuchField":1}}`,
		"old status message": `{"kind":"status","status":{"SHA":"abc"}}`,
		"sync, negative id":  `{"to":"a","kind":"syncNow","agent":"prod","id":-1,"sync":{}}`,
	} {
		if _, _, err := Decode(payload); err == nil || !strings.Contains(err.Error(), "replica message") {
			t.Errorf("%s: %v, want an error naming the replica message", name, err)
		}
	}
}

// A message over NOTIFY's payload limit is refused before it is sent.
func TestMessageTooLarge(t *testing.T) {
	if _, err := SyncNowMessage("hub-c", "prod", 1, &channelpb.SyncNow{Reason: strings.Repeat("x", 8000)}); err == nil {
		t.Fatal("an 8000-byte reason fits a NOTIFY")
	}
}
