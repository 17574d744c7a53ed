package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tether.dev/tether/channel/agent"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/pgtest"
)

// hubBench sizes the hub part (flags -hub-*).
type hubBench struct {
	agents      int           // agents per setup for reports/s, webhooks, memory
	load        time.Duration // how long reports are sent
	webhooks    int
	webhookRate int // per second
	fleet       int // agents over 3 replicas, multiplexed
	perConn     int // agents per HTTP/2 connection in the fleet
	ownConns    int // agents with a connection each, on one replica
	killAgents  int
	killAfter   time.Duration // load after the SIGKILL
}

// newDB gives the address of a new, empty PostgreSQL database.
type newDB func() (string, error)

// benchHub measures `tether hub` processes built from this tree with
// simulated agents that speak the real protocol (hubsim.go): reports/s
// acked, webhook → SyncNow at the agent and memory, on one hub on SQLite,
// one on PostgreSQL and three replicas on PostgreSQL; then a fleet over
// three replicas, one connection per agent on one replica, and a replica
// SIGKILLed under load.
func (e *env) benchHub(ctx context.Context, o hubBench, pg newDB) ([]row, error) {
	var rows []row
	setups := []struct {
		name     string
		replicas int
		db       func() (string, error)
	}{
		{"1 hub, SQLite", 1, func() (string, error) { return filepath.Join(e.work, "hub-bench.db"), nil }},
		{"1 hub, PostgreSQL", 1, pg},
		{"3 replicas, PostgreSQL", 3, pg},
	}
	for _, s := range setups {
		db, err := s.db()
		if err != nil {
			return nil, err
		}
		r, err := e.hubSetup(ctx, o, s.name, db, s.replicas)
		if err != nil {
			return nil, fmt.Errorf("hub %s: %w", s.name, err)
		}
		rows = append(rows, r...)
	}
	if o.killAgents > 0 {
		r, err := e.hubKill(ctx, o, pg)
		if err != nil {
			return nil, fmt.Errorf("hub replica killed: %w", err)
		}
		rows = append(rows, r...)
	}
	if o.fleet > 0 || o.ownConns > 0 {
		r, err := e.hubFleet(ctx, o, pg)
		if err != nil {
			return nil, fmt.Errorf("hub fleet: %w", err)
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// hubSetup measures one setup: memory idle and with o.agents connected
// (a connection each, as real agents), reports/s acked while every agent
// sends its next report as soon as the last is acked, and webhook → SyncNow
// at the agent, the webhook posted to a replica that does not hold the
// agent when there are several.
func (e *env) hubSetup(ctx context.Context, o hubBench, name, db string, replicas int) ([]row, error) {
	n := o.agents
	step("hub %s: %d agents with tokens of their own", name, n)
	agents, err := createAgents(ctx, db, 0, n, 16)
	if err != nil {
		return nil, err
	}
	hs, idle, err := e.startIdle(ctx, name, db, replicas)
	if err != nil {
		return nil, err
	}
	defer hs.stop()
	step("hub %s: connecting %d agents, a connection each", name, n)
	hctx, stopBeats := context.WithCancel(ctx)
	defer stopBeats()
	go heartbeats(hctx, agents, 15*time.Second)
	f, err := connectFleet(ctx, agents, hs.addrs(), 1, 64)
	if err != nil {
		return nil, err
	}
	defer f.close()
	// Every GitSync's first report, so the webhooks find them.
	if _, err := reportAll(agents, 1, 0); err != nil {
		return nil, err
	}
	with, err := settledMemory(ctx, hs)
	if err != nil {
		return nil, err
	}
	if err := allConnected(with, n); err != nil {
		return nil, err
	}

	step("hub %s: reports for %s, each agent sending the next on its ack", name, o.load)
	took, err := reportAll(agents, 2, o.load)
	if err != nil {
		return nil, err
	}
	total := 0
	for _, d := range took {
		total += len(d)
	}
	var lat []time.Duration
	for _, d := range took {
		lat = append(lat, d...)
	}
	rate := float64(total) / o.load.Seconds()

	step("hub %s: %d webhooks at %d/s", name, o.webhooks, o.webhookRate)
	hooks, posts, refused, err := webhookLatencies(hs, f, o.webhooks, o.webhookRate)
	if err != nil {
		return nil, err
	}

	where := "the hub"
	if replicas > 1 {
		where = "a replica that does not hold the agent (the hub then NOTIFYs the one that does)"
	}
	idleSum, withSum := sumMemory(idle), sumMemory(with)
	mem := fmt.Sprintf("%s → %s", mib(idleSum.rss), mib(withSum.rss))
	if replicas > 1 {
		mem += " (3 replicas together)"
	}
	return []row{
		{what: fmt.Sprintf("hub reports/s acked, %s, %s agents", name, thousands(n)), tether: fmt.Sprintf("%.0f/s", rate),
			note: fmt.Sprintf("%s reports in %s, every agent sending its next report on the ack of the last (closed loop); ack latency p50 %s, p99 %s",
				thousands(total), o.load, round(median(lat)), round(p(lat, 99)))},
		{what: fmt.Sprintf("webhook → SyncNow at the agent, p99, %s", name), tether: round(p(hooks, 99)),
			target: "p99 < 1 s: " + verdict(refused == 0 && len(hooks) > 0 && p(hooks, 99) < time.Second),
			note: fmt.Sprintf("%d GitHub push webhooks at %d/s (open loop), each to %s, timed from before the POST to the SyncNow at the agent: p50 %s, p95 %s, max %s; the POST's answer took p50 %s, p99 %s%s",
				o.webhooks, o.webhookRate, where, round(median(hooks)), round(p(hooks, 95)), round(p(hooks, 100)), round(median(posts)), round(p(posts, 99)), refusedNote(refused))},
		{what: fmt.Sprintf("hub RSS idle → with %s agents, %s", thousands(n), name), tether: mem,
			note: fmt.Sprintf("a connection each, every GitSync reported once; Go heap in use %s → %s, no GC forced; %s",
				mib(idleSum.heap), mib(withSum.heap), perAgent(idleSum, withSum, n))},
	}, nil
}

// settledMemory reads the hubs' memory after a second's quiet.
func settledMemory(ctx context.Context, hs *hubSet) ([]hubMemory, error) {
	time.Sleep(time.Second)
	return hs.memory(ctx)
}

// reportAll has every agent send state `from`, wait for its ack, and go on
// with from+1, … until d has passed (d 0: one report each). It returns the
// ack latencies per agent.
func reportAll(agents []*simAgent, from uint64, d time.Duration) ([][]time.Duration, error) {
	deadline := time.Now().Add(d)
	took := make([][]time.Duration, len(agents))
	errs := make([]error, len(agents))
	var wg sync.WaitGroup
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for v := from; ; v++ {
				t0 := time.Now()
				err := a.report(v)
				if err == nil {
					err = a.awaitAck(v, time.Minute)
				}
				if err != nil {
					errs[i] = fmt.Errorf("%s: state %d: %w", a.name, v, err)
					return
				}
				took[i] = append(took[i], time.Since(t0))
				if !time.Now().Before(deadline) {
					return
				}
			}
		}()
	}
	wg.Wait()
	return took, errors.Join(errs...)
}

// webhookLatencies posts n signed GitHub push webhooks at rate per second,
// the i-th for agent i's repository, to a hub that does not hold that
// agent when there are several, and times each until the SyncNow reaches
// the agent. Two webhooks for one agent (fewer agents than webhooks) wait
// for each other.
//
// A webhook the hub refuses as busy (503: more requests in flight than it
// takes) is counted in refused, not timed: GitHub does not send it again,
// so that push deploys at the next poll.
func webhookLatencies(hs *hubSet, f *simFleet, n, rate int) (toAgent, answered []time.Duration, refused int, err error) {
	locks := make([]sync.Mutex, len(f.agents))
	out := make([]time.Duration, n)
	posts := make([]time.Duration, n)
	var busy atomic.Int64
	errs := make([]error, n)
	every := time.Second / time.Duration(rate)
	t0 := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		time.Sleep(time.Until(t0.Add(time.Duration(i) * every)))
		wg.Add(1)
		go func() {
			defer wg.Done()
			k := i % len(f.agents)
			a := f.agents[k]
			h := hs.hubs[(f.at[k]+1)%len(hs.hubs)]
			locks[k].Lock()
			defer locks[k].Unlock()
			for len(a.syncNow) > 0 {
				<-a.syncNow
			}
			start := time.Now()
			if _, err := postPush(h, a.repo, fmt.Sprintf("%040x", i+1)); err != nil {
				if strings.Contains(err.Error(), ": 503 ") {
					busy.Add(1)
					return
				}
				errs[i] = err
				return
			}
			posts[i] = time.Since(start)
			select {
			case at := <-a.syncNow:
				out[i] = at.Sub(start)
			case <-time.After(30 * time.Second):
				errs[i] = fmt.Errorf("webhook %d: no SyncNow at %s within 30s", i, a.name)
			}
		}()
	}
	wg.Wait()
	for i := n - 1; i >= 0; i-- {
		if out[i] == 0 && errs[i] == nil {
			out, posts = slices.Delete(out, i, i+1), slices.Delete(posts, i, i+1)
		}
	}
	return out, posts, int(busy.Load()), errors.Join(errs...)
}

