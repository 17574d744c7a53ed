package e2e

import (
	"context"
	"crypto/sha1"
	"database/sql"
	"encoding/hex"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" driver
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/channel/agent"
	"tether.dev/tether/hub/store"
	"tether.dev/tether/internal/pgtest"
	tsync "tether.dev/tether/sync"
)

// The load of the replica fault tests: loadAgents in-process agents
// (the real channel client, each with a token of its own) report
// loadGitSyncs GitSyncs each, loadRounds times, a new commit every
// round. An agent sends a round, waits until the hub has acknowledged
// every report of it, and sends the next: the load runs as fast as the
// hubs store, and every report sent is one the hub must keep.
const (
	loadAgents   = 200
	loadGitSyncs = 3
	loadRounds   = 30
)

// loadBackoff is the simulated agents' reconnection backoff; a
// reconnection is expected within its Max plus reconnectMargin (a
// generous bound, not a figure).
var loadBackoff = agent.Backoff{Initial: 500 * time.Millisecond, Max: 5 * time.Second}

const reconnectMargin = 55 * time.Second

// loadReplicas is three `tether hub` processes on one PostgreSQL of the
// test's own behind the round-robin TLS front, without an agent process
// or a Git host: the agents are simulated (loadFleet).
type loadReplicas struct {
	pg     *pgtest.Server
	db     string
	hubs   []*hubProc
	front  *front
	url    string
	caFile string
}

// startLoadReplicas starts the three hubs (the first takes the leader's
// lease), one API token for them all, and the front, whose first
// connection goes to hubs[0].
func startLoadReplicas(t *testing.T) *loadReplicas {
	t.Helper()
	lr := &loadReplicas{pg: pgtest.Start(t)}
	lr.db = lr.pg.URL(t)
	var addrs []string
	for range 3 {
		h := &hubProc{dir: t.TempDir(), db: lr.db}
		addr := freeAddr(t)
		h.argv = []string{suite.tether, "hub", "--db", lr.db, "--shutdown-timeout", "5s", "--peer-url", "http://" + addr}
		h.start(t, addr)
		lr.hubs = append(lr.hubs, h)
		addrs = append(addrs, addr)
	}
	// One API token on the one database, for every replica's API.
	api := strings.TrimSpace(readFile(t, lr.hubs[0].token(t, "api.token", "--api", "--name", "e2e")))
	for _, h := range lr.hubs {
		h.apiToken = api
	}
	var certFile, keyFile string
	certFile, keyFile, lr.caFile = tunnelCert(t, t.TempDir(), "127.0.0.1")
	lr.front = newFront(t, certFile, keyFile, 0, addrs...)
	lr.url = "https://" + lr.front.addr
	return lr
}

