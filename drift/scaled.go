package drift

import (
	"sort"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// ReplicasPath is the field an autoscaler owns in the object it scales.
const ReplicasPath = "/spec/replicas"

// Scaled is an applied object whose replicas an autoscaler applied with it
// manages: an object of the same owner whose spec.scaleTargetRef names it
// (a HorizontalPodAutoscaler, or any scaler of that shape, such as KEDA's
// ScaledObject). Check ignores its ReplicasPath, as if an ignore rule
// named it, so drift correction never fights the autoscaler; unlike a
// caller's rule, it also accepts a version that differs there only, so
// scaling costs one Check, not one per later event.
type Scaled struct {
	// Group, Kind, Namespace and Name identify the scaled object.
	Group, Kind, Namespace, Name string
	// By is the autoscaler, Kind/name (in the same namespace).
	By string
}

// String says what is ignored and why, for a status message.
func (s Scaled) String() string {
	return "spec.replicas of " + s.Kind + "/" + s.Name + " ignored: scaled by " + s.By
}

// rule is the ignore rule s implies.
func (s Scaled) rule() IgnoreRule {
	return IgnoreRule{Group: s.Group, Kind: s.Kind, Namespace: s.Namespace, Name: s.Name, Paths: []string{ReplicasPath}}
}

// scaledIn finds the autoscalers among applied whose target is applied
// too: objects with spec.scaleTargetRef (apiVersion, kind, name), whose
// target is in their own namespace. Where the reference leaves apiVersion
// or kind out, they mean apps/v1 and Deployment, as in KEDA. A target
// outside the set is none of this owner's drift.
func scaledIn(applied []*unstructured.Unstructured) []Scaled {
	type id struct{ group, kind, ns, name string }
	present := make(map[id]bool, len(applied))
	for _, o := range applied {
		if o == nil {
			continue
		}
		gvk := o.GroupVersionKind()
		present[id{gvk.Group, gvk.Kind, o.GetNamespace(), o.GetName()}] = true
	}
	var out []Scaled
	for _, o := range applied {
		if !isAutoscaler(o) {
			continue
		}
		ref, _, _ := unstructured.NestedStringMap(o.Object, "spec", "scaleTargetRef")
		apiVersion, kind, name := ref["apiVersion"], ref["kind"], ref["name"]
		if apiVersion == "" {
			apiVersion = "apps/v1"
		}
		if kind == "" {
			kind = "Deployment"
		}
		gv, err := schema.ParseGroupVersion(apiVersion)
		if err != nil || name == "" {
			continue
		}
		if !present[id{gv.Group, kind, o.GetNamespace(), name}] {
			continue
		}
		out = append(out, Scaled{Group: gv.Group, Kind: kind, Namespace: o.GetNamespace(), Name: name,
			By: o.GetKind() + "/" + o.GetName()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String()+out[i].Namespace < out[j].String()+out[j].Namespace })
	return out
}

// isAutoscaler reports whether o scales another object: it has a
// spec.scaleTargetRef.
func isAutoscaler(o *unstructured.Unstructured) bool {
	if o == nil {
		return false
	}
	_, ok, _ := unstructured.NestedMap(o.Object, "spec", "scaleTargetRef")
	return ok
}

// Scaled returns owner's applied objects whose replicas an applied
// autoscaler manages, as of the last Record; Check ignores their
// ReplicasPath. It makes no API request.
func (t *Tracker) Scaled(owner Owner) []Scaled {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.owners[owner]
	if !ok {
		return nil
	}
	return append([]Scaled(nil), st.scaled...)
}