// hubKill runs report load from o.killAgents agents, each with a
// connection of its own through a round-robin TCP front of three
// replicas, SIGKILLs one replica, lets the agents reconnect (through the
// front, to the others, with the real agent's backoff) and resend the
// report that was not acked, and then checks every GitSync's stored state
// against the last state its agent got acked.
func (e *env) hubKill(ctx context.Context, o hubBench, pg newDB) ([]row, error) {
	db, err := pg()
	if err != nil {
		return nil, err
	}
	n := o.killAgents
	step("hub kill: %d agents over 3 replicas behind a round-robin front", n)
	agents, err := createAgents(ctx, db, 0, n, 16)
	if err != nil {
		return nil, err
	}
	hs, err := e.startHubSet(ctx, "kill", db, 3)
	if err != nil {
		return nil, err
	}
	defer hs.stop()
	fr, err := startFront(hs.addrs())
	if err != nil {
		return nil, err
	}
	defer fr.close()

	var (
		mu         sync.Mutex
		reconnects []time.Duration
		resent     int
		connected  atomic.Int64
		ackedTotal atomic.Int64
		lastAcked  = make([]uint64, n)
		errs       = make([]error, n)
		stop       = make(chan struct{})
		wg         sync.WaitGroup
	)
	lctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for i, a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := simDial(fr.addr())
			if err == nil {
				err = a.connectRetry(lctx, conn, time.Minute)
			}
			if err != nil {
				errs[i] = err
				return
			}
			connected.Add(1)
			defer func() { a.close(); conn.Close() }()
			var v uint64
			pending := false
			for {
				if !pending {
					select {
					case <-stop:
						return
					default:
					}
					v++
				}
				err := a.report(v)
				if err == nil {
					err = a.awaitAck(v, 30*time.Second)
				}
				if err == nil {
					lastAcked[i], pending = v, false
					ackedTotal.Add(1)
					continue
				}
				// The stream is gone: reconnect as `tether agent` does
				// (channel/agent's backoff), then send v again.
				down := time.Now()
				pending = true
				a.close()
				conn.Close()
				for attempt := 0; ; attempt++ {
					select {
					case <-lctx.Done():
						errs[i] = fmt.Errorf("%s: not reconnected: %w", a.name, lctx.Err())
						return
					case <-time.After(agent.Backoff{}.Delay(attempt, rand.Int64N)):
					}
					if conn, err = simDial(fr.addr()); err != nil {
						errs[i] = err
						return
					}
					if err = a.connect(lctx, conn); err == nil {
						break
					}
					conn.Close()
				}
				mu.Lock()
				reconnects = append(reconnects, time.Since(down))
				resent++
				mu.Unlock()
			}
		}()
	}
	if err := pollEvery10ms(2*time.Minute, func() bool { return connected.Load() == int64(n) || errors.Join(errs...) != nil }); err != nil {
		close(stop)
		wg.Wait()
		return nil, fmt.Errorf("agents not connected: %w", err)
	}
	time.Sleep(3 * time.Second)
	beforeKill := ackedTotal.Load()
	step("hub kill: SIGKILL replica #0 under load (%d reports acked so far)", beforeKill)
	hs.hubs[0].stop()
	time.Sleep(o.killAfter)
	close(stop)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}

	st, err := store.Open(ctx, db)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	all, err := st.GitSyncs(ctx, "")
	if err != nil {
		return nil, err
	}
	stored := map[string]uint64{}
	for _, g := range all {
		stored[g.Agent] = g.StateVersion
	}
	acked := map[string]uint64{}
	for i, a := range agents {
		acked[a.name] = lastAcked[i]
	}
	lost, ahead := compareStored(stored, acked)
	mu.Lock()
	defer mu.Unlock()
	note := fmt.Sprintf("%d agents, a connection each through the bench's round-robin TCP front; %s reports acked in all (%s before the kill); %d agents lost their replica, reconnected to the others and resent the report not acked; afterwards every GitSync's stored state_version compared with the last its agent got acked",
		n, thousands(int(ackedTotal.Load())), thousands(int(beforeKill)), resent)
	if ahead > 0 {
		note += fmt.Sprintf("; **%d stored a state newer than the agent's last ack**", ahead)
	}
	return []row{
		{what: fmt.Sprintf("reports lost when 1 of 3 replicas is SIGKILLed under load, %d agents", n), tether: fmt.Sprint(lost),
			target: "0: " + verdict(lost == 0 && ahead == 0), note: note},
		{what: "reconnect after the replica's SIGKILL, p50 / max", tether: round(median(reconnects)) + " / " + round(p(reconnects, 100)),
			note: "from the stream's end to the Welcome of another replica; the agent's backoff waits a random 0–1 s before the first retry (full jitter, channel/agent.Backoff), so this is mostly that wait"},
	}, nil
}

