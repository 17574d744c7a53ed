// Package render turns a checked-out Git tree into Kubernetes objects with
// kustomize (sigs.k8s.io/kustomize/api/krusty): overlays, components,
// patches, images; a plain folder of YAML gets a generated kustomization; and
// variables are substituted after the build, as Flux's postBuild does.
//
// Render never reads outside the repository root (symlinks included), never
// writes into the checkout (checkouts are shared between GitSyncs and are
// read-only: generated kustomizations live in memory), never fetches a remote
// base unless the GitSync allows it, and never touches a cluster.
//
// Errors that a retry will not fix (the tree or the spec is wrong) are
// returned as *Error.
package render
