package drift

import (
	"context"
	"sort"

	ssajsondiff "github.com/fluxcd/pkg/ssa/jsondiff"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// requestsPerCompare is what one compare costs: a GET of the live object
// and a server-side dry-run apply.
const requestsPerCompare = 2

// compare is the one dry-run/compare path of drift, shared by Check and
// Diff: fluxcd/pkg/ssa's jsondiff dry-runs a server-side apply of obj
// under manager (forced, as Tether applies) and compares the result with
// the live object, status and server-set metadata left out, the JSON
// pointers in ignore removed from both sides. It writes nothing. The
// returned patch goes from the live object to the object after the
// apply; Secret values in it are masked, so that no caller can show them.
// An object the cluster does not have is DiffTypeCreate.
func compare(ctx context.Context, c client.Client, obj *unstructured.Unstructured, manager string, ignore []string) (*ssajsondiff.Diff, error) {
	return ssajsondiff.Unstructured(ctx, c, obj,
		ssajsondiff.FieldOwner(manager),
		ssajsondiff.IgnorePaths(ignore),
		ssajsondiff.MaskSecrets(true))
}

// patchPaths returns the JSON pointers a compare's patch changes, each
// once, sorted.
func patchPaths(d *ssajsondiff.Diff) []string {
	seen := make(map[string]bool, len(d.Patch))
	var out []string
	for _, op := range d.Patch {
		if !seen[op.Path] {
			seen[op.Path] = true
			out = append(out, op.Path)
		}
	}
	sort.Strings(out)
	return out
}
