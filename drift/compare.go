package drift

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	ssajsondiff "github.com/fluxcd/pkg/ssa/jsondiff"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
//
// An API error that may quote the object (Invalid, BadRequest) is
// reduced to its reason and the fields it names: the server's message can
// repeat values, a Secret's among them.
func compare(ctx context.Context, c client.Client, obj *unstructured.Unstructured, manager string, ignore []string) (*ssajsondiff.Diff, error) {
	d, err := ssajsondiff.Unstructured(ctx, c, obj,
		ssajsondiff.FieldOwner(manager),
		ssajsondiff.IgnorePaths(ignore),
		ssajsondiff.MaskSecrets(true))
	return d, withoutValues(err)
}

// valueFreeError says what an API error is about without quoting the
// server's message; errors.Is and errors.As still see the API error.
type valueFreeError struct {
	msg string
	err error
}

func (e *valueFreeError) Error() string { return e.msg }
func (e *valueFreeError) Unwrap() error { return e.err }

// withoutValues returns err, or, for an API error whose message may quote
// the object, a valueFreeError naming the reason and each field with the
// kind of problem (e.g. "dry-run apply refused (Invalid):
// spec.ports[0].name: FieldValueRequired").
func withoutValues(err error) error {
	var status apierrors.APIStatus
	if err == nil || !errors.As(err, &status) {
		return err
	}
	s := status.Status()
	if s.Reason != metav1.StatusReasonInvalid && s.Reason != metav1.StatusReasonBadRequest {
		return err
	}
	var fields []string
	if s.Details != nil {
		for _, c := range s.Details.Causes {
			if c.Field != "" {
				fields = append(fields, c.Field+": "+string(c.Type))
			}
		}
	}
	sort.Strings(fields)
	msg := fmt.Sprintf("dry-run apply refused (%s)", s.Reason)
	if len(fields) > 0 {
		msg += ": " + strings.Join(fields, ", ")
	}
	return &valueFreeError{msg: msg, err: err}
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
