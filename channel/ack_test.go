package channel_test

import (
	"sync"
	"testing"

	"tether.dev/tether/channel/agent"
	"tether.dev/tether/channel/server"
	tsync "tether.dev/tether/sync"
)

// TestOnAck: the agent's OnAck sees the hub's Ack of each report, with
// the state_version the report was stamped with.
func TestOnAck(t *testing.T) {
	tok, sk := newTokens("tok-a", "a"), newSink()
	h := startHub(t, "127.0.0.1:0", server.ServerOptions{Authenticator: tok, Sink: sk}, nil)
	var mu sync.Mutex
	acked := map[string]uint64{}
	c := startAgent(t, agent.Options{HubURL: h.url("http"), AgentName: "a", Token: "tok-a",
		OnAck: func(namespace, name string, version uint64) {
			mu.Lock()
			defer mu.Unlock()
			acked[namespace+"/"+name] = version
		}})
	r := tsync.BuildReport(gitSync("apps", "web", "main@sha1:"+sha))
	c.Send(r, "")
	want := r.GetStateVersion()
	eventually(t, "the ack of apps/web", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acked["apps/web"] == want
	})
	if want == 0 || sk.get("a", "apps", "web").GetStateVersion() != want {
		t.Errorf("acked version %d, stored %v", want, sk.get("a", "apps", "web"))
	}
}
