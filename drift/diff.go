package drift

import (
	"context"
	"fmt"
	"sort"

	ssajsondiff "github.com/fluxcd/pkg/ssa/jsondiff"
	"github.com/pmezard/go-difflib/difflib"
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
// would, and compares the result with the live object, on the same path
// as Check (see compare). It writes nothing: every request is a GET or a
// dry-run.
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
	desired := obj.DeepCopy()
	ignore := make([]string, 0, len(o.DropLabels))
	for _, l := range o.DropLabels {
		unstructured.RemoveNestedField(desired.Object, "metadata", "labels", l)
		ignore = append(ignore, "/metadata/labels/"+escape(l))
	}
	d, err := compare(ctx, c, desired, o.FieldManager, ignore)
	if err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
	}
	var before, after map[string]any
	switch d.Type {
	case ssajsondiff.DiffTypeNone:
		return ObjectDiff{Object: id, Action: DiffUnchanged}, nil
	case ssajsondiff.DiffTypeCreate:
		after = forDiff(desired.Object, o.DropLabels)
	default:
		live, ok := d.ClusterObject.(*unstructured.Unstructured)
		if !ok {
			return ObjectDiff{}, fmt.Errorf("%s: no live object to compare", id)
		}
		before = forDiff(live.Object, o.DropLabels)
		applied := &unstructured.Unstructured{Object: deepCopyMap(before)}
		if err := ssajsondiff.ApplyPatchToUnstructured(applied, d.Patch); err != nil {
			return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
		}
		after = applied.Object
	}
	if obj.GetKind() == "Secret" && obj.GroupVersionKind().Group == "" {
		maskSecret(before, after)
	}
	a, err := toYAML(before)
	if err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
	}
	b, err := toYAML(after)
	if err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
	}
	action := DiffUpdate
	if before == nil {
		action = DiffCreate
	}
	unified, err := difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A: difflib.SplitLines(a), B: difflib.SplitLines(b),
		FromFile: "live/" + id, ToFile: "git/" + id, Context: 3,
	})
	if err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: %w", id, err)
	}
	return ObjectDiff{Object: id, Action: action, Unified: unified}, nil
}

// comparable returns the parts of an object that a re-apply can change:
// everything but status, and of metadata only labels and annotations.
func comparable(obj map[string]any) map[string]any {
	out := make(map[string]any, len(obj))
	for k, v := range obj {
		switch k {
		case "status":
		case "metadata":
			md, _ := v.(map[string]any)
			keep := map[string]any{}
			for _, f := range []string{"labels", "annotations"} {
				if x, ok := md[f]; ok {
					keep[f] = x
				}
			}
			out[k] = keep
		default:
			out[k] = v
		}
	}
	return out
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
