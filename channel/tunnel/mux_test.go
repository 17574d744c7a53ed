package tunnel

import (
	"context"
	"errors"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tether.dev/tether/channel/channelpb"
)

// link joins a hub Mux and an agent Mux like a channel stream does: each
// direction is one ordered queue with one receiving goroutine.
type link struct {
	hub, agent *Mux
	down, up   chan *channelpb.TunnelFrame
	sent       atomic.Int64 // data bytes sent up
	stop       chan struct{}
	wg         sync.WaitGroup
}

func newLink(t *testing.T, accept func(*Stream, *channelpb.TunnelRequest), max int) *link {
	l := &link{down: make(chan *channelpb.TunnelFrame, 1024), up: make(chan *channelpb.TunnelFrame, 1024), stop: make(chan struct{})}
	sender := func(c chan *channelpb.TunnelFrame, count *atomic.Int64) SendFunc {
		return func(ctx context.Context, f *channelpb.TunnelFrame) error {
			if count != nil {
				count.Add(int64(len(f.GetData())))
			}
			select {
			case c <- f:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			case <-l.stop:
				return ErrClosed
			}
		}
	}
	l.hub = NewMux(sender(l.down, nil), nil, max)
	l.agent = NewMux(sender(l.up, &l.sent), accept, max)
	pump := func(c chan *channelpb.TunnelFrame, to *Mux) {
		defer l.wg.Done()
		for {
			select {
			case f := <-c:
				to.Deliver(f)
			case <-l.stop:
				return
			}
		}
	}
	l.wg.Add(2)
	go pump(l.down, l.agent)
	go pump(l.up, l.hub)
	t.Cleanup(l.close)
	return l
}

func (l *link) close() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	l.wg.Wait()
	l.hub.Close(nil)
	l.agent.Close(nil)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestMuxFlowControl: an agent writing a large answer stops after one