// hubFleet connects o.fleet agents over three replicas, o.perConn agents
// to an HTTP/2 connection, and reads each replica's memory; then
// o.ownConns agents with a connection each on one replica, to price a
// connection of its own per agent.
func (e *env) hubFleet(ctx context.Context, o hubBench, pg newDB) ([]row, error) {
	db, err := pg()
	if err != nil {
		return nil, err
	}
	total := max(o.fleet, o.ownConns)
	step("hub fleet: %s agent tokens through the store API, 32 at a time", thousands(total))
	t0 := time.Now()
	agents, err := createAgents(ctx, db, 0, total, 32)
	if err != nil {
		return nil, err
	}
	tokens := time.Since(t0)
	var rows []row
	var muxPerAgent float64
	if o.fleet > 0 {
		r, per, err := e.hubFleetMux(ctx, o, db, agents[:o.fleet], tokens)
		if err != nil {
			return nil, err
		}
		rows, muxPerAgent = append(rows, r...), per
	}
	if o.ownConns > 0 {
		r, err := e.hubOwnConns(ctx, o, db, agents[:o.ownConns], muxPerAgent)
		if err != nil {
			return nil, err
		}
		rows = append(rows, r...)
	}
	return rows, nil
}

// perReplica is the fleet size each of three replicas holds at 100,000.
const perReplica = 33_334

