// Package v1alpha1 holds the GitSync API (group tether.dev, version v1alpha1):
// the types users write and read, their generated deep copies and the CRD
// that deploy/ installs. It holds no behaviour beyond small accessors.
//
// +kubebuilder:object:generate=true
// +groupName=tether.dev
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	// GroupVersion is the group and version of the GitSync API.
	GroupVersion = schema.GroupVersion{Group: "tether.dev", Version: "v1alpha1"}

	// SchemeBuilder registers the API types with a runtime scheme.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}

	// AddToScheme adds the API types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)
