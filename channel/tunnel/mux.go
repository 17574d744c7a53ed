package tunnel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"tether.dev/tether/channel/channelpb"
)

// Flow control and limits of one stream. A side may have at most
// InitialWindow bytes of one stream's data in flight that the other has
// not consumed; the reader grants more as it consumes, in batches of half
// a window, so one slow kubectl holds at most a window of the hub's memory
// and the API server waits instead.
const (
	// InitialWindow is each direction's credit when a stream opens.
	InitialWindow = 256 << 10
	// MaxChunk caps the data of one frame, well under the channel's
	// message cap.
	MaxChunk = 32 << 10
)

// ErrClosed is the error of every stream of a Mux whose channel stream
// ended (the agent disconnected or restarted, or the hub went away).
var ErrClosed = errors.New("the agent's channel closed")

// ResetError is a stream aborted by the other side, with its reason.
type ResetError struct{ Reason string }

func (e *ResetError) Error() string { return "tunnel stream reset: " + e.Reason }

// SendFunc queues one frame for the channel stream's single sender. It
// blocks while the queue is full and fails when ctx ends or the channel
// stream is gone.
type SendFunc func(ctx context.Context, f *channelpb.TunnelFrame) error

// Mux multiplexes the tunnel's streams over one channel stream. One Mux
// lives exactly as long as its channel stream: the hub opens streams on
// it, the agent accepts them.
type Mux struct {
	send   SendFunc
	accept func(*Stream, *channelpb.TunnelRequest)
	max    int

	mu      sync.Mutex
	streams map[uint64]*Stream
	nextID  uint64
	err     error
}

// NewMux returns a Mux that sends through send. accept, on the agent,
// is called on its own goroutine for every new request; the hub passes
// nil. max caps the streams open at once (opens over it fail, requests
// over it are refused).
func NewMux(send SendFunc, accept func(*Stream, *channelpb.TunnelRequest), max int) *Mux {
	return &Mux{send: send, accept: accept, max: max, streams: map[uint64]*Stream{}}
}

// ErrBusy is returned by Open when the agent's stream cap is reached.
var ErrBusy = errors.New("too many tunnelled requests to this agent at once")

// Open starts a stream with req (the hub's side) and sends the request
// frame; end says the request has no body. The stream lives until Close.
func (m *Mux) Open(ctx context.Context, req *channelpb.TunnelRequest, end bool) (*Stream, error) {
	m.mu.Lock()
	if m.err != nil {
		m.mu.Unlock()
		return nil, m.err
	}
	if len(m.streams) >= m.max {
		m.mu.Unlock()
		return nil, ErrBusy
	}
	m.nextID++
	s := m.newStream(m.nextID)
	s.localEnd = end
	m.mu.Unlock()
	if err := m.send(ctx, &channelpb.TunnelFrame{StreamId: s.id, Request: req, End: end}); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// newStream registers a stream; m.mu is held.
func (m *Mux) newStream(id uint64) *Stream {
	ctx, cancel := context.WithCancelCause(context.Background())
	s := &Stream{
		id: id, m: m, ctx: ctx, cancel: cancel,
		sendWindow: InitialWindow,
		readable:   make(chan struct{}, 1),
		writable:   make(chan struct{}, 1),
		responded:  make(chan struct{}),
	}
	m.streams[id] = s
	return s
}

// Deliver hands one frame from the other side to its stream. It never
// blocks: a peer that sends beyond its window has its stream reset. The
// channel's receiving loop calls it.
func (m *Mux) Deliver(f *channelpb.TunnelFrame) {
	id := f.GetStreamId()
	m.mu.Lock()
	s := m.streams[id]
	if s == nil && f.GetRequest() != nil && m.accept != nil && m.err == nil {
		if len(m.streams) >= m.max {
			m.mu.Unlock()
			m.refuseBusy(id)
			return
		}
		s = m.newStream(id)
		s.remoteEnd = f.GetEnd()
		s.noBody = f.GetEnd()
		m.mu.Unlock()
		go m.accept(s, f.GetRequest())
		return
	}
	m.mu.Unlock()
	if s == nil {
		// A frame for a stream this side has closed already: late data
		// after a reset, or a window update. Nothing to do.
		return
	}
	s.deliver(f)
}

// refuseBusy answers a request over the cap without a stream.
func (m *Mux) refuseBusy(id uint64) {
	go func() {
		body := statusBody(429, "TooManyRequests", "the agent is serving too many tunnelled requests; retry later")
		ctx := context.Background()
		_ = m.send(ctx, &channelpb.TunnelFrame{StreamId: id, Response: &channelpb.TunnelResponse{
			Status: 429, Headers: []*channelpb.Header{{Name: "Content-Type", Values: []string{"application/json"}}, {Name: "Retry-After", Values: []string{"1"}}},
		}, Data: body, End: true})
	}()
}

// Close fails every stream with err (ErrClosed when nil) and refuses new
// ones: the channel stream under the Mux has ended.
func (m *Mux) Close(err error) {
	if err == nil {
		err = ErrClosed
	}
	m.mu.Lock()
	if m.err == nil {
		m.err = err
	}
	streams := m.streams
	m.streams = map[uint64]*Stream{}
	m.mu.Unlock()
	for _, s := range streams {
		s.fail(err)
	}
}

// Len is the number of open streams.
func (m *Mux) Len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.streams)
}