// window while the hub does not read, and the whole answer arrives in
// order once it does.
func TestMuxFlowControl(t *testing.T) {
	const total = 3 * InitialWindow
	payload := make([]byte, total)
	for i := range payload {
		payload[i] = byte(i % 251)
	}
	wrote := make(chan error, 1)
	l := newLink(t, func(s *Stream, _ *channelpb.TunnelRequest) {
		defer s.Close()
		if err := s.Respond(s.Context(), &channelpb.TunnelResponse{Status: 200}); err != nil {
			wrote <- err
			return
		}
		_, err := s.Write(payload)
		if err == nil {
			err = s.CloseWrite()
		}
		wrote <- err
	}, 8)
	st, err := l.hub.Open(context.Background(), &channelpb.TunnelRequest{Method: "GET", Path: "/api"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Response(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a window is in flight", func() bool { return l.sent.Load() == InitialWindow })
	select {
	case err := <-wrote:
		t.Fatalf("the writer finished without the reader reading: %v", err)
	default:
	}
	if got := l.sent.Load(); got != InitialWindow {
		t.Fatalf("sent %d bytes before any read, want the window %d", got, InitialWindow)
	}
	var got []byte
	for {
		chunk, _, err := st.Next(context.Background())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(chunk) > MaxChunk {
			t.Fatalf("chunk of %d bytes", len(chunk))
		}
		got = append(got, chunk...)
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	if string(got) != string(payload) {
		t.Fatalf("got %d bytes, want %d in order", len(got), len(payload))
	}
}

// TestMuxCancellation: the hub closing a stream cancels the agent's
// request, and the agent aborting ends the hub's read with its reason.
func TestMuxCancellation(t *testing.T) {
	agentDone := make(chan error, 1)
	l := newLink(t, func(s *Stream, req *channelpb.TunnelRequest) {
		defer s.Close()
		if req.GetPath() == "/abort" {
			_ = s.Respond(s.Context(), &channelpb.TunnelResponse{Status: 200})
			s.Reset("the API server went away")
			return
		}
		<-s.Context().Done() // a watch, until cancelled
		agentDone <- context.Cause(s.Context())
	}, 8)

	st, err := l.hub.Open(context.Background(), &channelpb.TunnelRequest{Method: "GET", Path: "/watch"}, true)
	if err != nil {
		t.Fatal(err)
	}
	st.Close() // kubectl pressed ^C
	select {
	case err := <-agentDone:
		var reset *ResetError
		if !errors.As(err, &reset) {
			t.Errorf("the agent's request ended with %v, want a reset", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's request was not cancelled")
	}
	waitFor(t, "both sides forgot the stream", func() bool { return l.hub.Len() == 0 && l.agent.Len() == 0 })

	st, err = l.hub.Open(context.Background(), &channelpb.TunnelRequest{Method: "GET", Path: "/abort"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	_, _, err = st.Next(context.Background())
	var reset *ResetError
	if !errors.As(err, &reset) || reset.Reason != "the API server went away" {
		t.Errorf("hub read: %v", err)
	}
}

// TestMuxClose: the channel stream ending fails every open stream at
// once, both sides, and refuses new ones.
func TestMuxClose(t *testing.T) {
	started := make(chan *Stream, 4)
	l := newLink(t, func(s *Stream, _ *channelpb.TunnelRequest) { started <- s }, 8)
	var streams []*Stream
	for range 3 {
		st, err := l.hub.Open(context.Background(), &channelpb.TunnelRequest{Method: "GET", Path: "/w"}, true)
		if err != nil {
			t.Fatal(err)
		}
		streams = append(streams, st)
	}
	var agentSide []*Stream
	for range 3 {
		agentSide = append(agentSide, <-started)
	}
	l.close()
	for _, st := range streams {
		if _, _, err := st.Next(context.Background()); !errors.Is(err, ErrClosed) {
			t.Errorf("hub stream after close: %v", err)
		}
	}
	for _, s := range agentSide {
		if !errors.Is(context.Cause(s.Context()), ErrClosed) {
			t.Errorf("agent stream after close: %v", context.Cause(s.Context()))
		}
	}
	if _, err := l.hub.Open(context.Background(), &channelpb.TunnelRequest{}, true); !errors.Is(err, ErrClosed) {
		t.Errorf("open after close: %v", err)
	}
}

// TestMuxLimits: the hub refuses more open streams than its cap; the
// agent answers a request over its own cap with 429; data beyond the
// window resets the stream.
func TestMuxLimits(t *testing.T) {
	hold := make(chan struct{})
	l := newLink(t, func(s *Stream, _ *channelpb.TunnelRequest) {
		defer s.Close()
		<-hold
	}, 2)
	defer close(hold)
	for range 2 {
		if _, err := l.hub.Open(context.Background(), &channelpb.TunnelRequest{}, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.hub.Open(context.Background(), &channelpb.TunnelRequest{}, true); !errors.Is(err, ErrBusy) {
		t.Errorf("third open: %v, want ErrBusy", err)
	}

	// An agent whose cap is reached answers 429 by itself.
	got := make(chan *channelpb.TunnelFrame, 1)
	busy := NewMux(func(_ context.Context, f *channelpb.TunnelFrame) error { got <- f; return nil },
		func(s *Stream, _ *channelpb.TunnelRequest) { <-hold }, 1)
	busy.Deliver(&channelpb.TunnelFrame{StreamId: 1, Request: &channelpb.TunnelRequest{}, End: true})
	busy.Deliver(&channelpb.TunnelFrame{StreamId: 2, Request: &channelpb.TunnelRequest{}, End: true})
	select {
	case f := <-got:
		if f.GetStreamId() != 2 || f.GetResponse().GetStatus() != 429 || !f.GetEnd() {
			t.Errorf("over the cap: %v", f)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no 429")
	}

	// A peer that ignores the window gets its stream reset.
	sent := make(chan *channelpb.TunnelFrame, 4)
	m := NewMux(func(_ context.Context, f *channelpb.TunnelFrame) error { sent <- f; return nil }, nil, 4)
	st, err := m.Open(context.Background(), &channelpb.TunnelRequest{}, true)
	if err != nil {
		t.Fatal(err)
	}
	<-sent // the request
	for range InitialWindow/MaxChunk + 1 {
		m.Deliver(&channelpb.TunnelFrame{StreamId: st.id, Data: make([]byte, MaxChunk)})
	}
	if f := <-sent; f.GetAbort() == "" {
		t.Errorf("over the window: sent %v, want an abort", f)
	}
	var reset *ResetError
	if !errors.As(st.Err(), &reset) {
		t.Errorf("stream error %v", st.Err())
	}
}