// sqlDB opens the hubs' database for the test's own queries.
func (lr *loadReplicas) sqlDB(t *testing.T) *sql.DB {
	t.Helper()
	db, err := sql.Open("pgx", lr.db)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// agentTokens makes one agent token per name, through the store as
// `tether hub token create --agent` does (200 processes would take
// minutes on a loaded machine).
func (lr *loadReplicas) agentTokens(t *testing.T, names []string) map[string]string {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, lr.db)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	out := map[string]string{}
	for _, n := range names {
		tok, err := st.CreateToken(ctx, store.KindAgent, n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = tok
	}
	return out
}

// requireRunning fails the test when a hub other than the ones in except
// has exited: no fault here may take a hub down.
func (lr *loadReplicas) requireRunning(t *testing.T, except int) {
	t.Helper()
	for i, h := range lr.hubs {
		if i != except && !h.running() {
			t.Fatalf("replica %d exited: %v", i, h.waitErr)
		}
	}
}

// replicaIndex maps a replica id (host/pid/random) to the index of the
// hub process with that pid, or -1.
func (lr *loadReplicas) replicaIndex(id string) int {
	parts := strings.Split(id, "/")
	if len(parts) != 3 {
		return -1
	}
	pid, _ := strconv.Atoi(parts[1])
	for i, h := range lr.hubs {
		if h.cmd.Process.Pid == pid {
			return i
		}
	}
	return -1
}

// holders is, per hub index, the agents the database says that replica
// holds (-1: connected on a replica that is none of the hubs).
func (lr *loadReplicas) holders(t *testing.T, db *sql.DB) map[int][]string {
	t.Helper()
	rows, err := db.QueryContext(context.Background(), `SELECT name, replica FROM agents WHERE connected = 1 ORDER BY name`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[int][]string{}
	for rows.Next() {
		var name, id string
		if err := rows.Scan(&name, &id); err != nil {
			t.Fatal(err)
		}
		i := lr.replicaIndex(id)
		out[i] = append(out[i], name)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitAllConnected waits until the database has every agent of the fleet
// connected on a live replica other than dead (-1: none is dead), and
// every live replica's /api/v1/agents lists each of them connected.
func (lr *loadReplicas) waitAllConnected(t *testing.T, db *sql.DB, f *loadFleet, dead int) {
	t.Helper()
	eventually(t, within(t, 2*time.Minute), "every agent connected on a live replica in the database", func() (bool, string) {
		held := lr.holders(t, db)
		n := 0
		for i, names := range held {
			if i >= 0 && i != dead && lr.hubs[i].running() {
				n += len(names)
			}
		}
		return n == len(f.agents), fmt.Sprintf("%d of %d; by replica: %s", n, len(f.agents), countsOf(held))
	})
	for i, h := range lr.hubs {
		if i == dead {
			continue
		}
		eventually(t, within(t, time.Minute), fmt.Sprintf("replica %d's API listing every agent connected", i), func() (bool, string) {
			as, err := h.agents()
			if err != nil {
				return false, err.Error()
			}
			connected := map[string]bool{}
			for _, a := range as {
				connected[a.Name] = a.Connected
			}
			var missing []string
			for _, a := range f.agents {
				if !connected[a.name] {
					missing = append(missing, a.name)
				}
			}
			return len(missing) == 0, "not connected: " + firstFew(missing)
		})
	}
}

// checkStored compares the database with what the agents sent and the
// hub acknowledged: every GitSync's state is the newest report its agent
// sent (and had acknowledged: Pending is 0), and the commit of every
// report ever acknowledged is in the GitSync's revision history (a report
// acknowledged but never stored would be missing there).
func (lr *loadReplicas) checkStored(t *testing.T, db *sql.DB, f *loadFleet) {
	t.Helper()
	ctx := context.Background()
	type gsKey struct{ agent, name string }
	state := map[gsKey]struct {
		version  int64
		revision string
	}{}
	rows, err := db.QueryContext(ctx, `SELECT agent, name, state_version, revision FROM gitsyncs WHERE namespace = $1`, loadNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k gsKey
		var v int64
		var rev string
		if err := rows.Scan(&k.agent, &k.name, &v, &rev); err != nil {
			t.Fatal(err)
		}
		state[k] = struct {
			version  int64
			revision string
		}{v, rev}
	}
	rows.Close()
	history := map[gsKey]map[string]bool{}
	rows, err = db.QueryContext(ctx, `SELECT agent, name, sha FROM revisions WHERE namespace = $1`, loadNamespace)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var k gsKey
		var sha string
		if err := rows.Scan(&k.agent, &k.name, &sha); err != nil {
			t.Fatal(err)
		}
		if history[k] == nil {
			history[k] = map[string]bool{}
		}
		history[k][sha] = true
	}
	rows.Close()

	var stale, lost []string
	acked := 0
	for _, a := range f.agents {
		a.mu.Lock()
		for name, g := range a.gitsyncs {
			k := gsKey{a.name, name}
			got, ok := state[k]
			if !ok || uint64(got.version) != g.last.version || got.revision != loadRevision(g.last.sha) {
				stale = append(stale, fmt.Sprintf("%s/%s: stored version %d %q, last sent and acknowledged %d %q",
					a.name, name, got.version, got.revision, g.last.version, loadRevision(g.last.sha)))
			}
			for _, sha := range g.acked {
				acked++
				if !history[k][sha] {
					lost = append(lost, fmt.Sprintf("%s/%s@%s", a.name, name, sha[:7]))
				}
			}
		}
		a.mu.Unlock()
	}
	t.Logf("checked %d GitSyncs and %d acknowledged reports against the database", len(f.agents)*loadGitSyncs, acked)
	if len(stale) > 0 {
		t.Errorf("GitSyncs not at the newest report their agent had acknowledged: %s", firstFew(stale))
	}
	if len(lost) > 0 {
		t.Errorf("acknowledged reports missing from the revision history (lost): %s", firstFew(lost))
	}
	if n := f.strayAcks.Load(); n > 0 {
		t.Errorf("%d acks for a state_version no agent sent", n)
	}
}

// loadNamespace is the namespace of every simulated GitSync.
const loadNamespace = "load"

// loadFleet is the simulated agents and their progress.
type loadFleet struct {
	agents []*simAgent
	start  time.Time
	// rounds counts rounds completed across the fleet; mark is closed
	// once it reaches markAt.
	rounds    atomic.Int64
	markAt    int64
	mark      chan struct{}
	markOnce  sync.Once
	strayAcks atomic.Int64
	done      chan struct{}
	errs      chan error
}

// simAgent is one simulated agent: a real channel client and what it
// sent and had acknowledged.
type simAgent struct {
	name string
	c    *agent.Client
	ack  chan struct{} // a token on every ack

	mu       sync.Mutex
	gitsyncs map[string]*simGitSync
	connects []time.Time // each "connected to the hub"
	drops    int
}

// simGitSync is one GitSync's reports: the newest sent, and the commits
// of every report the hub acknowledged.
type simGitSync struct {
	sent  map[uint64]string // state_version -> commit
	last  sentReport
	acked []string
	ackV  uint64 // the newest state_version acknowledged
}

type sentReport struct {
	version uint64
	sha     string
}

// startFleet starts the agents, each with a token of its own, on the
// front; they run their rounds until done or ctx ends.
func startFleet(t *testing.T, ctx context.Context, lr *loadReplicas, markFraction float64) *loadFleet {
	t.Helper()
	names := make([]string, loadAgents)
	for i := range names {
		names[i] = fmt.Sprintf("load-%03d", i)
	}
	tokens := lr.agentTokens(t, names)
	total := int64(loadAgents * loadRounds)
	f := &loadFleet{start: time.Now(), markAt: int64(float64(total) * markFraction), mark: make(chan struct{}),
		done: make(chan struct{}), errs: make(chan error, loadAgents)}
	for _, n := range names {
		a := &simAgent{name: n, ack: make(chan struct{}, 1), gitsyncs: map[string]*simGitSync{}}
		for g := range loadGitSyncs {
			a.gitsyncs["app-"+strconv.Itoa(g)] = &simGitSync{sent: map[uint64]string{}}
		}
		c, err := agent.New(agent.Options{
			HubURL: lr.url, AgentName: n, Token: tokens[n], CAFile: lr.caFile,
			Version: "load-test", Backoff: loadBackoff,
			Logger: slog.New(&agentEvents{a: a}),
			OnAck:  a.onAck(f),
		})
		if err != nil {
			t.Fatal(err)
		}
		a.c = c
		f.agents = append(f.agents, a)
	}
	runCtx, cancel := context.WithCancel(ctx)
	var clients, loads sync.WaitGroup
	for _, a := range f.agents {
		clients.Add(1)
		go func() {
			defer clients.Done()
			_ = a.c.Run(runCtx)
		}()
		loads.Add(1)
		go func() {
			defer loads.Done()
			if err := a.load(runCtx, f); err != nil {
				f.errs <- err
			}
		}()
	}
	go func() {
		loads.Wait()
		close(f.done)
	}()
	t.Cleanup(func() {
		cancel()
		clients.Wait()
	})
	return f
}

// onAck records an ack: the report of that version was stored (or a
// newer state was).
func (a *simAgent) onAck(f *loadFleet) func(namespace, name string, version uint64) {
	return func(namespace, name string, version uint64) {
		a.mu.Lock()
		g := a.gitsyncs[name]
		var sha string
		if g != nil && namespace == loadNamespace {
			sha = g.sent[version]
		}
		if sha == "" {
			f.strayAcks.Add(1)
		} else if version > g.ackV {
			g.ackV = version
			g.acked = append(g.acked, sha)
		}
		a.mu.Unlock()
		select {
		case a.ack <- struct{}{}:
		default:
		}
	}
}

// load sends loadRounds rounds, each one report per GitSync with a new
// commit, and waits for each round's acks before the next.
func (a *simAgent) load(ctx context.Context, f *loadFleet) error {
	for round := 1; round <= loadRounds; round++ {
		for g := range loadGitSyncs {
			name := "app-" + strconv.Itoa(g)
			sha := commitOf(a.name, name, round)
			gs := loadGitSync(name, sha)
			r := tsync.BuildReport(gs)
			a.mu.Lock()
			a.c.Send(r, gs.Spec.Source.URL) // stamps r's state_version
			s := a.gitsyncs[name]
			s.sent[r.GetStateVersion()] = sha
			s.last = sentReport{r.GetStateVersion(), sha}
			a.mu.Unlock()
		}
		for !a.roundAcked() {
			select {
			case <-a.ack:
			case <-ctx.Done():
				return fmt.Errorf("agent %s: round %d not acknowledged: %w", a.name, round, ctx.Err())
			}
		}
		if f.rounds.Add(1) == f.markAt {
			f.markOnce.Do(func() { close(f.mark) })
		}
	}
	return nil
}

// roundAcked reports whether the newest report of every GitSync is
// acknowledged.
func (a *simAgent) roundAcked() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, g := range a.gitsyncs {
		if g.ackV < g.last.version {
			return false
		}
	}
	return true
}

// waitMark waits until the fleet has done the fraction of its rounds the
// fault is meant for.
func (f *loadFleet) waitMark(t *testing.T) {
	t.Helper()
	select {
	case <-f.mark:
	case <-f.done:
		t.Fatalf("the load ended (%d rounds) before the fault was due at %d", f.rounds.Load(), f.markAt)
	case err := <-f.errs:
		t.Fatal(err)
	case <-time.After(within(t, 3*time.Minute)):
		t.Fatalf("the load did %d rounds, the fault was due at %d", f.rounds.Load(), f.markAt)
	}
}

// wait waits until every agent did its rounds and has nothing pending.
func (f *loadFleet) wait(t *testing.T) {
	t.Helper()
	select {
	case <-f.done:
	case <-time.After(within(t, 4*time.Minute)):
		t.Fatalf("the load did not finish: %d of %d rounds", f.rounds.Load(), loadAgents*loadRounds)
	}
	select {
	case err := <-f.errs:
		t.Fatal(err)
	default:
	}
	for _, a := range f.agents {
		if n := a.c.Pending(); n != 0 {
			t.Errorf("agent %s: %d reports pending after its last round was acknowledged", a.name, n)
		}
	}
}

// connectsAfter is when each agent of names first connected after t0 (the
// zero time while it has not).
func (f *loadFleet) connectsAfter(names []string, t0 time.Time) map[string]time.Time {
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	out := map[string]time.Time{}
	for _, a := range f.agents {
		if !want[a.name] {
			continue
		}
		a.mu.Lock()
		for _, c := range a.connects {
			if c.After(t0) {
				out[a.name] = c
				break
			}
		}
		a.mu.Unlock()
	}
	return out
}

// sum adds up what count says of each agent, read under its lock.
func (f *loadFleet) sum(count func(a *simAgent) int) int {
	n := 0
	for _, a := range f.agents {
		a.mu.Lock()
		n += count(a)
		a.mu.Unlock()
	}
	return n
}

// ackedCount is how many reports the hubs have acknowledged so far.
func (f *loadFleet) ackedCount() int {
	return f.sum(func(a *simAgent) int {
		n := 0
		for _, g := range a.gitsyncs {
			n += len(g.acked)
		}
		return n
	})
}

// drops is how many times the agents lost or could not reach the hub.
func (f *loadFleet) drops() int { return f.sum(func(a *simAgent) int { return a.drops }) }

// agentEvents is a simulated agent's log: it notes when the client
// connected and how often it lost the hub, and drops the rest (200
// agents' logs would drown the test's).
type agentEvents struct{ a *simAgent }

func (h *agentEvents) Enabled(context.Context, slog.Level) bool { return true }

func (h *agentEvents) Handle(_ context.Context, r slog.Record) error {
	switch {
	case r.Message == "connected to the hub":
		h.a.mu.Lock()
		h.a.connects = append(h.a.connects, r.Time)
		h.a.mu.Unlock()
	case r.Level >= slog.LevelWarn:
		h.a.mu.Lock()
		h.a.drops++
		h.a.mu.Unlock()
	}
	return nil
}

func (h *agentEvents) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *agentEvents) WithGroup(string) slog.Handler      { return h }

// commitOf is the commit a simulated GitSync is at in a round.
func commitOf(agentName, gitsync string, round int) string {
	sum := sha1.Sum([]byte(fmt.Sprintf("%s/%s/%d", agentName, gitsync, round)))
	return hex.EncodeToString(sum[:])
}

func loadRevision(sha string) string { return "main@sha1:" + sha }

// loadGitSync is a simulated GitSync synced at sha, as the sync loop
// would hand it to the reporter.
func loadGitSync(name, sha string) *v1alpha1.GitSync {
	now := metav1.Now()
	return &v1alpha1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: loadNamespace, Name: name},
		Spec: v1alpha1.GitSyncSpec{
			Source: v1alpha1.GitSource{URL: "https://git.example/acme/" + name + ".git", Ref: v1alpha1.GitRef{Branch: "main"}},
			Path:   "deploy",
		},
		Status: v1alpha1.GitSyncStatus{
			LastAppliedRevision: loadRevision(sha), LastAttemptedRevision: loadRevision(sha), LastSyncTime: &now,
			Conditions: []metav1.Condition{{Type: v1alpha1.ReadyCondition, Status: metav1.ConditionTrue,
				Reason: v1alpha1.ReasonSucceeded, Message: "applied", LastTransitionTime: now}},
		},
	}
}