// forget drops a closed stream.
func (m *Mux) forget(s *Stream) {
	m.mu.Lock()
	if m.streams[s.id] == s {
		delete(m.streams, s.id)
	}
	m.mu.Unlock()
}

// Stream is one tunnelled request: the hub writes the request body and
// reads the response; the agent the other way round. Read and Write may be
// used from different goroutines, each by one.
type Stream struct {
	id     uint64
	m      *Mux
	ctx    context.Context
	cancel context.CancelCauseFunc

	mu         sync.Mutex
	recv       [][]byte
	recvBytes  int
	consumed   int // bytes read since the last window update
	remoteEnd  bool
	localEnd   bool
	noBody     bool // the request frame itself ended the request
	err        error
	sendWindow int
	response   *channelpb.TunnelResponse
	responded  chan struct{}
	closed     bool

	readable chan struct{}
	writable chan struct{}
}

// Context ends when the stream is reset, its Mux closes, or Close is
// called; the agent makes its API request with it.
func (s *Stream) Context() context.Context { return s.ctx }

// deliver applies one frame of the other side.
func (s *Stream) deliver(f *channelpb.TunnelFrame) {
	if r := f.GetAbort(); r != "" {
		s.fail(&ResetError{Reason: r})
		return
	}
	s.mu.Lock()
	if f.GetResponse() != nil && s.response == nil {
		s.response = f.GetResponse()
		close(s.responded)
	}
	if n := len(f.GetData()); n > 0 && !s.remoteEnd {
		if s.recvBytes+n > InitialWindow {
			s.mu.Unlock()
			s.Reset("flow control: more data than the window allows")
			return
		}
		s.recv = append(s.recv, f.GetData())
		s.recvBytes += n
	}
	if f.GetEnd() {
		s.remoteEnd = true
	}
	if w := f.GetWindowUpdate(); w > 0 {
		s.sendWindow += int(w)
		signal(s.writable)
	}
	s.mu.Unlock()
	signal(s.readable)
}

// fail ends the stream with err without telling the other side.
func (s *Stream) fail(err error) {
	s.mu.Lock()
	if s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	s.cancel(err)
	signal(s.readable)
	signal(s.writable)
	s.m.forget(s)
}

// Reset aborts the stream both ways and tells the other side why.
func (s *Stream) Reset(reason string) {
	s.mu.Lock()
	already := s.err != nil
	s.mu.Unlock()
	s.fail(&ResetError{Reason: reason})
	if !already {
		// Best effort: if the channel is gone, so is the other side's stream.
		ctx, cancel := context.WithTimeout(context.Background(), resetTimeout)
		defer cancel()
		_ = s.m.send(ctx, &channelpb.TunnelFrame{StreamId: s.id, Abort: reason})
	}
}

// Close releases the stream. A stream not finished both ways is reset, so
// the other side stops too.
func (s *Stream) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	clean := s.err == nil && s.remoteEnd && s.localEnd
	s.mu.Unlock()
	if clean {
		s.fail(context.Canceled)
		return
	}
	s.Reset("closed")
}

