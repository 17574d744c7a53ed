package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/fluxcd/cli-utils/pkg/object"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"tether.dev/tether/api/v1alpha1"
)

// Plan is a validated, normalised set of objects, ready for Apply.
type Plan struct {
	// Objects in apply order (ssa's kind order, then namespace and name):
	// copies of the input with namespace and owner labels set. A
	// cluster-scoped object has no namespace.
	Objects []*unstructured.Unstructured
	// Options the plan was made with.
	Options Options
}

// Inventory records every object of the plan.
func (p *Plan) Inventory() *v1alpha1.ResourceInventory { return NewInventory(p.Objects) }

// Plan normalises objs (target namespace, owner labels, stable order) and
// validates them: allowed namespaces, cluster scope, duplicates, unknown
// kinds (a kind is known when the API server serves it or a
// CustomResourceDefinition in objs defines it). It writes nothing and does
// not change objs. Any violation fails the whole plan with an error that
// names every offending object.
func (m *Manager) Plan(ctx context.Context, objs []*unstructured.Unstructured, opts Options) (*Plan, error) {
	if opts.Owner.Name == "" || opts.Owner.Namespace == "" {
		return nil, errors.New("plan: the owner's name and namespace are required")
	}
	target := opts.TargetNamespace
	if target == "" {
		target = opts.Owner.Namespace
	}
	allowed := make(map[string]bool, len(opts.AllowedNamespaces))
	for _, ns := range opts.AllowedNamespaces {
		allowed[ns] = true
	}
	defined := definedKinds(objs)
	// One RESTMapper lookup per kind, not per object: with thousands of
	// objects of a few kinds the lookups were most of Plan's time.
	scopes := map[schema.GroupVersionKind]bool{}

	var errs []error
	out := make([]*unstructured.Unstructured, 0, len(objs))
	counts := make(map[object.ObjMetadata]int, len(objs))
	for i, in := range objs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if in == nil {
			errs = append(errs, fmt.Errorf("object #%d: %w: nil", i, ErrInvalidObject))
			continue
		}
		o := in.DeepCopy()
		if !utils.IsKubernetesObject(o) {
			errs = append(errs, &ObjectError{Object: fmt.Sprintf("object #%d (%s)", i, utils.FmtUnstructured(o)),
				Err: fmt.Errorf("%w: apiVersion, kind and metadata.name are required", ErrInvalidObject)})
			continue
		}
		gvk := o.GroupVersionKind()
		namespaced, known := scopes[gvk]
		var err error
		if !known {
			namespaced, err = m.isNamespaced(gvk, defined)
		}
		if err == nil {
			scopes[gvk] = namespaced
		}
		if err != nil {
			if !errors.Is(err, ErrUnknownKind) {
				// Discovery failed: transient, and no reason to look further.
				return nil, fmt.Errorf("%s: %w", utils.FmtUnstructured(o), err)
			}
			errs = append(errs, &ObjectError{Object: utils.FmtUnstructured(o), Err: err})
			continue
		}
		if !namespaced {
			o.SetNamespace("")
		} else if o.GetNamespace() == "" {
			o.SetNamespace(target)
		}
		if err := checkAllowed(o, namespaced, allowed, opts.AllowedNamespaces); err != nil {
			errs = append(errs, &ObjectError{Object: utils.FmtUnstructured(o), Err: err})
			continue
		}
		labels := o.GetLabels()
		if labels == nil {
			labels = make(map[string]string, 2)
		}
		labels[v1alpha1.NameLabel] = opts.Owner.Name
		labels[v1alpha1.NamespaceLabel] = opts.Owner.Namespace
		o.SetLabels(labels)

		counts[object.UnstructuredToObjMetadata(o)]++
		out = append(out, o)
	}
	for _, o := range out {
		id := object.UnstructuredToObjMetadata(o)
		if n := counts[id]; n > 1 {
			errs = append(errs, &ObjectError{Object: utils.FmtObjMetadata(id),
				Err: fmt.Errorf("%w: it appears %d times in the set", ErrDuplicateObject, n)})
			counts[id] = 0 // report each duplicate once
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("plan refused: %w", join(errs))
	}
	sort.Sort(ssa.SortableUnstructureds(out))
	return &Plan{Objects: out, Options: opts}, nil
}

// checkAllowed enforces Options.AllowedNamespaces on a normalised object.
func checkAllowed(o *unstructured.Unstructured, namespaced bool, allowed map[string]bool, list []string) error {
	if len(allowed) == 0 {
		return nil
	}
	if namespaced {
		if !allowed[o.GetNamespace()] {
			return fmt.Errorf("%w: %q is not in allowedNamespaces [%s]",
				ErrNamespaceNotAllowed, o.GetNamespace(), strings.Join(list, ", "))
		}
		return nil
	}
	if utils.IsNamespace(o) {
		if !allowed[o.GetName()] {
			return fmt.Errorf("%w: Namespace %q is not in allowedNamespaces [%s]",
				ErrNamespaceNotAllowed, o.GetName(), strings.Join(list, ", "))
		}
		return nil
	}
	return fmt.Errorf("%w: cluster-scoped objects are refused when allowedNamespaces is set (only the Namespaces it names are allowed)",
		ErrNamespaceNotAllowed)
}

// definedKind is what a CustomResourceDefinition in the set says of its kind.
type definedKind struct {
	namespaced bool
	versions   map[string]bool
}

// definedKinds reads the kinds the CRDs among objs define, so that their
// custom resources can be planned before the CRDs exist.
func definedKinds(objs []*unstructured.Unstructured) map[schema.GroupKind]definedKind {
	out := make(map[schema.GroupKind]definedKind)
	for _, o := range objs {
		if o == nil || !utils.IsCRD(o) {
			continue
		}
		group, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		kind, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		scope, _, _ := unstructured.NestedString(o.Object, "spec", "scope")
		versions, _, _ := unstructured.NestedSlice(o.Object, "spec", "versions")
		d := definedKind{namespaced: scope != "Cluster", versions: make(map[string]bool, len(versions))}
		for _, v := range versions {
			if vm, ok := v.(map[string]any); ok {
				if name, ok := vm["name"].(string); ok {
					d.versions[name] = true
				}
			}
		}
		out[schema.GroupKind{Group: group, Kind: kind}] = d
	}
	return out
}

// isNamespaced resolves gvk's scope through the RESTMapper, then through
// the CRDs of the set. An unknown kind is an ErrUnknownKind; any other
// error is the RESTMapper's (discovery failed).
func (m *Manager) isNamespaced(gvk schema.GroupVersionKind, defined map[schema.GroupKind]definedKind) (bool, error) {
	mapping, err := m.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err == nil {
		return mapping.Scope.Name() == meta.RESTScopeNameNamespace, nil
	}
	if !meta.IsNoMatchError(err) {
		return false, fmt.Errorf("resolve kind %s: %w", gvk, err)
	}
	d, ok := defined[gvk.GroupKind()]
	if !ok {
		return false, fmt.Errorf("%w: %s is not served by the API server and no CustomResourceDefinition in this set defines it",
			ErrUnknownKind, gvk.GroupVersion().WithKind(gvk.Kind))
	}
	if !d.versions[gvk.Version] {
		return false, fmt.Errorf("%w: the CustomResourceDefinition of %s in this set has no version %q",
			ErrUnknownKind, gvk.GroupKind(), gvk.Version)
	}
	return d.namespaced, nil
}