func (e *env) hubFleetMux(ctx context.Context, o hubBench, db string, agents []*simAgent, tokens time.Duration) ([]row, float64, error) {
	n := len(agents)
	step("hub fleet: %s agents over 3 replicas, %d streams per HTTP/2 connection", thousands(n), o.perConn)
	fm, err := e.fleetMemory(ctx, "fleet", db, 3, agents, o.perConn, 96)
	if err != nil {
		return nil, 0, err
	}
	defer fm.stop()
	f, idle, with, connect := fm.f, fm.idle, fm.with, fm.connect
	self, _, _ := (&proc{cmd: selfCmd()}).memory()
	var maxRSS int64
	var each []string
	for _, m := range with {
		maxRSS = max(maxRSS, m.rss)
		each = append(each, fmt.Sprintf("%s (heap %s, stacks %s)", mib(m.rss), mib(m.heap), mib(m.stack)))
	}
	idleSum, withSum := sumMemory(idle), sumMemory(with)
	per := float64(withSum.rss-idleSum.rss) / float64(n)
	step("hub fleet: replicas at %s", strings.Join(each, ", "))
	what := fmt.Sprintf("hub RSS per replica, %s agents over 3 replicas (multiplexed)", thousands(n))
	return []row{{what: what, tether: mib(maxRSS) + " (largest)",
		target: targetAt("< 1 GiB each", n, 100_000, maxRSS < 1<<30),
		note: fmt.Sprintf("each agent its own token, Hello and gRPC stream, %d streams per HTTP/2 connection (the hub allows 16 on one; %s connections in all), because the hard fd limit here is 20,000 per process: 33,334 connections per replica cannot be opened; replicas %s, idle %s each; %s; connected in %s, tokens made in %s (store API CreateToken, 32 at a time); the load generator itself %s",
			o.perConn, thousands(len(f.conns)), strings.Join(each, ", "), mib(idle[0].rss), perAgent(idleSum, withSum, n),
			connect.Round(time.Second), tokens.Round(time.Second), mib(self))}}, per, nil
}