// within is d, or less when the test's deadline is nearer, leaving half a
// minute to clean up and print logs.
func within(t *testing.T, d time.Duration) time.Duration {
	if dl, ok := t.Deadline(); ok {
		d = min(d, time.Until(dl)-30*time.Second)
	}
	return max(d, time.Second)
}

func countsOf(m map[int][]string) string {
	var parts []string
	for _, i := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%d:%d", i, len(m[i])))
	}
	return strings.Join(parts, " ")
}

// percentile is the p-th percentile (0..100) of ds, sorted in place.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(len(ds)-1)*p/100]
}

// loadContext is the load's context: it ends six minutes from now at
// the latest, before the test's deadline.
func loadContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), within(t, 6*time.Minute))
	t.Cleanup(cancel)
	return ctx
}

// startLoad starts the replicas and the fleet, and returns once a third
// of the load is done: the time for a fault.
func startLoad(t *testing.T) (*loadReplicas, *sql.DB, *loadFleet) {
	t.Helper()
	lr := startLoadReplicas(t)
	db := lr.sqlDB(t)
	f := startFleet(t, loadContext(t), lr, 1.0/3)
	f.waitMark(t)
	return lr, db, f
}

// finish waits for the load to end and checks that the replicas other
// than dead (-1: none) kept running, that nothing acknowledged was lost
// and that every agent is connected.
func (lr *loadReplicas) finish(t *testing.T, db *sql.DB, f *loadFleet, dead int) {
	t.Helper()
	f.wait(t)
	t.Logf("load done in %s: %d reports; the agents lost or could not reach a hub %d times",
		time.Since(f.start).Round(time.Millisecond), loadAgents*loadGitSyncs*loadRounds, f.drops())
	lr.requireRunning(t, dead)
	lr.checkStored(t, db, f)
	lr.waitAllConnected(t, db, f, dead)
	lr.requireRunning(t, dead)
}

