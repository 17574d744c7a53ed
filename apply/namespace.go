package apply

import (
	"context"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"tether.dev/tether/api/v1alpha1"
)

// KeptNamespace is a Namespace that left Git but was not deleted, because
// deleting it would cascade to objects the GitSync never owned.
type KeptNamespace struct {
	// Name of the Namespace.
	Name string
	// Reason says why, naming up to a few of the objects it still holds.
	Reason string
}

// maxNamedForeign is how many foreign objects a KeptNamespace names.
const maxNamedForeign = 3

// foreignObjects lists what namespace ns holds that deleting it would take
// with it although owner never applied it: objects that are not in
// owned (inventory IDs), not labelled as owner's, not being deleted, not
// made by a controller for another object (ownerReferences), and not one
// of the objects Kubernetes puts in every namespace. When it cannot tell
// (no discovery, a kind it may not list) it says so, so that the caller
// keeps the namespace: a prune must never guess in favour of deleting.
func (m *Manager) foreignObjects(ctx context.Context, ns string, owned map[string]bool, owner Owner) ([]string, error) {
	if m.discovery == nil {
		return nil, fmt.Errorf("Namespace %s: this applier cannot list what the namespace holds", ns)
	}
	lists, err := discovery.ServerPreferredNamespacedResources(m.discovery)
	if err != nil && len(lists) == 0 {
		return nil, fmt.Errorf("Namespace %s: discover kinds: %w", ns, err)
	}
	var foreign []string
	for _, list := range lists {
		gv, perr := schema.ParseGroupVersion(list.GroupVersion)
		if perr != nil {
			continue
		}
		for _, res := range list.APIResources {
			if strings.Contains(res.Name, "/") || !hasVerb(res.Verbs, "list") || derivedKind(gv.Group, res.Name) {
				continue
			}
			gvk := gv.WithKind(res.Kind)
			items := &metav1.PartialObjectMetadataList{}
			items.SetGroupVersionKind(gvk.GroupVersion().WithKind(res.Kind + "List"))
			if err := m.client.List(ctx, items, client.InNamespace(ns)); err != nil {
				if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
					continue
				}
				return nil, fmt.Errorf("Namespace %s: list %s: %w", ns, res.Name, err)
			}
			for i := range items.Items {
				item := &items.Items[i]
				id := &unstructured.Unstructured{}
				id.SetGroupVersionKind(gvk)
				id.SetNamespace(ns)
				id.SetName(item.Name)
				if owned[EntryID(id)] || !isForeign(gvk, item, owner) {
					continue
				}
				foreign = append(foreign, fmt.Sprintf("%s/%s", res.Kind, item.Name))
			}
		}
	}
	sort.Strings(foreign)
	return foreign, nil
}

// isForeign reports whether a live object in a namespace was made by
// someone else than owner and is not a by-product of another object.
func isForeign(gvk schema.GroupVersionKind, item *metav1.PartialObjectMetadata, owner Owner) bool {
	if item.DeletionTimestamp != nil || len(item.OwnerReferences) > 0 {
		return false
	}
	if l := item.Labels; l[v1alpha1.NameLabel] == owner.Name && l[v1alpha1.NamespaceLabel] == owner.Namespace {
		return false
	}
	// Kubernetes' own controllers put these in every namespace.
	switch {
	case gvk.Group == "" && gvk.Kind == "ConfigMap" && item.Name == "kube-root-ca.crt",
		gvk.Group == "" && gvk.Kind == "ServiceAccount" && item.Name == "default",
		gvk.Group == "" && gvk.Kind == "Secret" && item.Annotations["kubernetes.io/service-account.name"] != "":
		return false
	}
	return true
}

// derivedKind is true for kinds that only record or mirror other objects
// (events, the endpoints of Services): they are never the reason to keep a
// namespace.
func derivedKind(group, resource string) bool {
	switch {
	case group == "" && (resource == "events" || resource == "endpoints"),
		group == "events.k8s.io" && resource == "events",
		group == "discovery.k8s.io" && resource == "endpointslices":
		return true
	}
	return false
}

func hasVerb(verbs metav1.Verbs, verb string) bool {
	for _, v := range verbs {
		if v == verb {
			return true
		}
	}
	return false
}

// keepReason says why a Namespace is kept, naming a few of what it holds.
func keepReason(ns string, foreign []string) string {
	named := foreign
	if len(named) > maxNamedForeign {
		named = named[:maxNamedForeign]
	}
	more := ""
	if n := len(foreign) - len(named); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return fmt.Sprintf("Namespace %s left Git but was not deleted: it holds %d object(s) this GitSync did not apply (%s%s); delete it by hand when they may go", ns, len(foreign), strings.Join(named, ", "), more)
}