func (e *env) hubOwnConns(ctx context.Context, o hubBench, db string, agents []*simAgent, muxPerAgent float64) ([]row, error) {
	n := len(agents)
	step("hub fleet: %s agents on one hub, a TCP connection each", thousands(n))
	fm, err := e.fleetMemory(ctx, "own-connections", db, 1, agents, 1, 64)
	if err != nil {
		return nil, err
	}
	defer fm.stop()
	idle, with, connect := fm.idle, fm.with, fm.connect
	per := float64(with[0].rss-idle[0].rss) / float64(n)
	at := idle[0].rss + int64(per*perReplica)
	note := fmt.Sprintf("%s agents on one hub, each its own h2c connection (deploy/hub serves h2c: TLS ends in front of the hub): %s → %s RSS; %s; connected in %s; extrapolated: idle + 33,334 × the RSS per agent",
		thousands(n), mib(idle[0].rss), mib(with[0].rss), perAgent(idle[0], with[0], n), connect.Round(time.Second))
	if muxPerAgent > 0 {
		note += fmt.Sprintf("; %.1f KiB of it is the connection's own (vs %.1f KiB per agent multiplexed)", (per-muxPerAgent)/1024, muxPerAgent/1024)
	}
	return []row{{what: fmt.Sprintf("hub RSS at %s agents per replica, a connection each (extrapolated from %s)", thousands(perReplica), thousands(n)),
		tether: mib(at), target: "< 1 GiB each: " + verdict(at < 1<<30) + " (extrapolated)", note: note}}, nil
}

// fleetMeasure is a fleet connected to hubs, and their memory before and
// after it connected.
type fleetMeasure struct {
	f           *simFleet
	idle, with  []hubMemory
	connect     time.Duration
	hs          *hubSet
	stopBeating context.CancelFunc
}

