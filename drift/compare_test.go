package drift

import (
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestWithoutValues: an API error that quotes a value loses the value but
// keeps its reason, its fields and its identity for errors.As; other
// errors pass unchanged.
func TestWithoutValues(t *testing.T) {
	t.Parallel()
	secretKind := schema.GroupKind{Kind: "Secret"}
	invalid := apierrors.NewInvalid(secretKind, "creds", field.ErrorList{
		field.Invalid(field.NewPath("data", "password"), password, "must be base64"),
		field.Required(field.NewPath("type"), ""),
	})
	badRequest := apierrors.NewBadRequest("cannot decode " + password)
	notFound := apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "gone")
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"invalid", invalid, "dry-run apply refused (Invalid): data.password: FieldValueInvalid, type: FieldValueRequired"},
		{"bad request", badRequest, "dry-run apply refused (BadRequest)"},
		{"not found", notFound, notFound.Error()},
		{"nil", nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := withoutValues(tc.err)
			if got == nil {
				if tc.err != nil {
					t.Fatal("error lost")
				}
				return
			}
			if got.Error() != tc.want {
				t.Errorf("message %q, want %q", got.Error(), tc.want)
			}
			if strings.Contains(got.Error(), password) {
				t.Errorf("the value is in %q", got.Error())
			}
			var status apierrors.APIStatus
			if !errors.As(got, &status) || status.Status().Reason != apierrors.ReasonForError(tc.err) {
				t.Errorf("errors.As lost the API error of %v", got)
			}
		})
	}
}
