package events

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"tether.dev/tether/channel/channelpb"
	"tether.dev/tether/internal/testenv"
)

var cp *testenv.ControlPlane

func TestMain(m *testing.M) {
	var err error
	cp, err = testenv.StartControlPlane(testenv.ControlPlaneOptions{WithoutCRDs: true})
	if err != nil {
		fmt.Fprintln(os.Stderr, "control plane:", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := cp.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop control plane:", err)
	}
	os.Exit(code)
}

// owners is a fixed mapping: objects named "<gitsync>-..." in namespace
// ns belong to GitSync apps/<gitsync>.
type owners struct{ ns string }

func (o owners) OwnerOf(kind, namespace, name string) (string, string, bool) {
	gs, _, ok := strings.Cut(name, "-")
	if namespace != o.ns || !ok || kind != "Pod" {
		return "", "", false
	}
	return "apps", gs, true
}

// sink records what the collector sends.
type sink struct {
	mu     sync.Mutex
	events []*channelpb.WarningEvent
	down   bool
}

func (s *sink) SendEvents(b *channelpb.WarningEvents) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.down {
		return false
	}
	if err := b.Validate(); err != nil {
		panic(err) // the hub would end the stream
	}
	s.events = append(s.events, b.GetEvents()...)
	return true
}

func (s *sink) got() []*channelpb.WarningEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*channelpb.WarningEvent(nil), s.events...)
}

func setup(t *testing.T) (kubernetes.Interface, string) {
	t.Helper()
	kube, err := kubernetes.NewForConfig(cp.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := kube.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "events-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return kube, ns.Name
}

func warning(ns, name, object, reason, message string, typ string) *corev1.Event {
	now := metav1.Now()
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: name},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: object, APIVersion: "v1"},
		Reason:         reason, Message: message, Type: typ, Count: 1,
		FirstTimestamp: now, LastTimestamp: now, Source: corev1.EventSource{Component: "kubelet"},
	}
}

