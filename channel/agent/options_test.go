package agent

import (
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
)

func TestHeartbeat(t *testing.T) {
	for _, tc := range []struct {
		own  time.Duration
		hub  int32
		want time.Duration
	}{
		{0, 20, 20 * time.Second},
		{0, 0, channelpb.DefaultHeartbeat},
		{0, 300, channelpb.MaxHeartbeat},
		{time.Second, 20, time.Second},
		{time.Minute, 20, 20 * time.Second},
		{2 * time.Minute, 0, channelpb.MaxHeartbeat},
	} {
		if got := heartbeat(tc.own, &channelpb.Welcome{HeartbeatSeconds: tc.hub}); got != tc.want {
			t.Errorf("heartbeat(%s, %d) = %s, want %s", tc.own, tc.hub, got, tc.want)
		}
	}
}

func TestParseTarget(t *testing.T) {
	for _, tc := range []struct {
		url   string
		kind  transport
		addr  string
		wsURL string
	}{
		{"https://hub.example", grpcTLS, "hub.example:443", ""},
		{"http://127.0.0.1:8080", grpcH2C, "127.0.0.1:8080", ""},
		{"wss://hub.example/tether/", webSocket, "hub.example:443", "wss://hub.example/tether/channel/ws"},
		{"ws://127.0.0.1:80/channel/ws", webSocket, "127.0.0.1:80", "ws://127.0.0.1:80/channel/ws"},
	} {
		got, err := parseTarget(Options{HubURL: tc.url})
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got.kind != tc.kind || got.addr != tc.addr || got.wsURL != tc.wsURL {
			t.Errorf("%s: %+v", tc.url, got)
		}
	}
	for _, bad := range []string{"", "grpc://x", "https://", "::"} {
		if _, err := parseTarget(Options{HubURL: bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if _, err := parseTarget(Options{HubURL: "http://x", CAData: []byte("x")}); err == nil {
		t.Error("a CA with a cleartext URL accepted")
	}
	if _, err := parseTarget(Options{HubURL: "https://x", CAData: []byte("not pem")}); err == nil {
		t.Error("a CA without PEM accepted")
	}
}

func TestNewNeedsNameAndToken(t *testing.T) {
	if _, err := New(Options{HubURL: "http://x", Token: "t"}); err == nil {
		t.Error("no agent name accepted")
	}
	if _, err := New(Options{HubURL: "http://x", AgentName: "a"}); err == nil {
		t.Error("no token accepted")
	}
}
