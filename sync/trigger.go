package sync

import (
	"context"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
	"tether.dev/tether/source"
)

// SyncRepo makes every GitSync whose source is url poll now, as a push
// webhook relayed by the hub asks: the listing cache of url is dropped so
// that the new commit is seen at once. With branchOrTag set, only GitSyncs
// whose ref can follow it are woken (a semver ref follows every tag). It
// returns how many GitSyncs were woken.
func (r *Reconciler) SyncRepo(ctx context.Context, url, branchOrTag string) (int, error) {
	r.Source.Forget(url)
	list := &v1alpha1.GitSyncList{}
	if err := r.Client.List(ctx, list); err != nil {
		return 0, fmt.Errorf("list GitSyncs: %w", err)
	}
	n := 0
	for i := range list.Items {
		gs := &list.Items[i]
		if gs.Spec.Source.URL != url || !follows(SourceRef(gs), branchOrTag) {
			continue
		}
		r.SyncNow(client.ObjectKeyFromObject(gs))
		n++
	}
	return n, nil
}

// follows reports whether a GitSync with ref can be moved by a push of
// pushed, a branch or tag name ("" matches everything). A semver ref
// follows every tag; an exact commit never moves.
func follows(ref source.Ref, pushed string) bool {
	pushed = strings.TrimPrefix(strings.TrimPrefix(pushed, "refs/heads/"), "refs/tags/")
	switch {
	case pushed == "":
		return true
	case ref.Branch != "":
		return ref.Branch == pushed
	case ref.Tag != "":
		return ref.Tag == pushed
	default:
		return ref.Semver != ""
	}
}

// Resync forces one full sync of a GitSync, exactly as the resync
// annotation does (see RequestResync).
func (r *Reconciler) Resync(ctx context.Context, key types.NamespacedName, value string) error {
	_, err := RequestResync(ctx, r.Client, key, value)
	return err
}

// RequestResync sets a GitSync's tether.dev/resync-at annotation to value
// (now, when empty), which forces one full sync that lists the ref again;
// the status echoes the value in lastHandledResyncAt once handled. It
// returns the value set.
func RequestResync(ctx context.Context, c client.Client, key types.NamespacedName, value string) (string, error) {
	if value == "" {
		value = metav1.Now().UTC().Format(time.RFC3339Nano)
	}
	gs := &v1alpha1.GitSync{}
	if err := c.Get(ctx, key, gs); err != nil {
		return "", fmt.Errorf("GitSync %s: %w", key, err)
	}
	patch := client.MergeFrom(gs.DeepCopy())
	metav1.SetMetaDataAnnotation(&gs.ObjectMeta, v1alpha1.ResyncAnnotation, value)
	if err := c.Patch(ctx, gs, patch); err != nil {
		return "", fmt.Errorf("GitSync %s: set %s: %w", key, v1alpha1.ResyncAnnotation, err)
	}
	return value, nil
}
