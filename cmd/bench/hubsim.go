package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"tether.dev/tether/channel/channelpb"
)

// simAgent is one simulated agent of the hub part: its own name and agent
// token, one GitSync following branch main of a repository of its own,
// and the real protocol on a gRPC stream (Hello, Welcome, SyncReports
// acked once stored, heartbeats, SyncNow), exactly what the hub sees from
// `tether agent`. It keeps no Kubernetes state: it reports what it is
// told to and records when each SyncNow arrives.
type simAgent struct {
	name, token, repo string

	mu     sync.Mutex // one sender at a time: a gRPC stream allows one
	st     grpc.BidiStreamingClient[channelpb.AgentMessage, channelpb.HubMessage]
	cancel context.CancelFunc
	ended  chan error // the current stream's end, once

	acked   atomic.Uint64 // the newest state_version the hub acknowledged
	ackc    chan struct{} // signalled on every ack
	syncNow chan time.Time
}

// simGitSync is the one GitSync every simulated agent reports.
const simNamespace, simName = "bench", "app"

func newSimAgent(i int, token string) *simAgent {
	return &simAgent{
		name: fmt.Sprintf("sim-%06d", i), token: token,
		repo: fmt.Sprintf("https://git.bench.example/fleet/app-%06d.git", i),
		ackc: make(chan struct{}, 1), syncNow: make(chan time.Time, 16),
	}
}

// simDial opens a cleartext HTTP/2 client connection to a hub (lazily, on
// the first stream), with the agent's keepalive. Many agents may share
// one: each opens its own stream with its own token.
func simDial(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time: channelpb.KeepaliveTime, Timeout: channelpb.KeepaliveTimeout, PermitWithoutStream: true,
		}),
		// Small buffers: the load generator holds tens of thousands.
		grpc.WithReadBufferSize(8<<10), grpc.WithWriteBufferSize(8<<10), grpc.WithSharedWriteBuffer(true),
		grpc.WithUserAgent("tether-bench-sim"))
}

// connect opens a stream on conn, says Hello and waits for the Welcome;
// from then on a goroutine takes acks and SyncNow until the stream ends.
func (a *simAgent) connect(ctx context.Context, conn *grpc.ClientConn) error {
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.WithoutCancel(ctx), "authorization", "Bearer "+a.token))
	st, err := channelpb.NewAgentChannelClient(conn).Connect(sctx)
	if err != nil {
		cancel()
		return err
	}
	hello := &channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Hello{Hello: &channelpb.Hello{
		AgentName: a.name, Version: "bench", ClusterUid: "uid-" + a.name}}}
	if err := st.Send(hello); err != nil {
		_, rerr := st.Recv()
		cancel()
		return errors.Join(err, rerr)
	}
	stop := context.AfterFunc(ctx, cancel)
	timer := time.AfterFunc(channelpb.WelcomeTimeout, cancel)
	first, err := st.Recv()
	timer.Stop()
	stop()
	if err != nil {
		cancel()
		return err
	}
	if first.GetWelcome() == nil {
		cancel()
		return fmt.Errorf("%s: the hub's first message is not a Welcome", a.name)
	}
	ended := make(chan error, 1)
	a.mu.Lock()
	a.st, a.cancel, a.ended = st, cancel, ended
	a.mu.Unlock()
	go func() {
		for {
			m, err := st.Recv()
			if err != nil {
				ended <- err
				return
			}
			switch msg := m.GetMsg().(type) {
			case *channelpb.HubMessage_Ack:
				if v := msg.Ack.GetStateVersion(); v > a.acked.Load() {
					a.acked.Store(v)
				}
				select {
				case a.ackc <- struct{}{}:
				default:
				}
			case *channelpb.HubMessage_SyncNow:
				select {
				case a.syncNow <- time.Now():
				default:
				}
			}
		}
	}()
	return nil
}

// connectRetry connects, again after a moment while the hub says it is
// busy (its cap on token checks in flight) or the connection is not up.
func (a *simAgent) connectRetry(ctx context.Context, conn *grpc.ClientConn, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		err := a.connect(ctx, conn)
		if err == nil {
			return nil
		}
		code := status.Code(err)
		if (code != codes.ResourceExhausted && code != codes.Unavailable) || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: %w", a.name, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (a *simAgent) send(m *channelpb.AgentMessage) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st == nil {
		return errors.New("not connected")
	}
	return a.st.Send(m)
}

