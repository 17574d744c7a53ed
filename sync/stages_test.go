package sync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/apply"
)

// Errors of the apply package map to the condition reason a sync reports,
// and to whether they are the user's to fix (Stalled).
func TestApplyErrorReasons(t *testing.T) {
	t.Parallel()
	conflict := &apply.OwnershipConflictError{Object: "ConfigMap/shop/config", Owner: apply.Owner{Namespace: "shop", Name: "web"}}
	for _, tc := range []struct {
		name   string
		err    error
		reason string
		user   bool
		says   string
	}{
		{"ownership conflict", fmt.Errorf("plan: %w", conflict), v1alpha1.ReasonOwnershipConflict, true, "owned by GitSync shop/web"},
		{"namespace not allowed", fmt.Errorf("ConfigMap/x/a: %w", apply.ErrNamespaceNotAllowed), v1alpha1.ReasonNamespaceDenied, true, "ConfigMap/x/a"},
		{"invalid object", fmt.Errorf("a: %w", apply.ErrInvalidObject), v1alpha1.ReasonApplyFailed, true, "invalid object"},
		{"API server away", errors.New("connection refused"), v1alpha1.ReasonApplyFailed, false, "connection refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			se := applyError(tc.err)
			if se.Reason != tc.reason || se.User != tc.user || !strings.Contains(se.Error(), tc.says) {
				t.Errorf("applyError = {%s, user %v, %q}, want {%s, user %v, mentioning %q}", se.Reason, se.User, se.Error(), tc.reason, tc.user, tc.says)
			}
			if !errors.Is(se, tc.err) {
				t.Error("the stage error does not wrap the apply error")
			}
		})
	}
}

// countingReader counts the Secrets read through it.
type countingReader struct {
	client.Reader
	reads atomic.Int32
}

func (c *countingReader) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	c.reads.Add(1)
	return c.Reader.Get(ctx, key, obj, opts...)
}

// Credentials reads a Secret once per TTL, again when asked for fresh ones
// or when the TTL has passed, and never keeps a failed read.
func TestCredentials(t *testing.T) {
	t.Parallel()
	ns := newNamespace(t, "credentials")
	writeSecret(t, ns, "git", gitPassword)
	reader := &countingReader{Reader: k8s}
	creds := NewCredentials(reader, time.Minute)
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	creds.now = func() time.Time { return now }
	gs := &v1alpha1.GitSync{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "app"}}
	gs.Spec.Source.SecretRef = &v1alpha1.LocalObjectReference{Name: "git"}
	ctx := testContext(t)

	get := func(fresh bool, wantReads int32) {
		t.Helper()
		auth, err := creds.Get(ctx, gs, fresh)
		if err != nil || auth == nil {
			t.Fatalf("Get = %v, %v", auth, err)
		}
		if n := reader.reads.Load(); n != wantReads {
			t.Fatalf("%d Secret reads, want %d", n, wantReads)
		}
	}
	get(false, 1)
	get(false, 1) // within the TTL: kept
	get(true, 2)  // fresh: a resync or a refused authentication
	now = now.Add(time.Minute)
	get(false, 3) // the TTL passed

	other := gs.DeepCopy()
	other.Name = "other" // same Secret, another GitSync: shares the read
	if _, err := creds.Get(ctx, other, false); err != nil || reader.reads.Load() != 3 {
		t.Fatalf("another GitSync naming the same Secret: err %v, %d reads", err, reader.reads.Load())
	}

	if err := k8s.Delete(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "git"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := creds.Get(ctx, gs, true); !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), ns+"/git") {
		t.Fatalf("Get of a deleted Secret = %v, want NotFound naming it", err)
	}
	if _, err := creds.Get(ctx, gs, false); !apierrors.IsNotFound(err) {
		t.Fatalf("after a failed read, Get = %v: a stale read was kept", err)
	}
	none := &v1alpha1.GitSync{}
	if auth, err := creds.Get(ctx, none, false); auth != nil || err != nil {
		t.Fatalf("no secretRef: Get = %v, %v", auth, err)
	}
}