// TestHubReplicasLoadPostgresRestart restarts PostgreSQL while 200
// agents report through three hub replicas. The hubs recover without a
// restart of their own, the agents finish their rounds, and nothing the
// hubs acknowledged is lost: every GitSync is at its agent's newest
// report, every acknowledged commit is in its history, and every agent
// ends up connected.
func TestHubReplicasLoadPostgresRestart(t *testing.T) {
	lr, db, f := startLoad(t)
	before, acked := f.rounds.Load(), f.ackedCount()
	restart := time.Now()
	lr.pg.Restart(t)
	t.Logf("PostgreSQL restarted after %d of %d rounds, %d reports acknowledged (%s into the load; the restart took %s)",
		before, loadAgents*loadRounds, acked, restart.Sub(f.start).Round(time.Millisecond), time.Since(restart).Round(time.Millisecond))
	lr.finish(t, db, f, -1)
}

// TestHubReplicasLoadReplicaKilled kills (SIGKILL) the replica holding
// the most agents while 200 agents report through three replicas. Its
// agents reconnect through the front to the others within their backoff
// (the times are logged, the bound is generous), the load finishes,
// nothing acknowledged is lost, and the live replicas show every agent
// connected.
func TestHubReplicasLoadReplicaKilled(t *testing.T) {
	lr, db, f := startLoad(t)
	held := lr.holders(t, db)
	victim := -1
	for i := range lr.hubs {
		if victim < 0 || len(held[i]) > len(held[victim]) {
			victim = i
		}
	}
	moved := held[victim]
	acked := f.ackedCount()
	t0 := time.Now()
	lr.hubs[victim].kill()
	t.Logf("replica %d killed after %d of %d rounds, %d reports acknowledged (%s into the load); it held %d agents (by replica: %s)",
		victim, f.rounds.Load(), loadAgents*loadRounds, acked, t0.Sub(f.start).Round(time.Millisecond), len(moved), countsOf(held))
	if len(moved) == 0 {
		t.Fatal("the killed replica held no agent")
	}

	bound := loadBackoff.Max + reconnectMargin
	var back map[string]time.Time
	eventually(t, within(t, bound), "the killed replica's agents to connect again", func() (bool, string) {
		back = f.connectsAfter(moved, t0)
		return len(back) == len(moved), fmt.Sprintf("%d of %d", len(back), len(moved))
	})
	var took []time.Duration
	for _, at := range back {
		took = append(took, at.Sub(t0))
	}
	t.Logf("%d agents reconnected: p50 %s, max %s after the kill (bound %s; indicative only on a shared machine)",
		len(took), percentile(took, 50).Round(time.Millisecond), percentile(took, 100).Round(time.Millisecond), bound)
	if m := percentile(took, 100); m > bound {
		t.Errorf("an agent took %s to reconnect, over %s", m, bound)
	}

	lr.finish(t, db, f, victim)
}
