package server

import (
	"net/http"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
)

func TestAuthRecheckCap(t *testing.T) {
	if maxAuthRecheck > 30*time.Second {
		t.Errorf("auth recheck cap %s: a revoked token must end a stream within 30 s", maxAuthRecheck)
	}
}

func TestConfigureHTTPServer(t *testing.T) {
	hs := &http.Server{}
	ConfigureHTTPServer(hs)
	if hs.HTTP2.SendPingTimeout <= 0 || hs.HTTP2.SendPingTimeout >= 60*time.Second {
		t.Errorf("HTTP/2 ping after %s idle, want under 60 s", hs.HTTP2.SendPingTimeout)
	}
	// ReadTimeout and WriteTimeout would cut the agents' streams: ordinary
	// requests get per-request deadlines from Handler instead.
	if hs.ReadHeaderTimeout <= 0 || hs.IdleTimeout <= 0 || hs.ReadTimeout != 0 || hs.WriteTimeout != 0 {
		t.Errorf("timeouts: header %s, idle %s, read %s, write %s", hs.ReadHeaderTimeout, hs.IdleTimeout, hs.ReadTimeout, hs.WriteTimeout)
	}
	if hs.MaxHeaderBytes <= 0 || hs.MaxHeaderBytes > 1<<20 {
		t.Errorf("MaxHeaderBytes %d", hs.MaxHeaderBytes)
	}
}

func TestOptionDefaults(t *testing.T) {
	s := NewServer(ServerOptions{Heartbeat: 90 * time.Second})
	defer s.Stop(t.Context())
	if s.opts.Heartbeat != channelpb.MaxHeartbeat || s.opts.AuthRecheck != maxAuthRecheck {
		t.Errorf("heartbeat %s, recheck %s", s.opts.Heartbeat, s.opts.AuthRecheck)
	}
	if s.opts.RequestTimeout <= 0 || s.opts.MaxConcurrentRequests <= 0 || s.opts.MaxStreamsPerAgent <= 1 {
		t.Errorf("request timeout %s, concurrent requests %d, streams per agent %d",
			s.opts.RequestTimeout, s.opts.MaxConcurrentRequests, s.opts.MaxStreamsPerAgent)
	}
	s2 := NewServer(ServerOptions{Heartbeat: 100 * time.Millisecond})
	defer s2.Stop(t.Context())
	if s2.opts.Heartbeat != time.Second {
		t.Errorf("heartbeat %s, want the 1 s floor", s2.opts.Heartbeat)
	}
}
