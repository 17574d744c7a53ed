package drift

import (
	"context"
	"fmt"
	"sort"

	"github.com/pmezard/go-difflib/difflib"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// Diff actions.
const (
	DiffCreate    = "create"
	DiffUpdate    = "update"
	DiffUnchanged = "unchanged"
)

// ObjectDiff is what applying one object would change.
type ObjectDiff struct {
	// Object is Kind/namespace/name (Kind/name for cluster scope).
	Object string
	// Action is create, update or unchanged.
	Action string
	// Unified is a unified diff of the live object and the object after
	// the apply, as YAML; Secret values are masked.
	Unified string
}

// DiffOptions configures Diff.
type DiffOptions struct {
	// FieldManager applies as (the dry-run needs one); default "tether".
	FieldManager string
	// DropLabels are removed from both sides before comparing.
	DropLabels []string
}

// Diff dry-runs a server-side apply of each object, exactly as a sync
// would, and compares the result with the live object. It writes nothing:
// every request is a GET or a dry-run.
func Diff(ctx context.Context, c client.Client, objs []*unstructured.Unstructured, o DiffOptions) ([]ObjectDiff, error) {
	if o.FieldManager == "" {
		o.FieldManager = DefaultFieldManager
	}
	out := make([]ObjectDiff, 0, len(objs))
	for _, obj := range objs {
		d, err := diffOne(ctx, c, obj, o)
		if err != nil {
			return out, err
		}
		out = append(out, d)
	}
	return out, nil
}

func diffOne(ctx context.Context, c client.Client, obj *unstructured.Unstructured, o DiffOptions) (ObjectDiff, error) {
	id := obj.GetKind() + "/" + obj.GetName()
	if obj.GetNamespace() != "" {
		id = obj.GetKind() + "/" + obj.GetNamespace() + "/" + obj.GetName()
	}
	live := &unstructured.Unstructured{}
	live.SetGroupVersionKind(obj.GroupVersionKind())
	err := c.Get(ctx, client.ObjectKeyFromObject(obj), live)
	exists := err == nil
	if err != nil && !apierrors.IsNotFound(err) {
		return ObjectDiff{}, fmt.Errorf("%s: read live object: %w", id, err)
	}
	after := obj.DeepCopy()
	for _, l := range o.DropLabels {
		unstructured.RemoveNestedField(after.Object, "metadata", "labels", l)
	}
	if err := c.Patch(ctx, after, client.Apply, client.DryRunAll, client.ForceOwnership, client.FieldOwner(o.FieldManager)); err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: dry-run apply: %w", id, err)
	}
	var before map[string]any
	if exists {
		before = forDiff(live.Object, o.DropLabels)
	}
	afterMap := forDiff(after.Object, o.DropLabels)
	if obj.GetKind() == "Secret" && obj.GroupVersionKind().Group == "" {
		maskSecret(before, afterMap)
	}
	a, err := toYAML(before)
	if err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
	}
	b, err := toYAML(afterMap)
	if err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
	}
	d := ObjectDiff{Object: id, Action: DiffUnchanged}
	switch {
	case !exists:
		d.Action = DiffCreate
	case a != b:
		d.Action = DiffUpdate
	}
	if d.Action != DiffUnchanged {
		d.Unified, err = difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
			A: difflib.SplitLines(a), B: difflib.SplitLines(b),
			FromFile: "live/" + id, ToFile: "git/" + id, Context: 3,
		})
		if err != nil {
			return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
		}
	}
	return d, nil
}

// forDiff is the part of obj a diff shows: what a re-apply can change
// (see comparable) plus the object's name, without dropLabels.
func forDiff(obj map[string]any, dropLabels []string) map[string]any {
	u := &unstructured.Unstructured{Object: deepCopyMap(comparable(obj))}
	orig := &unstructured.Unstructured{Object: obj}
	u.SetName(orig.GetName())
	u.SetNamespace(orig.GetNamespace())
	for _, l := range dropLabels {
		unstructured.RemoveNestedField(u.Object, "metadata", "labels", l)
	}
	if labels, ok, _ := unstructured.NestedMap(u.Object, "metadata", "labels"); ok && len(labels) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "labels")
	}
	return u.Object
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	return (&unstructured.Unstructured{Object: m}).DeepCopy().Object
}

// maskSecret replaces every value under data and stringData, and every
// annotation value (kubectl's last-applied-configuration holds the whole
// Secret), with a mask that still shows which keys changed: "***" when
// equal on both sides, "*** (before)" / "*** (after)" when not.
func maskSecret(before, after map[string]any) {
	for _, field := range [][]string{{"data"}, {"stringData"}, {"metadata", "annotations"}} {
		b, _, _ := unstructured.NestedMap(before, field...)
		a, _, _ := unstructured.NestedMap(after, field...)
		keys := map[string]bool{}
		for k := range b {
			keys[k] = true
		}
		for k := range a {
			keys[k] = true
		}
		sorted := make([]string, 0, len(keys))
		for k := range keys {
			sorted = append(sorted, k)
		}
		sort.Strings(sorted)
		for _, k := range sorted {
			bv, inB := b[k]
			av, inA := a[k]
			same := inA && inB && fmt.Sprint(av) == fmt.Sprint(bv)
			if inB {
				b[k] = mask(same, "before")
			}
			if inA {
				a[k] = mask(same, "after")
			}
		}
		if before != nil && b != nil {
			_ = unstructured.SetNestedMap(before, b, field...)
		}
		if after != nil && a != nil {
			_ = unstructured.SetNestedMap(after, a, field...)
		}
	}
}

func mask(same bool, side string) string {
	if same {
		return "***"
	}
	return "*** (" + side + ")"
}

func toYAML(m map[string]any) (string, error) {
	if m == nil {
		return "", nil
	}
	b, err := yaml.Marshal(m)
	return string(b), err
}
