package apply

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"tether.dev/tether/api/v1alpha1"
)

// Sentinel errors, for errors.Is. Each is a user error: the objects in Git
// must change before a retry can succeed.
var (
	// ErrNamespaceNotAllowed refuses an object outside Options.AllowedNamespaces,
	// including a cluster-scoped object other than an allowed Namespace.
	ErrNamespaceNotAllowed = errors.New("namespace not allowed")
	// ErrUnknownKind refuses an object whose kind the API server does not
	// serve and no CustomResourceDefinition in the same set defines.
	ErrUnknownKind = errors.New("unknown kind")
	// ErrInvalidObject refuses an object without apiVersion, kind or name.
	ErrInvalidObject = errors.New("invalid object")
	// ErrDuplicateObject refuses a set that holds the same object twice.
	ErrDuplicateObject = errors.New("duplicate object")
	// ErrImmutableField reports a change to a field the API server will not
	// update in place, on an object without the force annotation.
	ErrImmutableField = errors.New("immutable field changed")
	// ErrOwnershipConflict refuses an object that another GitSync owns
	// (its owner labels name that GitSync): it is neither applied nor
	// taken over.
	ErrOwnershipConflict = errors.New("owned by another GitSync")
)

// OwnershipConflictError names an object of the set that another GitSync
// already owns, and that owner.
type OwnershipConflictError struct {
	Object string // Kind/namespace/name
	Owner  Owner  // the GitSync whose owner labels the live object carries
}

// Error says which object and which GitSync, e.g. "ConfigMap/shop/config
// is owned by GitSync shop/web; ...".
func (e *OwnershipConflictError) Error() string {
	return fmt.Sprintf("%s is owned by GitSync %s/%s; remove it from one of the two GitSyncs (nothing was applied)",
		e.Object, e.Owner.Namespace, e.Owner.Name)
}

// Unwrap makes errors.Is(err, ErrOwnershipConflict) true.
func (e *OwnershipConflictError) Unwrap() error { return ErrOwnershipConflict }

// ObjectError is an error about one object. Object is its identity as
// Kind/namespace/name (Kind/name when cluster-scoped).
type ObjectError struct {
	Object string
	Err    error
}

// Error leads with the object's identity, e.g.
// "Deployment/shop/web apply failed: ...".
func (e *ObjectError) Error() string {
	return e.Object + " " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *ObjectError) Unwrap() error { return e.Err }

// IsUserError reports whether err is one a retry will not fix until the
// objects in Git change: an invalid object, an immutable field, a namespace
// that is not allowed, an unknown kind, a duplicate. Anything else (the API
// server unreachable, a namespace not there yet, a timeout) is transient.
func IsUserError(err error) bool {
	if err == nil {
		return false
	}
	for _, s := range []error{ErrNamespaceNotAllowed, ErrUnknownKind, ErrInvalidObject, ErrDuplicateObject, ErrImmutableField, ErrOwnershipConflict} {
		if errors.Is(err, s) {
			return true
		}
	}
	return apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || meta.IsNoMatchError(err)
}

// immutableFields returns the fields an API error names as immutable, each
// with the server's short reason, or nil when the error is not about
// immutability.
func immutableFields(err error) []string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return nil
	}
	s := status.Status()
	var fields []string
	if s.Details != nil {
		for _, c := range s.Details.Causes {
			if !strings.Contains(c.Message, "immutable") || c.Field == "" {
				continue
			}
			// The message repeats the whole new value before the reason:
			// "Invalid value: {...}: field is immutable". Keep the reason.
			reason := c.Message
			if i := strings.LastIndex(reason, ": "); i >= 0 {
				reason = reason[i+2:]
			}
			fields = append(fields, c.Field+" ("+reason+")")
		}
	}
	if len(fields) == 0 && s.Reason == metav1.StatusReasonInvalid && strings.Contains(s.Message, "immutable") {
		fields = []string{s.Message}
	}
	sort.Strings(fields)
	return fields
}

// immutableError says which fields could not change and how to force it. It
// keeps the API error for errors.As, but not in its message: the server's
// message repeats the object's whole new value.
type immutableError struct {
	fields []string
	err    error
}

func (e *immutableError) Error() string {
	return fmt.Sprintf("%s: %s; annotate the object with %s: %s to let Tether delete and recreate it",
		ErrImmutableField, strings.Join(e.fields, ", "), v1alpha1.ForceAnnotation, v1alpha1.Enabled)
}

func (e *immutableError) Unwrap() []error { return []error{ErrImmutableField, e.err} }

// applyError turns an API error about obj into an *ObjectError; an
// immutable-field error says which fields and how to force the change.
func applyError(obj string, err error) error {
	if fields := immutableFields(err); len(fields) > 0 {
		err = &immutableError{fields: fields, err: err}
	}
	return &ObjectError{Object: obj, Err: fmt.Errorf("apply failed: %w", err)}
}

// joinedError joins several errors on one line, so that a status condition
// shows all of them; errors.Is and errors.As see each one.
type joinedError []error

func (j joinedError) Error() string {
	msgs := make([]string, len(j))
	for i, e := range j {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "; ")
}

func (j joinedError) Unwrap() []error { return j }

// join returns nil, the only error, or a joinedError.
func join(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return joinedError(errs)
}
