package testenv

import (
	"context"
	"fmt"
	"os"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"
)

// T is the part of testing.TB the helpers below use. testenv takes it
// instead of importing package testing, because the tether binary links
// testenv (for `tether dev`) and must not carry the test framework.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
}

// M is what TestMain is given (*testing.M).
type M interface{ Run() int }

// Main is a test package's TestMain, less os.Exit: it starts a control
// plane with opts, calls setup with it (nil: nothing to set up), runs the
// tests, calls the stop function setup returned (if any) and stops the
// control plane. It returns the exit code, and says on stderr what failed
// outside the tests.
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Main(m, opts, setup)) }
func Main(m M, opts ControlPlaneOptions, setup func(*ControlPlane) (stop func() error, err error)) int {
	cp, err := StartControlPlane(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		if err := cp.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}()
	var stop func() error
	if setup != nil {
		if stop, err = setup(cp); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	if stop != nil {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, err)
		}
	}
	return code
}

// Context is bounded by d and ends with the test, so that a stuck call
// fails the test instead of hanging the package.
func Context(t T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Eventually calls cond until it returns nil, and fails t with cond's last
// error once timeout has passed. The timeout is for things that should
// happen, never an assertion about speed: make it generous. Polls start
// at 10 ms and slow down to 200 ms, so that a quick state is seen quickly
// and a slow one costs little.
func Eventually(t T, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}

// Consistently calls cond every 200 ms for d and fails t at its first
// error: for a state that must hold while something else happens.
func Consistently(t T, d time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := cond(); err != nil {
			t.Fatalf("%v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// NewNamespace creates a namespace of the test's own, named prefix-*, and
// fails t when it cannot.
func NewNamespace(t T, c client.Client, prefix string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := CreateNamespace(ctx, c, prefix)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return ns
}

// NewDeployerNamespace is NewNamespace whose DeployerAccount is bound to
// clusterRole, in the namespace or cluster-wide (see GrantDeployer); a
// ClusterRoleBinding is removed when the test ends.
func NewDeployerNamespace(t T, c client.Client, prefix, clusterRole string, clusterWide bool) string {
	t.Helper()
	ns := NewNamespace(t, c, prefix)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	revoke, err := GrantDeployer(ctx, c, ns, clusterRole, clusterWide)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := revoke(ctx); err != nil {
			t.Logf("%v", err)
		}
	})
	return ns
}