// Response waits for the other side's response frame (the hub's side).
func (s *Stream) Response(ctx context.Context) (*channelpb.TunnelResponse, error) {
	select {
	case <-s.responded:
		return s.response, nil
	case <-s.ctx.Done():
		// A response that arrived with a reset right behind it still counts.
		select {
		case <-s.responded:
			return s.response, nil
		default:
		}
		return nil, s.Err()
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// Err is why the stream failed, or nil.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Next returns the next chunk of the other side's data, waiting for it;
// io.EOF after the other side's end. The chunk is the caller's. buffered
// says whether more is already waiting (the hub flushes only when not).
func (s *Stream) Next(ctx context.Context) (chunk []byte, buffered bool, err error) {
	for {
		s.mu.Lock()
		if len(s.recv) > 0 {
			chunk = s.recv[0]
			s.recv[0] = nil
			s.recv = s.recv[1:]
			s.recvBytes -= len(chunk)
			s.consumed += len(chunk)
			grant := 0
			if s.consumed >= InitialWindow/2 && !s.remoteEnd {
				grant, s.consumed = s.consumed, 0
			}
			buffered = len(s.recv) > 0
			s.mu.Unlock()
			if grant > 0 {
				if err := s.m.send(ctx, &channelpb.TunnelFrame{StreamId: s.id, WindowUpdate: uint32(grant)}); err != nil {
					return nil, false, err
				}
			}
			return chunk, buffered, nil
		}
		if s.remoteEnd {
			s.mu.Unlock()
			return nil, false, io.EOF
		}
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return nil, false, err
		}
		s.mu.Unlock()
		select {
		case <-s.readable:
		case <-ctx.Done():
			return nil, false, context.Cause(ctx)
		}
	}
}

// Read implements io.Reader over Next (the agent's request body).
func (s *Stream) Read(p []byte) (int, error) {
	s.mu.Lock()
	if len(s.recv) > 0 && len(s.recv[0]) > len(p) {
		// Hand out part of the first chunk; the rest stays queued.
		n := copy(p, s.recv[0])
		s.recv[0] = s.recv[0][n:]
		s.recvBytes -= n
		s.consumed += n
		s.mu.Unlock()
		return n, nil
	}
	s.mu.Unlock()
	chunk, _, err := s.Next(s.ctx)
	if err != nil {
		if errors.Is(err, context.Canceled) && s.Err() != nil {
			err = s.Err()
		}
		return 0, err
	}
	return copy(p, chunk), nil
}

// Respond sends the response frame (the agent's side).
func (s *Stream) Respond(ctx context.Context, r *channelpb.TunnelResponse) error {
	return s.m.send(ctx, &channelpb.TunnelFrame{StreamId: s.id, Response: r})
}

// Write sends p as data frames, waiting for window as needed.
func (s *Stream) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		s.mu.Lock()
		if s.err != nil {
			err := s.err
			s.mu.Unlock()
			return written, err
		}
		if s.localEnd {
			s.mu.Unlock()
			return written, errors.New("tunnel stream: write after end")
		}
		n := min(s.sendWindow, len(p), MaxChunk)
		if n == 0 {
			s.mu.Unlock()
			select {
			case <-s.writable:
				continue
			case <-s.ctx.Done():
				return written, s.Err()
			}
		}
		s.sendWindow -= n
		s.mu.Unlock()
		data := make([]byte, n)
		copy(data, p[:n])
		if err := s.m.send(s.ctx, &channelpb.TunnelFrame{StreamId: s.id, Data: data}); err != nil {
			return written, fmt.Errorf("tunnel stream: %w", err)
		}
		written += n
		p = p[n:]
	}
	return written, nil
}

// CloseWrite sends this side's end: no more data follows.
func (s *Stream) CloseWrite() error {
	s.mu.Lock()
	if s.localEnd {
		s.mu.Unlock()
		return nil
	}
	s.localEnd = true
	s.mu.Unlock()
	return s.m.send(s.ctx, &channelpb.TunnelFrame{StreamId: s.id, End: true})
}

// signal wakes one waiter without blocking.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// hasBody says whether the request came with a body (it may have
// arrived whole already).
func (s *Stream) hasBody() bool { return !s.noBody }