// fleetMemory starts replicas hubs on db, reads their memory idle,
// connects agents (perConn to a connection, parallel at a time, with
// heartbeats from the start) and reads it again once they settled, every
// agent counted connected. stop ends it all.
func (e *env) fleetMemory(ctx context.Context, name, db string, replicas int, agents []*simAgent, perConn, parallel int) (*fleetMeasure, error) {
	hs, idle, err := e.startIdle(ctx, name, db, replicas)
	if err != nil {
		return nil, err
	}
	hctx, stopBeating := context.WithCancel(ctx)
	go heartbeats(hctx, agents, 15*time.Second)
	fm := &fleetMeasure{hs: hs, idle: idle, stopBeating: stopBeating}
	t0 := time.Now()
	if fm.f, err = connectFleet(ctx, agents, hs.addrs(), perConn, parallel); err != nil {
		fm.stop()
		return nil, err
	}
	fm.connect = time.Since(t0)
	time.Sleep(5 * time.Second)
	if fm.with, err = hs.memory(ctx); err == nil {
		err = allConnected(fm.with, len(agents))
	}
	if err != nil {
		fm.stop()
		return nil, err
	}
	return fm, nil
}

func (fm *fleetMeasure) stop() {
	fm.stopBeating()
	// The hubs go first, so the connections' TIME_WAIT is theirs, not
	// the load generator's ephemeral ports.
	fm.hs.stop()
	if fm.f != nil {
		fm.f.close()
	}
}

// startIdle starts replicas hubs on db and reads their idle memory.
func (e *env) startIdle(ctx context.Context, name, db string, replicas int) (*hubSet, []hubMemory, error) {
	hs, err := e.startHubSet(ctx, name, db, replicas)
	if err != nil {
		return nil, nil, err
	}
	idle, err := settledMemory(ctx, hs)
	if err != nil {
		hs.stop()
		return nil, nil, err
	}
	return hs, idle, nil
}

// selfCmd stands for this process, to read its own memory.
func selfCmd() *exec.Cmd {
	p, _ := os.FindProcess(os.Getpid())
	return &exec.Cmd{Process: p}
}

// needsCluster says whether a part other than hub runs: only those need
// the control plane and the Git server.
func (o options) needsCluster() bool {
	for _, p := range parts {
		if p != "hub" && o.does(p) {
			return true
		}
	}
	return false
}

// startBareEnv is the env of the hub part alone: the tether binary and a
// work folder, no control plane or Git server.
func startBareEnv(prefix, tether string) (*env, error) {
	bin, err := filepath.Abs(tether)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("no tether binary (run make build): %w", err)
	}
	work, err := os.MkdirTemp("", prefix)
	if err != nil {
		return nil, err
	}
	return &env{tether: bin, work: work}, nil
}

// runHubPart starts a PostgreSQL server of the bench's own (internal/pgtest's,
// outside a test) and runs the hub part on it.
func (e *env) runHubPart(ctx context.Context, o hubBench) ([]row, error) {
	step("hub: starting PostgreSQL")
	pg, err := pgtest.StartServer()
	if err != nil {
		return nil, err
	}
	defer pg.Stop()
	return e.benchHub(ctx, o, pg.NewDatabase)
}

// hubRunDesc says what a run of the hub part alone ran against.
const hubRunDesc = "`tether hub` processes built from this tree, PostgreSQL 15 started by the bench (internal/pgtest), simulated agents speaking the real protocol from the bench process"

// compareStored counts the agents whose GitSync the store holds at an
// older state than the last one the hub acknowledged to them (lost: an
// ack for a report that is not there; a GitSync missing from the store
// counts as state 0), and those it holds at a newer one (ahead: stored,
// but the agent never saw the ack and did not send it again).
func compareStored(stored, acked map[string]uint64) (lost, ahead int) {
	for agent, v := range acked {
		switch got := stored[agent]; {
		case got < v:
			lost++
		case got > v:
			ahead++
		}
	}
	return lost, ahead
}

// allConnected checks that the hubs count n agents connected
// (tether_hub_connected_agents) when their memory was read: a figure
// with fewer would flatter the hub.
func allConnected(ms []hubMemory, n int) error {
	if got := sumMemory(ms).agents; got != int64(n) {
		return fmt.Errorf("the hubs count %d agents connected, not %d", got, n)
	}
	return nil
}

func refusedNote(refused int) string {
	if refused == 0 {
		return ""
	}
	return fmt.Sprintf("; **%d refused with 503** (over the hub's 256 requests in flight), not timed", refused)
}