func run(t *testing.T, c *Collector) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func TestWarningsOfManagedObjectsAreSentFolded(t *testing.T) {
	kube, ns := setup(t)
	s := &sink{}
	c, err := New(Options{Client: kube, Owners: owners{ns}, Sender: s, Flush: 50 * time.Millisecond, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	run(t, c)
	ctx := context.Background()
	ev := warning(ns, "web-1.a", "web-1", "Failed", "Back-off pulling image \"nope:1\": ImagePullBackOff", corev1.EventTypeWarning)
	for _, e := range []*corev1.Event{
		ev,
		warning(ns, "web-1.b", "web-1", "Scheduled", "fine", corev1.EventTypeNormal),               // not a warning
		warning(ns, "other.a", "other", "Failed", "not managed: no dash", corev1.EventTypeWarning), // no owner
	} {
		if _, err := kube.CoreV1().Events(ns).Create(ctx, e, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if len(s.got()) == 0 {
			return fmt.Errorf("no event sent")
		}
		return nil
	})
	// The kubelet counts the same warning up: the collector sends the
	// repeats folded into one event, not one per repeat.
	s.mu.Lock()
	s.down = true
	s.mu.Unlock()
	got, err := kube.CoreV1().Events(ns).Get(ctx, ev.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 5; i++ {
		got.Count = int32(i)
		got.LastTimestamp = metav1.Now()
		if got, err = kube.CoreV1().Events(ns).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		if st := c.Stats(); st.Seen != 5 {
			return fmt.Errorf("seen %d, want 5", st.Seen)
		}
		return nil
	})
	if st := c.Stats(); st.Pending != 1 {
		t.Fatalf("pending %d while the hub is away; want the 4 repeats folded into 1", st.Pending)
	}
	s.mu.Lock()
	s.down = false
	s.mu.Unlock()
	testenv.Eventually(t, 10*time.Second, func() error {
		if n := len(s.got()); n != 2 {
			return fmt.Errorf("%d events sent, want 2", n)
		}
		return nil
	})
	sent := s.got()
	first, second := sent[0], sent[1]
	if first.GetGitsyncNamespace() != "apps" || first.GetGitsyncName() != "web" || first.GetKind() != "Pod" ||
		first.GetName() != "web-1" || first.GetReason() != "Failed" || first.GetCount() != 1 ||
		!strings.Contains(first.GetMessage(), "ImagePullBackOff") {
		t.Errorf("first event %v", first)
	}
	if second.GetCount() != 4 || second.GetMessage() != first.GetMessage() {
		t.Errorf("repeats sent as %v; want one event with count 4", second)
	}
	if n := c.Count("apps", "web"); n != 5 {
		t.Errorf("Count = %d, want 5", n)
	}
	if n := c.Count("apps", "other"); n != 0 {
		t.Errorf("an unmanaged object counted: %d", n)
	}
}

// A flood of 10,000 distinct warnings: with the clock stopped the bucket
// never refills, so at most Burst go out, at most MaxPending wait, and the
// rest is counted as dropped.
func TestFloodIsRateLimited(t *testing.T) {
	if testing.Short() {
		t.Skip("creates 10,000 events")
	}
	kube, ns := setup(t)
	s := &sink{}
	const burst, maxPending, flood = 20, 100, 10000
	c, err := New(Options{Client: kube, Owners: owners{ns}, Sender: s, Burst: burst, Rate: 1000,
		MaxPending: maxPending, Flush: 20 * time.Millisecond, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	c.now = func() time.Time { return stopped }
	c.last = stopped
	run(t, c)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < flood; i += 8 {
				e := warning(ns, fmt.Sprintf("web-%d.x", i), fmt.Sprintf("web-%d", i), "BackOff", "Back-off restarting failed container", corev1.EventTypeWarning)
				if _, err := kube.CoreV1().Events(ns).Create(ctx, e, metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() error {
		if st := c.Stats(); st.Seen != flood {
			return fmt.Errorf("seen %d of %d", st.Seen, flood)
		}
		return nil
	})
	st := c.Stats()
	if n := len(s.got()); n > burst || st.Sent > burst {
		t.Errorf("%d events sent (stats %d); the bucket allows %d", n, st.Sent, burst)
	}
	if st.Pending > maxPending {
		t.Errorf("%d events pending, bound %d", st.Pending, maxPending)
	}
	if st.Sent+int64(st.Pending)+st.Dropped != flood {
		t.Errorf("sent %d + pending %d + dropped %d != %d", st.Sent, st.Pending, st.Dropped, flood)
	}
	t.Logf("flood of %d: sent %d, pending %d, dropped %d", flood, st.Sent, st.Pending, st.Dropped)
}

// deployments says Deployment apps/<name> objects in ns belong to GitSync
// apps/<name>, as the drift tracker would for what a GitSync applied.
type deployments struct{ ns string }

func (d deployments) OwnerOf(kind, namespace, name string) (string, string, bool) {
	if kind != "Deployment" || namespace != d.ns {
		return "", "", false
	}
	return "apps", name, true
}

// A Pod's warning belongs to the GitSync that applied the Deployment
// whose ReplicaSet made the Pod.
func TestControllersFollowOwnerReferences(t *testing.T) {
	kube, ns := setup(t)
	ctx := context.Background()
	yes := true
	rs, err := kube.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "Deployment", Name: "web", UID: "11111111-1111-1111-1111-111111111111", Controller: &yes}}},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:nope"}}}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-7d9f-abcde", OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rs.Name, UID: rs.UID, Controller: &yes}}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.example/web:nope"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stray"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "x"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	o := Controllers(kube, OwnersFunc(deployments{ns}.OwnerOf))
	for _, c := range []struct {
		kind, name string
		want       string
	}{
		{"Pod", "web-7d9f-abcde", "apps/web"},
		{"ReplicaSet", "web-7d9f", "apps/web"},
		{"Deployment", "web", "apps/web"},
		{"Pod", "stray", ""},
		{"Pod", "missing", ""},
		{"ConfigMap", "web", ""},
	} {
		ns, name, ok := o.OwnerOf(c.kind, ns, c.name)
		got := ""
		if ok {
			got = ns + "/" + name
		}
		if got != c.want {
			t.Errorf("OwnerOf(%s %s) = %q, want %q", c.kind, c.name, got, c.want)
		}
	}
}