// report sends the GitSync's state number v (its state_version): synced at
// the commit v names, as `tether agent` reports it.
func (a *simAgent) report(v uint64) error {
	sha := fmt.Sprintf("%040x", v)
	now := time.Now().UnixMilli()
	return a.send(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Report{Report: &channelpb.SyncReport{
		Namespace: simNamespace, Name: simName, StateVersion: v,
		SourceUrl: a.repo, Ref: "branch:main", Path: "./deploy",
		SourceRef: &channelpb.Ref{Kind: channelpb.RefKind_REF_KIND_BRANCH, Name: "main", Commit: sha},
		Revision:  "branch:main@sha1:" + sha, AttemptedRevision: "branch:main@sha1:" + sha,
		Phase: "synced", SyncPhase: channelpb.Phase_PHASE_SYNCED, Message: "Applied revision " + sha[:12],
		Conditions: []*channelpb.Condition{{Type: "Ready", Status: "True", Reason: "Synced",
			Message: "Applied revision branch:main@sha1:" + sha, LastTransitionUnixMs: now}},
		Namespaces:     []*channelpb.NamespaceCount{{Namespace: "bench-app", Objects: 12}},
		LastSyncUnixMs: now,
	}}})
}

func (a *simAgent) heartbeat() error {
	return a.send(&channelpb.AgentMessage{Msg: &channelpb.AgentMessage_Heartbeat{
		Heartbeat: &channelpb.Heartbeat{SentUnixMs: time.Now().UnixMilli()}}})
}

// errStreamEnded is what awaitAck returns when the stream ended first.
var errStreamEnded = errors.New("stream ended before the ack")

// awaitAck waits until the hub acknowledged state v, the stream ended
// (errStreamEnded) or limit passed.
func (a *simAgent) awaitAck(v uint64, limit time.Duration) error {
	a.mu.Lock()
	ended := a.ended
	a.mu.Unlock()
	t := time.NewTimer(limit)
	defer t.Stop()
	for a.acked.Load() < v {
		select {
		case <-a.ackc:
		case err := <-ended:
			ended <- err // for the next reader
			if a.acked.Load() >= v {
				return nil
			}
			return fmt.Errorf("%w: %v", errStreamEnded, err)
		case <-t.C:
			return fmt.Errorf("%s: no ack of state %d within %s", a.name, v, limit)
		}
	}
	return nil
}

// close ends the stream as an agent that stops does.
func (a *simAgent) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.st != nil {
		_ = a.st.CloseSend()
		a.cancel()
		a.st = nil
	}
}

// simFleet is a set of simulated agents and the connections they share.
type simFleet struct {
	agents []*simAgent
	conns  []*grpc.ClientConn
	// at is the index into addrs of the hub each agent is connected to.
	at []int
}

// connectFleet connects agents round-robin over the hubs at addrs,
// perConn agents to a connection (1: a connection each), parallel at a
// time, and returns once every one is welcomed.
func connectFleet(ctx context.Context, agents []*simAgent, addrs []string, perConn, parallel int) (*simFleet, error) {
	f := &simFleet{agents: agents, at: make([]int, len(agents))}
	// Agent i goes to hub i mod len(addrs); its connection is the
	// (i/len(addrs))/perConn-th of that hub's.
	perHub := make([][]*grpc.ClientConn, len(addrs))
	connOf := make([]*grpc.ClientConn, len(agents))
	for i := range agents {
		h := i % len(addrs)
		k := (i / len(addrs)) / perConn
		if k == len(perHub[h]) {
			c, err := simDial(addrs[h])
			if err != nil {
				f.close()
				return nil, err
			}
			perHub[h] = append(perHub[h], c)
			f.conns = append(f.conns, c)
		}
		f.at[i], connOf[i] = h, perHub[h][k]
	}
	work := make(chan int)
	errc := make(chan error, parallel)
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				if err := agents[i].connectRetry(ctx, connOf[i], 2*time.Minute); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for i := range agents {
		select {
		case work <- i:
		case err = <-errc:
			break feed
		}
	}
	close(work)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errc:
		default:
		}
	}
	if err != nil {
		f.close()
		return nil, err
	}
	return f, nil
}

// heartbeats sends every connected agent a heartbeat each interval,
// spread over it, until ctx ends: the hub ends a stream silent for three
// intervals, so this runs while a fleet connects too.
func heartbeats(ctx context.Context, agents []*simAgent, every time.Duration) {
	const chunk = 500
	for {
		for i := 0; i < len(agents); i += chunk {
			for _, a := range agents[i:min(i+chunk, len(agents))] {
				_ = a.heartbeat()
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every * chunk / time.Duration(len(agents)+chunk)):
			}
		}
	}
}

// close ends every stream and connection.
func (f *simFleet) close() {
	for _, a := range f.agents {
		a.close()
	}
	for _, c := range f.conns {
		_ = c.Close()
	}
}
